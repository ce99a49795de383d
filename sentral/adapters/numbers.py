"""Phone numbers as patient records hold them: written any way, read back as E.164.

Records keep numbers the way someone typed them: ``+47 912 34 567``, ``004791234567``,
``91234567``, ``(+47) 912-34-567``. ``read_stored`` normalises such a number in the clinic's
country (what the CSV adapter does to each row). ``written_forms`` goes the other way for a
backend that cannot normalise its own column: the forms one E.164 number is commonly written in,
so that a query can compare against all of them.
"""

from __future__ import annotations

from types import MappingProxyType

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from sentral.routing.outside import normalise

# What a query by number receives, each a bind parameter: see ``written_forms``.
FORMS = ("number", "digits", "zero_zero", "national", "national_spaced", "international_spaced")


def read_stored(text: str, region: str) -> str | None:
    """A stored number as E.164, reading a national form in ``region``; None when it is no phone number."""
    return normalise(text, region) or normalise(text.replace("(", "").replace(")", ""), region)


def written_forms(e164: str, region: str) -> MappingProxyType[str, str]:
    """The forms ``e164`` is written in, by name (for ``+4791234567`` in Norway):

    - ``number``: ``+4791234567`` (E.164)
    - ``digits``: ``4791234567``
    - ``zero_zero``: ``004791234567``
    - ``national``: ``91234567`` (a foreign number: the same as ``zero_zero``)
    - ``national_spaced``: ``912 34 567`` (as ``phonenumbers`` groups it; foreign: ``zero_zero``)
    - ``international_spaced``: ``+47 912 34 567``
    """
    digits = e164.removeprefix("+")
    forms = {"number": e164, "digits": digits, "zero_zero": "00" + digits}
    try:
        parsed = phonenumbers.parse(e164, None)
    except NumberParseException:
        parsed = None
    home = parsed is not None and parsed.country_code == phonenumbers.country_code_for_region(region.upper())
    if parsed is not None and home:
        spaced = phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
        forms["national"] = "".join(c for c in spaced if c.isdigit())
        forms["national_spaced"] = spaced
    else:
        forms["national"] = forms["national_spaced"] = forms["zero_zero"]
    forms["international_spaced"] = (
        phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL) if parsed is not None else e164
    )
    return MappingProxyType(forms)


__all__ = ["FORMS", "read_stored", "written_forms"]

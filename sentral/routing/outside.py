"""Outside lines: what a number dialled out, or a number a carrier sends in, means.

Theory of operation
-------------------
Staff dial outside numbers the way they are used to: the national form of the clinic's country
(``22334455`` in Norway, ``08-123 456 78`` in Sweden), or ``+`` or ``00`` and a country code, with
or without spaces, dashes, dots, slashes and brackets. ``normalise`` turns any of these into E.164
(``+4722334455``) with ``phonenumbers``, reading national forms in the clinic's country. A number
counts when its length is possible for its country: whether it is actually in service is the
carrier's to say, and a stale range table here must never stop a real number. Anything that is not
written as a phone number (letters, a SIP user such as ``role-nurse``, a short code) gives None.

``outbound`` is the outbound policy of one clinic, asked by the dial plan after the internal
resolvers found nothing:

1. ``*31*NUMBER`` (``HIDE_NUMBER_CODE``) hides the caller's number for this call: ``Privacy: id``.
2. The emergency numbers of the clinic's country (``emergency_numbers``, a small table; 112 is in
   every country's) always go out, whatever the member of staff may dial and whichever countries
   are open: ``Outside(emergency=True)``, which call control sends acute, on the first working
   trunk, as dialled and never hidden (the emergency centre must be able to call back).
3. A number that does not normalise is not an outside number: None, the dial plan's business.
4. The member of staff's dial permission: internal-only staff dial nothing outside, national staff
   nothing outside their clinic's country. Refusals are 403 ``Refused`` with a prompt to play.
5. The country code must be one of the clinic's open countries (``ClinicEntry.open_countries``,
   which holds the clinic's own code unless the operator denied it), else 403 "country closed".

The member of staff is None for calls nobody on staff dialled (an inbound call sent on to an
outside number when the clinic is closed): then only the clinic's own policy applies.

Inbound, a carrier writes the called public number as it likes: ``+4722334455``, ``4722334455``,
``004722334455`` or the national ``22334455``, in a ``sip:`` or ``tel:`` URI. ``called_candidates``
lists what E.164 numbers such a user part can mean, the most likely first (usually just one);
the first that is one of the clinic's public numbers wins. ``caller_e164`` reads the caller's
number the same way, and leaves anything unreadable (``anonymous``) as sent.
Outbound, ``carrier_number`` writes an E.164 number the way the trunk's carrier wants it
(``NumberFormat``).

``InternationalCaps`` is the toll-fraud guard: a count of international calls in progress per
clinic and per member of staff, admitted up to a cap. It only counts; call control logs a hit and
refuses the call with ``CAP_REFUSED``.

This runs on every outside call, so parsing is cached: per region for what ``phonenumbers`` knows
of it, and per (text, region) for the parsed numbers, in bounded caches. Nothing here sends, sleeps
or logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import assert_never

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from sentral.config.directory import ClinicEntry, DialPermission, NumberFormat, StaffEntry

HIDE_NUMBER_CODE = "*31*"

# Emergency numbers per country (ISO 3166 alpha-2). Each is also an emergency number in the short
# number tables of ``phonenumbers`` (the tests hold this table to that). 112 reaches the emergency
# services from any phone in the EU and most of the world, so every country has it.
EMERGENCY_NUMBERS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "NO": frozenset({"110", "112", "113"}),  # fire, general, medical
        "SE": frozenset({"112"}),
        "DK": frozenset({"112", "114"}),  # general, police
        "FI": frozenset({"112"}),
        "IS": frozenset({"112"}),
        "DE": frozenset({"110", "112"}),  # police, general
        "GB": frozenset({"112", "999"}),
        "US": frozenset({"112", "911"}),
    }
)
ALWAYS_EMERGENCY = "112"
_ONLY_112 = frozenset({ALWAYS_EMERGENCY})

# What a dialled number may be written with: an optional '+', then digits and the separators
# people type or phones insert. Letters are refused before phonenumbers sees them, so that a
# SIP user such as "role-nurse" or a vanity spelling never becomes a number.
_DIALLED = re.compile(r"\+?\(?[0-9][0-9 ()./\-\u00a0\u2013]*")
_LONGEST = 40  # no phone number needs more characters, separators included

_CACHE = 8192  # parsed numbers kept; bounded because inbound callers choose what is parsed


@dataclass(frozen=True, slots=True)
class Outside:
    """A call to go out on a trunk."""

    number: str  # E.164; an emergency number as dialled ("113")
    emergency: bool  # one of the clinic's country's emergency numbers: acute, first working trunk
    international: bool  # outside the clinic's country
    hidden: bool  # dialled with *31*: Privacy: id


@dataclass(frozen=True, slots=True)
class Refused:
    """A call the outbound policy refuses: the status and reason to answer, why (for the record and
    the security log) and the prompt the caller hears first."""

    status: int
    reason: str
    why: str  # "country closed" | "internal only" | "national only" | "international cap"
    prompt: str


COUNTRY_CLOSED = Refused(403, "Country Not Open", "country closed", "country_closed")
INTERNAL_ONLY = Refused(403, "Not Allowed To Dial Out", "internal only", "not_allowed_out")
NATIONAL_ONLY = Refused(403, "Not Allowed To Dial Out", "national only", "not_allowed_out")
# What call control answers when ``InternationalCaps.admit`` says no.
CAP_REFUSED = Refused(403, "Too Many Calls Abroad", "international cap", "outside_cap")


@lru_cache(maxsize=512)
def _region_code(region: str) -> int:
    """The calling code of ``region`` (upper case), 0 when phonenumbers does not know it."""
    return int(phonenumbers.country_code_for_region(region))


def country_code(region: str) -> int:
    """The country calling code of a country: "NO" -> 47. ValueError for an unknown country."""
    code = _region_code(region.upper())
    if not code:
        raise ValueError(f"{region!r} is not a country; give its two-letter ISO 3166 code, such as NO or SE")
    return code


def emergency_numbers(region: str) -> frozenset[str]:
    """The emergency numbers of a country; 112 for a country the table does not name."""
    return EMERGENCY_NUMBERS.get(region.upper(), _ONLY_112)


@lru_cache(maxsize=_CACHE)
def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    """``text`` read as a phone number in ``region``, if its length is possible for its country."""
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return None
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return None
    return number


@lru_cache(maxsize=_CACHE)
def _e164(text: str, region: str) -> str | None:
    number = _parse(text, region)
    return None if number is None else phonenumbers.format_number(number, PhoneNumberFormat.E164)


def normalise(dialled: str, region: str) -> str | None:
    """``dialled`` as E.164 ("+4722334455"), reading a national form in ``region``; None when it is
    not a possible phone number. Short numbers (emergency, service codes) give None."""
    text = dialled.strip()
    if len(text) > _LONGEST or not _DIALLED.fullmatch(text):
        return None
    return _e164(text, region.upper())


def _user_part(user: str) -> str:
    """The number in a Request-URI user, a To or P-Called-Party-ID user, or a whole sip:/tel: URI."""
    text = user.strip()
    scheme, colon, rest = text.partition(":")
    if colon and scheme.lower() in ("sip", "sips", "tel"):
        text = rest
    text = text.split("@", 1)[0].split(";", 1)[0]
    if text[:3].upper() == "%2B":  # some carriers escape the '+'
        text = "+" + text[3:]
    return text


def called_candidates(user: str, region: str) -> tuple[str, ...]:
    """The E.164 numbers a carrier's user part may mean, most likely first: "+4722334455",
    "4722334455", "004722334455" and "22334455" (in Norway) all give ("+4722334455",)."""
    text = _user_part(user)
    found: list[str] = []
    for form in _readings(text):
        number = normalise(form, region)
        if number is not None and number not in found:
            found.append(number)
    return tuple(found)


def _readings(text: str) -> tuple[str, ...]:
    """The ways to read a user part: as written, then as a country code and number without its '+'
    (or with "00" in place of it, for a carrier whose country dials abroad with something else)."""
    if text.startswith("00"):
        return (text, "+" + text[2:])
    if text[:1].isdigit():
        return (text, "+" + text)
    return (text,)


def caller_e164(user: str, region: str) -> str:
    """The caller's number as E.164 when it reads as one, else the user part as sent."""
    text = _user_part(user)
    candidates = called_candidates(text, region)
    return candidates[0] if candidates else text


@lru_cache(maxsize=_CACHE)
def _national(e164: str, region: str) -> str | None:
    """``e164`` as dialled nationally in ``region`` (with its trunk prefix, "08..." in Sweden), or
    None when it is another country's number or would not read back as the same number."""
    number = _parse(e164, region)
    if number is None or number.country_code != _region_code(region):
        return None
    written = "".join(c for c in phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL) if c.isdigit())
    return written if _e164(written, region) == e164 else None


def carrier_number(e164: str, fmt: NumberFormat, region: str) -> str:
    """How a carrier that wants ``fmt`` gets ``e164`` from a clinic in ``region``. A short number
    (an emergency number) goes as dialled whatever the format."""
    if not e164.startswith("+"):
        return e164
    digits = e164[1:]
    match fmt:
        case NumberFormat.E164:
            return e164
        case NumberFormat.DIGITS:
            return digits
        case NumberFormat.INTERNATIONAL_00:
            return "00" + digits
        case NumberFormat.NATIONAL:
            national = _national(e164, region.upper())
            return national if national is not None else "00" + digits
        case _:
            assert_never(fmt)


def outbound(dialled: str, clinic: ClinicEntry, staff: StaffEntry | None) -> Outside | Refused | None:
    """The outbound policy: the call to send out, the refusal, or None when ``dialled`` is not an
    outside number at all."""
    text = dialled.strip()
    hidden = text.startswith(HIDE_NUMBER_CODE)
    if hidden:
        text = text[len(HIDE_NUMBER_CODE) :].removesuffix("#").strip()
    region = clinic.country.upper()
    if text in emergency_numbers(region):
        return Outside(number=text, emergency=True, international=False, hidden=False)
    number = normalise(text, region)
    if number is None:
        return None
    parsed = _parse(number, region)
    assert parsed is not None  # a normalised number parses
    international = parsed.country_code != _region_code(region)
    if staff is not None:
        match staff.dial:
            case DialPermission.INTERNAL:
                return INTERNAL_ONLY
            case DialPermission.NATIONAL:
                if international:
                    return NATIONAL_ONLY
            case DialPermission.INTERNATIONAL:
                pass
            case _:
                assert_never(staff.dial)
    if parsed.country_code not in clinic.open_countries:
        return COUNTRY_CLOSED
    return Outside(number=number, emergency=False, international=international, hidden=hidden)


def caller_id(clinic: ClinicEntry, staff: StaffEntry | None) -> str | None:
    """The number an outside call shows: the member of staff's own public number, else the
    clinic's main number (None when the clinic has none)."""
    if staff is not None and staff.public_number:
        return staff.public_number
    return clinic.main_number


class InternationalCaps:
    """Toll-fraud guard: concurrent international calls per clinic and per member of staff."""

    def __init__(self, per_clinic: int = 10, per_staff: int = 2) -> None:
        if per_clinic < 0 or per_staff < 0:
            raise ValueError("the caps on international calls must be zero or more")
        self.per_clinic = per_clinic
        self.per_staff = per_staff
        self._clinics: dict[str, int] = {}
        self._staff: dict[tuple[str, str], int] = {}

    def admit(self, domain: str, extension: str) -> bool:
        """Count one more international call of this member of staff; False (and nothing counted)
        when the clinic or the member of staff is at the cap."""
        key = (domain, extension)
        if self._clinics.get(domain, 0) >= self.per_clinic or self._staff.get(key, 0) >= self.per_staff:
            return False
        self._clinics[domain] = self._clinics.get(domain, 0) + 1
        self._staff[key] = self._staff.get(key, 0) + 1
        return True

    def release(self, domain: str, extension: str) -> None:
        """An admitted international call ended. A release with nothing admitted changes nothing."""
        key = (domain, extension)
        staff = self._staff.get(key, 0)
        if staff <= 0:
            return
        if staff == 1:
            del self._staff[key]
        else:
            self._staff[key] = staff - 1
        clinic = self._clinics.get(domain, 0)
        if clinic <= 1:
            self._clinics.pop(domain, None)
        else:
            self._clinics[domain] = clinic - 1

    def in_progress(self, domain: str, extension: str | None = None) -> int:
        """International calls in progress in a clinic, or of one member of staff of it."""
        if extension is None:
            return self._clinics.get(domain, 0)
        return self._staff.get((domain, extension), 0)

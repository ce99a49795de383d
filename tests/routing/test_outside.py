"""Outside lines: reading dialled and carrier numbers, the outbound policy, carrier formats and the
international caps."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from phonenumbers import shortnumberinfo

from sentral.config.directory import ClinicEntry, DialPermission, NumberFormat, StaffEntry
from sentral.routing.outside import (
    CAP_REFUSED,
    COUNTRY_CLOSED,
    EMERGENCY_NUMBERS,
    INTERNAL_ONLY,
    NATIONAL_ONLY,
    InternationalCaps,
    Outside,
    Refused,
    called_candidates,
    caller_e164,
    caller_id,
    carrier_number,
    country_code,
    emergency_numbers,
    normalise,
    outbound,
)

DOMAIN = "clinic.test"
OSLO = ClinicEntry(DOMAIN, "Clinic", ("SHA-256", "MD5"), country="NO", main_number="+4722334455",
                   open_countries=frozenset({47, 46}))
STOCKHOLM = ClinicEntry("se.test", "Klinik", ("MD5",), country="SE", open_countries=frozenset({46}))


def staff(dial: DialPermission, public_number: str | None = None) -> StaffEntry:
    return StaffEntry(DOMAIN, "1001", "Alice", (), "", "", dial=dial, public_number=public_number)


NATIONAL = staff(DialPermission.NATIONAL)
INTERNATIONAL = staff(DialPermission.INTERNATIONAL)
INTERNAL = staff(DialPermission.INTERNAL)


# --- reading numbers ---------------------------------------------------------------------------


def test_country_code_of_a_country() -> None:
    assert country_code("NO") == 47
    assert country_code("se") == 46
    assert country_code("FI") == 358


def test_country_code_of_no_country_is_a_sentence() -> None:
    with pytest.raises(ValueError, match="not a country"):
        country_code("XX")


@pytest.mark.parametrize(
    "dialled",
    ["22334455", "+4722334455", "004722334455", "+47 22 33 44 55", "22 33 44 55", "(22) 33-44.55",
     " 22334455 ", "0047 22 33 44 55", "22/33/44/55"],
)
def test_norwegian_ways_of_writing_one_number(dialled: str) -> None:
    assert normalise(dialled, "NO") == "+4722334455"


def test_national_form_is_read_in_the_clinics_country() -> None:
    assert normalise("08-123 456 78", "SE") == "+46812345678"
    assert normalise("0812345678", "SE") == "+46812345678"
    # The same digits in Norway are no Norwegian number.
    assert normalise("0812345678", "NO") is None


def test_numbers_of_other_countries_keep_their_country() -> None:
    assert normalise("+46 8 123 456 78", "NO") == "+46812345678"
    assert normalise("0046812345678", "NO") == "+46812345678"


@pytest.mark.parametrize(
    "dialled",
    ["", "113", "112", "1002", "*8", "**1002", "role-nurse", "anonymous", "22HELLO1", "2233445",
     "+", "00", "+47", "223344556677889900", "sip:22334455@x", "22334455;ext=1", "+4722334455#"],
)
def test_what_is_not_a_possible_phone_number(dialled: str) -> None:
    assert normalise(dialled, "NO") is None


def test_unknown_country_reads_only_international_numbers() -> None:
    assert normalise("22334455", "XX") is None
    assert normalise("+4722334455", "XX") == "+4722334455"


@given(st.text(max_size=60), st.sampled_from(["NO", "SE", "DK", "FI", "US", "XX", "", "no"]))
@settings(max_examples=500, deadline=None)
def test_normalise_never_raises(dialled: str, region: str) -> None:
    result = normalise(dialled, region)
    assert result is None or (result.startswith("+") and result[1:].isdigit())


@given(st.text(alphabet="0123456789+ -().*#", max_size=25))
@settings(max_examples=500, deadline=None)
def test_normalised_numbers_are_fixed_points(dialled: str) -> None:
    result = normalise(dialled, "NO")
    assert result is None or normalise(result, "NO") == result


# --- emergency numbers -------------------------------------------------------------------------


def test_norways_emergency_numbers() -> None:
    assert emergency_numbers("NO") == {"110", "112", "113"}
    assert emergency_numbers("no") == {"110", "112", "113"}


def test_112_is_everywhere() -> None:
    for region in [*EMERGENCY_NUMBERS, "PL", "XX"]:
        assert "112" in emergency_numbers(region)


@pytest.mark.parametrize("region", sorted(EMERGENCY_NUMBERS))
def test_table_agrees_with_the_short_number_data(region: str) -> None:
    for number in EMERGENCY_NUMBERS[region]:
        assert shortnumberinfo.is_emergency_number(number, region), (region, number)


# --- the outbound policy -----------------------------------------------------------------------


def test_national_number_goes_out_for_national_staff() -> None:
    assert outbound("22 33 44 55", OSLO, NATIONAL) == Outside("+4722334455", False, False, False)


def test_open_international_number_goes_out_for_international_staff() -> None:
    assert outbound("0046812345678", OSLO, INTERNATIONAL) == Outside("+46812345678", False, True, False)


def test_closed_country_is_refused_with_its_prompt() -> None:
    result = outbound("+4930123456", OSLO, INTERNATIONAL)
    assert result == COUNTRY_CLOSED
    assert isinstance(result, Refused)
    assert (result.status, result.why, result.prompt) == (403, "country closed", "country_closed")


def test_national_staff_may_not_dial_abroad_even_to_an_open_country() -> None:
    result = outbound("+46812345678", OSLO, NATIONAL)
    assert result == NATIONAL_ONLY
    assert isinstance(result, Refused)
    assert (result.status, result.why, result.prompt) == (403, "national only", "not_allowed_out")


def test_internal_staff_may_not_dial_out() -> None:
    result = outbound("22334455", OSLO, INTERNAL)
    assert result == INTERNAL_ONLY
    assert isinstance(result, Refused)
    assert (result.status, result.why, result.prompt) == (403, "internal only", "not_allowed_out")


def test_own_country_denied_closes_national_calls() -> None:
    clinic = ClinicEntry(DOMAIN, "Clinic", (), country="NO", open_countries=frozenset({46}))
    assert outbound("22334455", clinic, INTERNATIONAL) == COUNTRY_CLOSED


@pytest.mark.parametrize("number", ["110", "112", "113"])
@pytest.mark.parametrize("who", [INTERNAL, NATIONAL, INTERNATIONAL, None])
def test_emergency_numbers_always_go_out(number: str, who: StaffEntry | None) -> None:
    closed = ClinicEntry(DOMAIN, "Clinic", (), country="NO", open_countries=frozenset())
    assert outbound(number, closed, who) == Outside(number, True, False, False)


def test_emergency_numbers_are_the_clinics_countrys() -> None:
    assert outbound("112", STOCKHOLM, INTERNAL) == Outside("112", True, False, False)
    assert outbound("113", STOCKHOLM, INTERNATIONAL) is None


def test_hide_number_code_hides_the_caller() -> None:
    assert outbound("*31*22334455", OSLO, NATIONAL) == Outside("+4722334455", False, False, True)
    assert outbound("*31*22334455#", OSLO, NATIONAL) == Outside("+4722334455", False, False, True)


def test_emergency_calls_are_never_hidden() -> None:
    assert outbound("*31*113", OSLO, NATIONAL) == Outside("113", True, False, False)


def test_hide_number_code_does_not_lift_the_policy() -> None:
    assert outbound("*31*+4930123456", OSLO, INTERNATIONAL) == COUNTRY_CLOSED


@pytest.mark.parametrize("dialled", ["1002", "role-nurse", "*8", "**1002", "*31*", "", "*21*1002#", "116117"])
def test_not_outside_numbers_are_left_to_the_dial_plan(dialled: str) -> None:
    assert outbound(dialled, OSLO, INTERNATIONAL) is None
    assert outbound(dialled, OSLO, INTERNAL) is None


def test_without_staff_only_the_clinic_policy_applies() -> None:
    assert outbound("+46812345678", OSLO, None) == Outside("+46812345678", False, True, False)
    assert outbound("+4930123456", OSLO, None) == COUNTRY_CLOSED


def test_default_staff_dial_nationally() -> None:
    default = StaffEntry(DOMAIN, "1002", "Bob", (), "", "")
    assert outbound("22334455", OSLO, default) == Outside("+4722334455", False, False, False)
    assert outbound("+46812345678", OSLO, default) == NATIONAL_ONLY


@given(st.text(max_size=30), st.sampled_from([INTERNAL, NATIONAL, INTERNATIONAL, None]))
@settings(max_examples=300, deadline=None)
def test_outbound_never_raises_and_refuses_only_with_403(dialled: str, who: StaffEntry | None) -> None:
    result = outbound(dialled, OSLO, who)
    if isinstance(result, Refused):
        assert result.status == 403
    elif isinstance(result, Outside) and not result.emergency:
        assert normalise(result.number, "NO") == result.number


def test_caller_id_is_the_staff_members_own_number_else_the_clinics() -> None:
    assert caller_id(OSLO, staff(DialPermission.NATIONAL, "+4722334466")) == "+4722334466"
    assert caller_id(OSLO, NATIONAL) == "+4722334455"
    assert caller_id(OSLO, None) == "+4722334455"
    assert caller_id(STOCKHOLM, NATIONAL) is None


# --- carrier formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "own", "abroad"),
    [
        (NumberFormat.E164, "+4722334455", "+46812345678"),
        (NumberFormat.DIGITS, "4722334455", "46812345678"),
        (NumberFormat.NATIONAL, "22334455", "0046812345678"),
        (NumberFormat.INTERNATIONAL_00, "004722334455", "0046812345678"),
    ],
)
def test_carrier_formats_from_norway(fmt: NumberFormat, own: str, abroad: str) -> None:
    assert carrier_number("+4722334455", fmt, "NO") == own
    assert carrier_number("+46812345678", fmt, "NO") == abroad


def test_national_format_keeps_the_trunk_prefix() -> None:
    assert carrier_number("+46812345678", NumberFormat.NATIONAL, "SE") == "0812345678"


@pytest.mark.parametrize(
    ("number", "region"),
    [("+4700694766", "NO"), ("+464622880071", "SE"), ("+3939001446", "IT")],
)
def test_national_format_falls_back_to_00_when_the_national_form_would_mean_another_number(
    number: str, region: str
) -> None:
    # Possible numbers nobody uses; written nationally they would read back as something else.
    written = carrier_number(number, NumberFormat.NATIONAL, region)
    assert written == "00" + number[1:]
    assert normalise(written, region) == number


@pytest.mark.parametrize("fmt", list(NumberFormat))
def test_emergency_numbers_go_to_the_carrier_as_dialled(fmt: NumberFormat) -> None:
    assert carrier_number("113", fmt, "NO") == "113"


CLINIC_REGIONS = ["NO", "SE", "DK", "FI", "DE", "GB", "FR", "IT", "NL"]  # all dial abroad with 00
NUMBER_REGIONS = [*CLINIC_REGIONS, "US", "IS", "AU", "JP", "BR", "IN"]


@st.composite
def e164_numbers(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(NUMBER_REGIONS))
    digits = draw(st.text(alphabet="0123456789", min_size=4, max_size=12))
    number = f"+{country_code(region)}{digits}"
    assume(normalise(number, "NO") == number)
    return number


@given(e164_numbers(), st.sampled_from(CLINIC_REGIONS), st.sampled_from(list(NumberFormat)))
@settings(max_examples=500, deadline=None)
def test_carrier_number_reads_back(number: str, region: str, fmt: NumberFormat) -> None:
    written = carrier_number(number, fmt, region)
    if fmt is not NumberFormat.DIGITS:
        assert normalise(written, region) == number
    assert number in called_candidates(written, region)


# --- numbers from the carrier ------------------------------------------------------------------


@pytest.mark.parametrize(
    "user",
    ["+4722334455", "4722334455", "22334455", "004722334455", "sip:+4722334455@carrier.example",
     "sip:4722334455@carrier.example;user=phone", "sip:22334455@10.0.0.1:5060", "tel:+47-22-33-44-55",
     "tel:22334455;phone-context=+47", "%2B4722334455", "sips:+4722334455@carrier.example"],
)
def test_called_number_however_the_carrier_writes_it(user: str) -> None:
    assert called_candidates(user, "NO") == ("+4722334455",)


def test_called_number_in_a_country_that_dials_abroad_otherwise() -> None:
    assert "+4722334455" in called_candidates("004722334455", "US")


@pytest.mark.parametrize("user", ["", "anonymous", "s", "trunkuser", "+", "1"])
def test_what_no_carrier_number_means(user: str) -> None:
    assert called_candidates(user, "NO") == ()


@pytest.mark.parametrize(
    ("user", "expected"),
    [("+4791234567", "+4791234567"), ("4791234567", "+4791234567"), ("91234567", "+4791234567"),
     ("004791234567", "+4791234567"), ("sip:+46812345678@carrier.example", "+46812345678"),
     ("anonymous", "anonymous"), ("Anonymous", "Anonymous"), ("1881", "1881")],
)
def test_caller_number(user: str, expected: str) -> None:
    assert caller_e164(user, "NO") == expected


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_reading_carrier_numbers_never_raises(user: str) -> None:
    for number in called_candidates(user, "NO"):
        assert normalise(number, "NO") == number
    assert isinstance(caller_e164(user, "NO"), str)


# --- the toll-fraud guard ----------------------------------------------------------------------


def test_cap_per_member_of_staff() -> None:
    caps = InternationalCaps(per_clinic=10, per_staff=2)
    assert caps.admit(DOMAIN, "1001")
    assert caps.admit(DOMAIN, "1001")
    assert not caps.admit(DOMAIN, "1001")
    assert caps.admit(DOMAIN, "1002")
    assert caps.in_progress(DOMAIN) == 3
    caps.release(DOMAIN, "1001")
    assert caps.admit(DOMAIN, "1001")


def test_cap_per_clinic() -> None:
    caps = InternationalCaps(per_clinic=3, per_staff=2)
    assert [caps.admit(DOMAIN, ext) for ext in ("1001", "1002", "1003", "1004")] == [True, True, True, False]
    assert caps.admit("other.test", "1004")
    caps.release(DOMAIN, "1002")
    assert caps.admit(DOMAIN, "1004")


def test_a_refused_call_is_not_counted() -> None:
    caps = InternationalCaps(per_clinic=5, per_staff=1)
    assert caps.admit(DOMAIN, "1001")
    assert not caps.admit(DOMAIN, "1001")
    assert caps.in_progress(DOMAIN) == 1
    assert caps.in_progress(DOMAIN, "1001") == 1


def test_release_without_admit_changes_nothing() -> None:
    caps = InternationalCaps(per_clinic=1, per_staff=1)
    caps.release(DOMAIN, "1001")
    assert caps.admit(DOMAIN, "1001")
    caps.release(DOMAIN, "1002")
    assert not caps.admit(DOMAIN, "1003")


def test_zero_caps_admit_nothing_and_negative_caps_are_refused() -> None:
    assert not InternationalCaps(per_clinic=0).admit(DOMAIN, "1001")
    with pytest.raises(ValueError, match="zero or more"):
        InternationalCaps(per_staff=-1)


def test_cap_refusal_names_its_prompt() -> None:
    assert (CAP_REFUSED.status, CAP_REFUSED.why, CAP_REFUSED.prompt) == (403, "international cap", "outside_cap")


@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["a.test", "b.test"]), st.sampled_from(["1", "2", "3"]))))
@settings(max_examples=200, deadline=None)
def test_caps_hold_over_any_sequence(ops: list[tuple[bool, str, str]]) -> None:
    caps = InternationalCaps(per_clinic=3, per_staff=2)
    live: dict[tuple[str, str], int] = {}
    for admit, domain, ext in ops:
        if admit:
            expected = sum(n for (d, _), n in live.items() if d == domain) < 3 and live.get((domain, ext), 0) < 2
            assert caps.admit(domain, ext) == expected
            if expected:
                live[(domain, ext)] = live.get((domain, ext), 0) + 1
        else:
            caps.release(domain, ext)
            if live.get((domain, ext), 0):
                live[(domain, ext)] -= 1
        for d in ("a.test", "b.test"):
            assert caps.in_progress(d) == sum(n for (dd, _), n in live.items() if dd == d)

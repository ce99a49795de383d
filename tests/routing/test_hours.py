"""Opening hours: the weekly spec as typed, its mistakes, public holidays and extra closed days."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentral.routing.hours import ALWAYS_OPEN, OpeningHours, local_time, public_holidays

NONE: frozenset[datetime.date] = frozenset()
# A week with no holiday in Norway or Sweden: Monday 2025-03-10 .. Sunday 2025-03-16.
MON, TUE, WED, THU, FRI, SAT, SUN = (datetime.date(2025, 3, 10 + i) for i in range(7))


def at(day: datetime.date, hhmm: str, second: int = 0) -> datetime.datetime:
    hour, minute = (int(part) for part in hhmm.split(":"))
    return datetime.datetime(day.year, day.month, day.day, hour, minute, second)


def opening(text: str, day: datetime.date, hhmm: str, region: str = "NO") -> bool:
    return OpeningHours.parse(text).open_at(at(day, hhmm), region, NONE)


# --- the weekly spec ---------------------------------------------------------------------------


def test_weekdays_and_saturday() -> None:
    spec = "mon-fri 08:00-16:00; sat 09:00-12:00"
    assert opening(spec, MON, "08:00")
    assert opening(spec, FRI, "15:59")
    assert not opening(spec, WED, "16:00")
    assert not opening(spec, WED, "07:59")
    assert opening(spec, SAT, "09:30")
    assert not opening(spec, SAT, "13:00")
    assert not opening(spec, SUN, "10:00")


def test_the_last_second_before_opening_is_closed() -> None:
    hours = OpeningHours.parse("mon 08:00-16:00")
    assert not hours.open_at(at(MON, "07:59", 59), "NO", NONE)
    assert hours.open_at(at(MON, "15:59", 59), "NO", NONE)


def test_comma_list_of_days() -> None:
    spec = "mon,wed 08:00-12:00"
    assert opening(spec, MON, "09:00")
    assert not opening(spec, TUE, "09:00")
    assert opening(spec, WED, "09:00")


def test_lists_and_ranges_together() -> None:
    spec = "mon,wed-fri 10:00-11:00"
    assert [opening(spec, day, "10:30") for day in (MON, TUE, WED, THU, FRI, SAT, SUN)] == [
        True, False, True, True, True, False, False,
    ]


def test_several_intervals_a_day_close_for_lunch() -> None:
    spec = "mon 08:00-11:30,12:00-16:00"
    assert opening(spec, MON, "11:29")
    assert not opening(spec, MON, "11:45")
    assert opening(spec, MON, "12:00")


def test_a_clause_without_days_is_every_day() -> None:
    for day in (MON, SAT, SUN):
        assert opening("08:00-16:00", day, "12:00")


def test_a_later_clause_replaces_an_earlier_one() -> None:
    spec = "mon-fri 08:00-16:00; wed closed; fri 08:00-12:00"
    assert not opening(spec, WED, "10:00")
    assert opening(spec, FRI, "11:00")
    assert not opening(spec, FRI, "13:00")
    assert opening(spec, THU, "13:00")


def test_end_of_day_is_24_00() -> None:
    spec = "fri 20:00-24:00; sat 00:00-02:00"
    assert opening(spec, FRI, "23:59")
    assert opening(spec, SAT, "00:00")
    assert not opening(spec, SAT, "02:00")


def test_ways_of_writing_the_same_hours() -> None:
    expected = OpeningHours.parse("mon-fri 08:00-16:00")
    for text in ["Mon-Fri 8:00-16:00", "mon - fri 08.00 \u2013 16.00", "monday-friday 08:00 - 16:00;",
                 " mon-fri 08:00-12:00,12:00-16:00 ", "mon,tue,wed,thu,fri 08:00-16:00"]:
        assert OpeningHours.parse(text) == expected, text


def test_empty_is_always_open_even_on_holidays() -> None:
    for text in ["", "  ", ";"]:
        hours = OpeningHours.parse(text)
        assert hours == ALWAYS_OPEN
        assert hours.open_at(at(datetime.date(2025, 12, 25), "03:00"), "NO", frozenset({SUN}))


def test_closed_alone_is_never_open() -> None:
    hours = OpeningHours.parse("closed")
    assert not any(hours.open_at(at(day, "12:00"), "NO", NONE) for day in (MON, WED, SAT, SUN))


def test_written_back_the_way_it_is_read() -> None:
    assert str(OpeningHours.parse("mon - fri 8.00-16.00; wed closed")) == "mon-tue,thu-fri 08:00-16:00"
    assert str(OpeningHours.parse("sat 09:00-12:00; mon-fri 08:00-16:00")) == (
        "mon-fri 08:00-16:00; sat 09:00-12:00"
    )
    assert str(OpeningHours.parse("closed")) == "closed"
    assert str(OpeningHours.parse("")) == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mnd 08:00-16:00", "'mnd' is not a day: use mon, tue, wed, thu, fri, sat or sun"),
        ("mon-fri", "'mon-fri' names days but no hours"),
        ("fri-mon 08:00-16:00", "'fri-mon' runs backwards: days go from mon to sun, so write it as 'fri-sun,mon'"),
        ("mon 16:00-08:00", "'16:00-08:00' ends before it starts"),
        ("mon 08:00-08:00", "'08:00-08:00' ends before it starts"),
        ("mon 8-16", "'8-16' is not an opening interval: write it as 08:00-16:00"),
        ("mon 08:00", "'08:00' is not an opening interval"),
        ("mon 08:00-12:00-16:00", "is not an opening interval"),
        ("mon 25:00-26:00", "'25:00' is not a time of day"),
        ("mon 08:60-09:00", "'08:60' is not a time of day"),
        ("mon 08:00-24:01", "'24:01' is not a time of day"),
        ("mon 08:00-12:00,11:00-13:00", "08:00-12:00 and 11:00-13:00 overlap"),
        ("mon closed 08:00-10:00", "has more after 'closed'"),
        ("mon,,wed 08:00-10:00", "has an empty day in its list"),
        ("mon 08:00-12:00,", "is not an opening interval"),
        ("mon-fri 08:00-16:00; sat", "'sat' names days but no hours"),
    ],
)
def test_mistakes_are_named_in_one_sentence(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        OpeningHours.parse(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@given(st.text(alphabet="monfriwedsatu0123456789:.,;- \u2013closed", max_size=40))
@settings(max_examples=500, deadline=None)
def test_parse_raises_only_value_error(text: str) -> None:
    try:
        hours = OpeningHours.parse(text)
    except ValueError:
        return
    assert OpeningHours.parse(str(hours)) == hours


@st.composite
def weeks(draw: st.DrawFn) -> OpeningHours:
    days = []
    for _ in range(7):
        cuts = sorted(draw(st.sets(st.integers(0, 24 * 60), max_size=6)))
        days.append(tuple(zip(cuts[::2], cuts[1::2], strict=False)))
    return OpeningHours(week=tuple(days))


@given(weeks())
@settings(max_examples=300, deadline=None)
def test_round_trip_through_text(hours: OpeningHours) -> None:
    assert OpeningHours.parse(str(hours)) == hours


# --- holidays and closed days ------------------------------------------------------------------


def test_norwegian_public_holidays_are_closed() -> None:
    hours = OpeningHours.parse("mon-sun 08:00-16:00")
    for day in (datetime.date(2025, 5, 1), datetime.date(2025, 5, 17), datetime.date(2025, 5, 29),
                datetime.date(2025, 12, 25), datetime.date(2026, 1, 1)):
        assert not hours.open_at(at(day, "10:00"), "NO", NONE), day
    assert hours.open_at(at(datetime.date(2025, 5, 16), "10:00"), "NO", NONE)


def test_holidays_are_the_clinics_countrys() -> None:
    # 6 June is Sweden's national day, a Friday in 2025, and an ordinary day in Norway.
    friday = at(datetime.date(2025, 6, 6), "10:00")
    hours = OpeningHours.parse("mon-fri 08:00-16:00")
    assert hours.open_at(friday, "NO", NONE)
    assert not hours.open_at(friday, "SE", NONE)
    assert not hours.open_at(friday, "se", NONE)


def test_extra_closed_days_are_closed() -> None:
    hours = OpeningHours.parse("mon-fri 08:00-16:00")
    assert not hours.open_at(at(TUE, "10:00"), "NO", frozenset({TUE}))
    assert hours.open_at(at(WED, "10:00"), "NO", frozenset({TUE}))


def test_a_country_without_holiday_data_has_no_holidays() -> None:
    assert public_holidays("XX", 2025) == frozenset()
    assert opening("mon-fri 08:00-16:00", MON, "10:00", region="XX")


def test_holidays_are_computed_once_per_country_and_year() -> None:
    first = public_holidays("NO", 2031)
    assert public_holidays("NO", 2031) is first
    assert datetime.date(2031, 12, 25) in first


def test_aware_local_time_uses_its_wall_clock() -> None:
    oslo = datetime.timezone(datetime.timedelta(hours=1))
    hours = OpeningHours.parse("mon 08:00-16:00")
    assert hours.open_at(datetime.datetime(2025, 3, 10, 8, 30, tzinfo=oslo), "NO", NONE)


# --- local time --------------------------------------------------------------------------------


def test_local_time_in_the_clinics_time_zone() -> None:
    # 2025-03-10 07:30 UTC is 08:30 in Oslo (winter time) and 09:30 in Helsinki.
    wall = datetime.datetime(2025, 3, 10, 7, 30, tzinfo=datetime.UTC).timestamp()
    assert local_time(wall, "Europe/Oslo").strftime("%H:%M") == "08:30"
    assert local_time(wall, "Europe/Helsinki").strftime("%H:%M") == "09:30"
    assert local_time(wall, None).timestamp() == wall


@pytest.mark.parametrize("zone", ["Europe/Nowhere", "", "../etc/passwd"])
def test_an_unknown_time_zone_is_a_sentence(zone: str) -> None:
    with pytest.raises(ValueError, match="is not a time zone"):
        local_time(0.0, zone)

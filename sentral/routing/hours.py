"""Opening hours of a public number: when calls to it reach the clinic.

Theory of operation
-------------------
The operator types opening hours as one line, clauses separated by ``;``::

    mon-fri 08:00-16:00; sat 09:00-12:00
    mon,wed 08:00-12:00; tue,thu-fri 08:00-11:30,12:00-16:00
    08:00-16:00; sun closed

A clause names its days, then its hours or ``closed``. Days are ``mon`` .. ``sun`` (or written in
full, in any case), alone, as ranges (``mon-fri``, which may not run backwards past Sunday) or in
comma lists of both; a clause without days is about every day. Hours are ``HH:MM-HH:MM``
intervals (``08.00`` and ``8:00`` also do, ``24:00`` ends a day), several to a day separated by
commas; an interval includes its start minute and ends at its end minute. An opening past
midnight is two clauses (``fri 20:00-24:00; sat 00:00-02:00``). A later clause replaces what an
earlier one said about its days, so ``mon-fri 08:00-16:00; wed closed`` closes Wednesdays. Days no
clause names are closed; ``closed`` alone is never open, and an empty text always open, holidays
included (the same as a number with no hours). Anything else is a ``ValueError`` whose message is
one sentence that names the mistake and shows how to write it, for the CLI to print as it is.

``open_at`` takes the clinic's local wall time (``local_time`` makes it from a clock reading and
the clinic's time zone): it is closed all day on the public holidays of the clinic's country, from
the ``holidays`` package, and on the clinic's extra closed days; otherwise open inside an
interval of that weekday. Holidays are computed once per (country, year) and kept, since every
inbound call to a number with hours asks.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {name: i for i, name in enumerate(DAYS)} | {
    full: i
    for i, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
}
_DAY_HINT = "use mon, tue, wed, thu, fri, sat or sun"
_CLOSED = "closed"
_MINUTES_PER_DAY = 24 * 60

_TIME = re.compile(r"(\d{1,2})[:.](\d{2})")
_DASHES = re.compile(r"\s*[-\u2013]\s*")  # a dash or an en dash, spaced or not

# One weekday's opening: (start, end) in minutes after midnight, sorted, not touching.
Intervals = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Weekly opening hours, Monday first; ``always_open`` for an empty spec."""

    week: tuple[Intervals, ...]
    always_open: bool = False

    @classmethod
    def parse(cls, text: str) -> OpeningHours:
        """Read an opening-hours line ("mon-fri 08:00-16:00; sat 09:00-12:00"); ValueError with
        one sentence on a mistake."""
        clauses = [clause.strip() for clause in text.split(";")]
        if not any(clauses):
            return cls(week=((),) * 7, always_open=True)
        week: list[Intervals] = [()] * 7
        for clause in clauses:
            if clause:
                days, intervals = _clause(clause)
                for day in days:
                    week[day] = intervals
        return cls(week=tuple(week))

    def open_at(self, when: datetime.datetime, region: str, extra_closed: frozenset[datetime.date]) -> bool:
        """Whether the clinic is open at ``when``, its local time, in ``region`` (ISO 3166 country)."""
        if self.always_open:
            return True
        day = when.date()
        if day in extra_closed or day in public_holidays(region, day.year):
            return False
        second = when.hour * 3600 + when.minute * 60 + when.second
        return any(start * 60 <= second < end * 60 for start, end in self.week[when.weekday()])

    def __str__(self) -> str:
        """The hours written the way ``parse`` reads them, days with the same hours in one clause."""
        if self.always_open:
            return ""
        alike: dict[Intervals, list[int]] = {}
        for day, intervals in enumerate(self.week):
            if intervals:
                alike.setdefault(intervals, []).append(day)
        clauses = [
            f"{_day_list(days)} {','.join(f'{_hhmm(s)}-{_hhmm(e)}' for s, e in intervals)}"
            for intervals, days in alike.items()
        ]
        return "; ".join(clauses) or _CLOSED


ALWAYS_OPEN = OpeningHours(week=((),) * 7, always_open=True)


def _clause(clause: str) -> tuple[list[int], Intervals]:
    """One clause: the weekdays it names and their intervals."""
    words = clause.lower().split()
    first = next((i for i, w in enumerate(words) if w[0].isdigit() or w.startswith(_CLOSED)), None)
    if first is None:
        raise ValueError(
            f"{clause!r} names days but no hours: write e.g. 'mon-fri 08:00-16:00' or 'sat closed'"
        )
    days = _days("".join(words[:first])) if first else list(range(7))
    hours = " ".join(words[first:])
    if hours.startswith(_CLOSED):
        if hours != _CLOSED:
            raise ValueError(f"{clause!r} has more after 'closed': a closed day has no hours")
        return days, ()
    return days, _intervals(hours)


def _days(text: str) -> list[int]:
    """Weekday numbers (Monday 0) of "mon-fri", "mon,wed", "tue,thu-sat"."""
    days: list[int] = []
    for item in text.split(","):
        if not item:
            raise ValueError(f"{text!r} has an empty day in its list: write e.g. 'mon,wed'")
        first, dash, last = item.partition("-")
        start = _day(first)
        end = _day(last) if dash else start
        if end < start:
            raise ValueError(
                f"{item!r} runs backwards: days go from mon to sun, so write it as "
                f"'{_day_list(list(range(start, 7)))},{_day_list(list(range(end + 1)))}'"
            )
        days.extend(range(start, end + 1))
    return days


def _day_list(days: list[int]) -> str:
    """Ascending weekday numbers written as "mon-tue,thu"."""
    spans: list[list[int]] = []
    for day in days:
        if spans and day == spans[-1][1] + 1:
            spans[-1][1] = day
        else:
            spans.append([day, day])
    return ",".join(DAYS[a] if a == b else f"{DAYS[a]}-{DAYS[b]}" for a, b in spans)


def _day(name: str) -> int:
    try:
        return _DAY_NAMES[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a day: {_DAY_HINT}") from None


def _intervals(text: str) -> Intervals:
    """Sorted intervals in minutes of "08:00-11:30, 12:00-16:00"; touching ones are joined."""
    found: list[tuple[int, int]] = []
    for item in text.split(","):
        item = item.strip()
        parts = _DASHES.split(item)
        if len(parts) != 2:
            raise ValueError(f"{item!r} is not an opening interval: write it as 08:00-16:00")
        start, end = _minute(parts[0], item), _minute(parts[1], item)
        if end <= start:
            raise ValueError(
                f"{item!r} ends before it starts: hours past midnight are two clauses, "
                "e.g. 'fri 20:00-24:00; sat 00:00-02:00'"
            )
        found.append((start, end))
    found.sort()
    joined: list[tuple[int, int]] = []
    for start, end in found:
        if joined and start < joined[-1][1]:
            prev = joined[-1]
            raise ValueError(
                f"{_hhmm(prev[0])}-{_hhmm(prev[1])} and {_hhmm(start)}-{_hhmm(end)} overlap: "
                "give each part of the day once"
            )
        if joined and start == joined[-1][1]:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return tuple(joined)


def _minute(text: str, item: str) -> int:
    """Minutes after midnight of "08:00", "8.00" or "24:00"."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{item!r} is not an opening interval: write it as 08:00-16:00")
    hour, minute = int(match[1]), int(match[2])
    value = hour * 60 + minute
    if minute > 59 or value > _MINUTES_PER_DAY:
        raise ValueError(f"{text!r} is not a time of day: times go from 00:00 to 24:00")
    return value


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@lru_cache(maxsize=256)
def public_holidays(region: str, year: int) -> frozenset[datetime.date]:
    """The public holidays of a country (ISO 3166 alpha-2) in a year; none for a country the
    ``holidays`` package does not know."""
    try:
        days = holidays.country_holidays(region.upper(), years=year)
    except NotImplementedError:
        return frozenset()
    return frozenset(days.keys())


def local_time(wall: float, timezone: str | None) -> datetime.datetime:
    """The wall-clock reading ``wall`` (seconds since the epoch) as local time in ``timezone`` (an
    IANA name such as Europe/Oslo), or in the server's time zone for None."""
    if timezone is None:
        return datetime.datetime.fromtimestamp(wall).astimezone()
    return datetime.datetime.fromtimestamp(wall, _zone(timezone))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone: give an IANA name such as Europe/Oslo") from None

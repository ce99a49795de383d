"""Calls in from the public network: which public number was called, and where it leads now.

Theory of operation
-------------------
A carrier writes the number it delivers as it pleases: ``sip:+4722334455@``, ``sip:4722334455@``,
``sip:22334455@``, ``tel:+4722334455``; a registering trunk often puts its own account name in
the Request-URI and the called number in ``P-Called-Party-ID`` (RFC 3455) or ``To``. ``called``
tries the Request-URI's user first, then those headers, and matches every E.164 form of each
(``sentral.routing.outside.called_candidates``) against the public numbers of the server.

``route`` then says where a call to that number goes at wall time ``wall``: to its destination
while the number's opening hours say open; outside them (a public holiday of the clinic's
country, an extra closed day, or outside the weekly hours) to its ``closed_to`` number, or to the
closed message (``announcement:clinic_closed``) when it has none. Clinic-local time is the
clinic's time zone, or the server's when it has none.

Pure: the directory's entries and the time come in, a decision goes out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sentral.config.directory import ClinicEntry, PublicNumberEntry
from sentral.routing.dialplan import ANNOUNCEMENT
from sentral.routing.hours import OpeningHours, local_time
from sentral.routing.outside import called_candidates

CLOSED_PROMPT = "clinic_closed"


@dataclass(frozen=True, slots=True)
class InboundRoute:
    """Where a call to public number ``number`` goes: ``dialled`` is a number of the clinic, an
    outside number (E.164) or ``announcement:NAME``; ``closed`` when the number's hours said so."""

    number: PublicNumberEntry
    dialled: str
    closed: bool


def called(
    users: Iterable[str], region: str, public_numbers: Mapping[str, PublicNumberEntry]
) -> PublicNumberEntry | None:
    """The public number the first of ``users`` (the Request-URI's user, then P-Called-Party-ID's
    and To's) that is one names, read in the carrier's country ``region``."""
    for user in users:
        if not user:
            continue
        for candidate in called_candidates(user, region):
            entry = public_numbers.get(candidate)
            if entry is not None:
                return entry
    return None


@functools.lru_cache(maxsize=256)
def _hours(spec: str) -> OpeningHours | None:
    try:
        return OpeningHours.parse(spec)
    except ValueError:
        return None  # validated when it was set; a spec that no longer parses leaves the number open


def clinic_time(clinic: ClinicEntry, wall: float) -> datetime:
    """Wall time ``wall`` as the clinic's clock shows it (the server's when it has no time zone, or
    one that is no longer known)."""
    try:
        return local_time(wall, clinic.timezone)
    except ValueError:
        return local_time(wall, None)


def is_open(entry: PublicNumberEntry, clinic: ClinicEntry, closed_days: frozenset[date], wall: float) -> bool:
    """Whether ``entry``'s opening hours hold at ``wall`` (a number without hours is always open)."""
    if not entry.hours:
        return True
    hours = _hours(entry.hours)
    if hours is None:
        return True
    return hours.open_at(clinic_time(clinic, wall), clinic.country, closed_days)


def route(
    entry: PublicNumberEntry, clinic: ClinicEntry, closed_days: frozenset[date], wall: float
) -> InboundRoute:
    """Where a call to ``entry`` goes at ``wall``."""
    if is_open(entry, clinic, closed_days, wall):
        return InboundRoute(entry, entry.destination, closed=False)
    return InboundRoute(entry, entry.closed_to or f"{ANNOUNCEMENT}{CLOSED_PROMPT}", closed=True)


__all__ = ["CLOSED_PROMPT", "InboundRoute", "called", "clinic_time", "is_open", "route"]

"""Who is calling: the answer of a caller-ID lookup and the interface every adapter offers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable


class CallerKind(Enum):
    """What sort of person a matched caller is."""

    PATIENT = "patient"
    CONTACT = "contact"
    STAFF = "staff"


@dataclass(frozen=True, slots=True)
class Match:
    """A caller found in a clinic's records."""

    name: str  # what the phone shows
    kind: CallerKind
    reference: str  # the record's id for the clinic platform ("" when none)
    source: str  # the name of the adapter that matched


class AdapterError(Exception):
    """An adapter could not be built from its configuration; the message says what to fix."""


@runtime_checkable
class Adapter(Protocol):
    """One configured lookup: asynchronous, and allowed to be slow or to fail (the chain copes).

    ``by_number`` gets an E.164 number (``+4722334455``); ``by_national_id`` an 11-digit (or the
    country's) national ID number, which an adapter must never log or keep.
    """

    name: str

    async def by_number(self, e164: str) -> Match | None: ...

    async def by_national_id(self, national_id: str) -> Match | None: ...

    async def close(self) -> None: ...


def parse_kind(text: str | None, default: CallerKind = CallerKind.PATIENT) -> CallerKind:
    """The caller kind written as ``text`` (any case, blank: ``default``); ValueError for an unknown one."""
    if text is None or not text.strip():
        return default
    return CallerKind(text.strip().lower())


__all__ = ["Adapter", "AdapterError", "CallerKind", "Match", "parse_kind"]

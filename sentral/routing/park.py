"""Park lots: a call waits on a numbered slot until someone dials the slot, or rings its parker again.

Theory of operation
-------------------
A park lot has a park number (700) and slots (701-720), from the directory's ``ParkLotEntry``.
A call sent to the park number, by a transfer or by a feature code during the call, is parked:
``ParkLot.park`` puts it on the first free slot in slot order and answers ``Parked``, whose slot
call control announces to the person who parked it (the parker) before it lets them go; the
parked caller hears music on hold from then on. When every slot is taken the answer is
``LotFull`` and nothing changes: call control tells the parker and leaves the call where it was.

Anyone in the clinic takes the call by dialling its slot: ``retrieve(slot)`` takes the call off
the lot and names it, or None when the slot is empty (call control then answers the dialler 404,
as for a number that leads nowhere right now). The lamps of busy-lamp keys on the slots follow
``occupied()``: a slot is lit while a call is on it, whatever that call is doing.

Recall. A call nobody retrieves within the lot's ``timeout`` rings its parker again:
``on_timer(now)``, due at ``next_deadline()``, returns one ``Recall`` per such call. The call
keeps its slot and its music while the parker's phone rings, so that whoever walks to another
phone and dials the slot in the meantime still gets it (call control then stops the recall).
What follows is reported back:

- the parker answers the recall: call control connects them and calls ``leave``;
- the recall is not answered (no answer, busy, rejected, phone off): ``recall_failed`` puts the
  call back on its slot for another ``timeout`` (``Reparked``), and after ``max_recalls``
  unanswered recalls gives up (``GiveUp``): the call leaves the lot, and call control either hangs
  it up after a short apology or sends it on to the clinic's reception; that choice is the
  clinic's, so the lot only says that waiting is over. Several recalls come first because a
  patient left on hold a little longer is better off than one cut off;
- the parked caller hangs up, at any time: ``leave``.

Every method takes what happened and, where time matters, ``now``; nothing here sends, sleeps or
logs, like the group hunt. Events about calls no longer on the lot (a retrieve racing a recall,
a late failure of a recall that was stopped) are answered with None and change nothing.

A changed ``ParkLotEntry`` (the operator ran ``sentral park set``) applies through ``reconfigure``:
new calls use the new slots and timeout, calls already parked keep their slot and their deadline,
even a slot the lot no longer has, which then can only be left, recalled or given up.

``ParkLots`` holds the lots of every clinic for call control and follows the directory
(``sync``): a lot the operator added is ready at once, a changed one is reconfigured, and a
removed one lingers, unreachable by number, until the calls still parked on it have left.

``ParkResolver`` is the dial plan's rule for park lots: the park number decides ``Park`` and a slot
``Retrieve``; whether the slot holds a call is for the lot to say at the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from math import inf
from types import MappingProxyType
from typing import Protocol

from sentral.config.directory import ClinicEntry, Directory, ParkLotEntry

# Unanswered recalls before a lot gives a call up: the parker is away from the phone for good.
DEFAULT_MAX_RECALLS = 3


# -- what the lot answers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parked:
    """The call waits on ``slot``: announce the slot to the parker, play hold music to the caller."""

    call_key: str
    slot: str


@dataclass(frozen=True, slots=True)
class LotFull:
    """Every slot is taken: the call was not parked."""

    call_key: str


@dataclass(frozen=True, slots=True)
class Recall:
    """The call waited ``timeout`` on ``slot``: ring ``parker_extension`` with it (``attempt`` from 1)."""

    call_key: str
    slot: str
    parker_extension: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Reparked:
    """An unanswered recall put the call back on ``slot`` until ``deadline``."""

    call_key: str
    slot: str
    deadline: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """``recalls`` recalls went unanswered: the call has left the lot, and call control ends or redirects it."""

    call_key: str
    slot: str
    parker_extension: str
    recalls: int


ParkResult = Parked | LotFull
RecallOutcome = Reparked | GiveUp


class StayState(Enum):
    """What a call on a slot is doing."""

    WAITING = "waiting"  # on hold, its recall timer running
    RECALLING = "recalling"  # on hold, its parker's phone ringing


@dataclass(slots=True)
class _Stay:
    call_key: str
    slot: str
    parker_extension: str
    deadline: float
    recalls: int = 0
    state: StayState = StayState.WAITING


# -- one lot's calls -----------------------------------------------------------------------------


class ParkLot:
    """The calls parked on one park lot: who is on which slot, and when each rings back."""

    def __init__(self, lot: ParkLotEntry, max_recalls: int = DEFAULT_MAX_RECALLS) -> None:
        if max_recalls < 1:
            raise ValueError(f"a park lot recalls at least once, not {max_recalls} times")
        self.lot = lot
        self.max_recalls = max_recalls
        self._by_slot: dict[str, _Stay] = {}
        self._by_call: dict[str, _Stay] = {}

    def __len__(self) -> int:
        return len(self._by_call)

    def __contains__(self, call_key: object) -> bool:
        return call_key in self._by_call

    def reconfigure(self, lot: ParkLotEntry) -> None:
        """The lot's settings changed: new calls follow them, parked calls keep slot and deadline."""
        self.lot = lot

    # -- queries

    def occupied(self) -> Mapping[str, str]:
        """Slot -> the call on it, in slot order: what the busy-lamp keys on the slots show."""
        slots = sorted(self._by_slot, key=lambda slot: (len(slot), slot))
        return MappingProxyType({slot: self._by_slot[slot].call_key for slot in slots})

    def slot_of(self, call_key: str) -> str | None:
        """The slot ``call_key`` is parked on, if it is."""
        stay = self._by_call.get(call_key)
        return stay.slot if stay is not None else None

    def state_of(self, call_key: str) -> StayState | None:
        """Whether ``call_key`` waits or is being recalled; None if it is not on the lot."""
        stay = self._by_call.get(call_key)
        return stay.state if stay is not None else None

    def next_deadline(self) -> float:
        """When ``on_timer`` is next due; ``math.inf`` when no call waits."""
        # A scan: a lot holds at most a hundred calls and usually two or three.
        return min((s.deadline for s in self._by_call.values() if s.state is StayState.WAITING), default=inf)

    # -- events

    def park(self, call_key: str, parker_extension: str, now: float) -> ParkResult:
        """Put a call on the first free slot, to ring ``parker_extension`` after the lot's timeout."""
        if call_key in self._by_call:
            raise ValueError(f"call {call_key!r} is parked already")
        slot = next((slot for slot in self.lot.slots if slot not in self._by_slot), None)
        if slot is None:
            return LotFull(call_key)
        stay = _Stay(call_key, slot, parker_extension, now + self.lot.timeout)
        self._by_slot[slot] = self._by_call[call_key] = stay
        return Parked(call_key, slot)

    def retrieve(self, slot: str) -> str | None:
        """Someone dialled ``slot``: the call on it, taken off the lot; None if the slot is empty.

        A call being recalled is taken too: call control stops the recall.
        """
        stay = self._by_slot.get(slot)
        if stay is None:
            return None
        self._remove(stay)
        return stay.call_key

    def leave(self, call_key: str) -> str | None:
        """The call left the lot otherwise: its caller hung up, or its parker answered the recall.

        Returns the slot it freed; None if it was not on the lot.
        """
        stay = self._by_call.get(call_key)
        if stay is None:
            return None
        self._remove(stay)
        return stay.slot

    def on_timer(self, now: float) -> list[Recall]:
        """Ring the parkers of the calls that have waited the lot's timeout, longest waiting first."""
        due = sorted(
            (s for s in self._by_call.values() if s.state is StayState.WAITING and now >= s.deadline),
            key=lambda s: (s.deadline, len(s.slot), s.slot),
        )
        recalls: list[Recall] = []
        for stay in due:
            stay.state = StayState.RECALLING
            stay.recalls += 1
            stay.deadline = inf
            recalls.append(Recall(stay.call_key, stay.slot, stay.parker_extension, stay.recalls))
        return recalls

    def recall_failed(self, call_key: str, now: float) -> RecallOutcome | None:
        """Nobody answered the recall of ``call_key``: back on its slot, or given up after ``max_recalls``.

        None when the call is not being recalled (it was retrieved meanwhile, or left).
        """
        stay = self._by_call.get(call_key)
        if stay is None or stay.state is not StayState.RECALLING:
            return None
        if stay.recalls >= self.max_recalls:
            self._remove(stay)
            return GiveUp(call_key, stay.slot, stay.parker_extension, stay.recalls)
        stay.state = StayState.WAITING
        stay.deadline = now + self.lot.timeout
        return Reparked(call_key, stay.slot, stay.deadline)

    def _remove(self, stay: _Stay) -> None:
        del self._by_slot[stay.slot]
        del self._by_call[stay.call_key]


# -- every clinic's lots -------------------------------------------------------------------------


class ParkLots:
    """The park lots of every clinic, kept in step with the directory."""

    def __init__(self, max_recalls: int = DEFAULT_MAX_RECALLS) -> None:
        self.max_recalls = max_recalls
        self._lots: dict[tuple[str, str], ParkLot] = {}  # (domain, lot name) -> lot

    def sync(self, directory: Directory) -> None:
        """Follow ``directory``: new lots are made, changed ones reconfigured, and removed ones
        dropped once no call is parked on them."""
        wanted = directory.park_lots
        for key, entry in wanted.items():
            lot = self._lots.get(key)
            if lot is None:
                self._lots[key] = ParkLot(entry, self.max_recalls)
            elif lot.lot != entry:
                lot.reconfigure(entry)
        for key in [key for key, lot in self._lots.items() if key not in wanted and not len(lot)]:
            del self._lots[key]

    def get(self, entry: ParkLotEntry) -> ParkLot:
        """The lot ``entry`` describes (made if the directory snapshot is newer than the last sync)."""
        key = (entry.domain, entry.name)  # as the directory keys it
        lot = self._lots.get(key)
        if lot is None:
            lot = self._lots[key] = ParkLot(entry, self.max_recalls)
        return lot

    def first(self, directory: Directory, domain: str) -> ParkLot | None:
        """The lot an in-call park code uses: the clinic's lot with the lowest park number."""
        domain = domain.lower()
        entries = [entry for (lot_domain, _), entry in directory.park_lots.items() if lot_domain == domain]
        if not entries:
            return None
        return self.get(min(entries, key=lambda entry: (len(entry.number), entry.number)))

    def occupied(self) -> list[tuple[ParkLotEntry, str, str]]:
        """Every parked call as (lot, slot, call key), by clinic, lot and slot."""
        rows = [(lot.lot, slot, key) for lot in self._lots.values() for slot, key in lot.occupied().items()]
        return sorted(rows, key=lambda row: (row[0].domain, row[0].name, len(row[1]), row[1]))


# -- the dial plan's rule ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Park:
    """Park the call that was sent here on ``lot``.

    Only a call in progress can be parked: a phone that dials the park number with nothing to
    park is refused by call control (403), not parked.
    """

    lot: ParkLotEntry


@dataclass(frozen=True, slots=True)
class Retrieve:
    """Take the call parked on ``slot`` of ``lot``, if there is one."""

    lot: ParkLotEntry
    slot: str


ParkDecision = Park | Retrieve


class Dialled(Protocol):
    """What ``ParkResolver`` reads of a routing question; the dial plan's ``Query`` is one."""

    @property
    def clinic(self) -> ClinicEntry: ...

    @property
    def number(self) -> str: ...

    @property
    def directory(self) -> Directory: ...


class ParkResolver:
    """A park number parks the call (``Park``); a slot takes the call parked there (``Retrieve``)."""

    def resolve(self, query: Dialled) -> ParkDecision | None:
        """The decision for a park number or slot of the caller's clinic; None for other numbers."""
        lot = query.directory.park_lot_at(query.clinic.domain, query.number)
        if lot is None:
            return None
        if query.number == lot.number:
            return Park(lot)
        return Retrieve(lot, query.number)


__all__ = [
    "DEFAULT_MAX_RECALLS",
    "Dialled",
    "GiveUp",
    "LotFull",
    "Park",
    "ParkDecision",
    "ParkLot",
    "ParkLots",
    "ParkResolver",
    "ParkResult",
    "Parked",
    "Recall",
    "RecallOutcome",
    "Reparked",
    "Retrieve",
    "StayState",
]

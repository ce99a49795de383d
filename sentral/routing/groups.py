"""Ring groups and functions: who rings, in which order, and what happens when nobody answers.

Theory of operation
-------------------
A call to a group or a function is walked through its members by one ``Hunt``. The hunt is a pure
state machine: the call controller feeds it what happens to the members it was told to ring
(``ringing``, ``answered``, ``failed``), the caller hanging up (``abandon``) and the clock
(``on_timer`` once ``next_deadline()`` has passed), always with ``now``; every method returns the
commands to carry out, in order:

- ``RingMember``: ring this member (every registered contact of the extension; the controller
  forks and folds the contacts' responses back into one member event);
- ``StopMember``: stop ringing this member (CANCEL; ACK then BYE for an answer that came too late);
- ``ConnectMember``: this member answered and has the call;
- ``Overflow``: nobody took the call; the group's overflow applies. ``destination`` is
  ``GroupEntry.overflow`` (None: answer 480, ``"busy"``: answer 486, otherwise a number of the
  clinic to route the call to) and ``cause`` says why, for the record ("rejected by all" ...);
- ``ReturnToTransferer``: the call was transferred here and rejected; it goes back.

Who may ring comes in as one ``Candidate`` per member, the controller's live view: ``available``
folds together being logged in to the group, the phone being logged on and a registration;
``busy`` is being in an answered call. Only available members ring, and busy ones only when the
group's ``ring_busy`` is set. A candidate that is no longer a member (the directory changed
between two snapshots) is not rung; a member without a candidate is not available.

Strategies (``GroupEntry.strategy``). ``ringall`` rings every candidate at once until
``ring_timeout``. The others hunt: one member at a time for ``member_timeout`` each, then the next,
the whole attempt bounded by ``ring_timeout``; each member is tried at most once per call.
``linear`` goes in member order; ``rrmemory`` starts after the member this group rang last (on any
call); ``leastrecent`` starts with whoever answered a call of this group longest ago (never
first); ``fewestcalls`` with whoever answered fewest; ``random`` shuffles. Ties keep member order.
The order is fixed when the hunt starts, from the ``GroupMemory`` shared by every call of the
server, and the hunt writes back to it whom it rang and who answered.

Answers from members. A member who rejects (486, 600, 603) passes the call on: in ``ringall`` the
others simply keep ringing, in a hunt the next member rings at once. A timeout of ours, 408 or 480
is no answer and passes the call on too, as does any other failure (404, 500, 503 ...); the
record tells them apart (``outcomes``). The first answer wins and every other member still ringing
is stopped. A member whose turn ran out may still answer in the instant before our CANCEL reaches
the phone: while the hunt is still looking for someone, that answer is taken (the caller has waited
long enough); once the hunt is over it is stopped. Events about members the hunt did not ring, or
no longer rings, are ignored, since such races are normal on the wire.

When every member tried has failed, or ``ring_timeout`` runs out, the hunt ends in ``Overflow``.
Transfers: a hunt made with ``return_to`` (the transferer's extension) ends in
``ReturnToTransferer`` instead, when the reason it would overflow is that every member rejected;
a transferred call to one colleague who declines goes back to the colleague who sent it, as the
clinic expects. A transfer that nobody answers still overflows here; recalling the transferer on
no answer belongs to the transfer policy.

A hunt ends in exactly one of ``ConnectMember``, ``Overflow``, ``ReturnToTransferer`` or, when the
caller hangs up, nothing (the members still ringing are stopped).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from math import inf
from types import MappingProxyType
from typing import assert_never

from sentral.config.directory import GroupEntry, Strategy

# Statuses with which a person declines a call (busy here, busy everywhere, decline): passed on
# as a reject. 408 and 480 mean the phone was there but nobody took it: no answer.
REJECT_STATUSES = frozenset({486, 600, 603})
NO_ANSWER_STATUSES = frozenset({408, 480})


# -- input ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """One member as the call controller sees it right now."""

    extension: str
    available: bool  # logged in to the group, phone logged on, registered
    busy: bool  # in an answered call right now


# -- commands ------------------------------------------------------------------------------------


class StopReason(Enum):
    """Why a member stops ringing; the value is what a Reason header or the record says."""

    ANSWERED_ELSEWHERE = "answered elsewhere"
    MEMBER_TIMEOUT = "member timeout"
    RING_TIMEOUT = "ring timeout"
    CALLER_LEFT = "caller hung up"
    TOO_LATE = "answered too late"


class OverflowCause(Enum):
    """Why the overflow applies; the value is what the call record says."""

    ALL_REJECTED = "rejected by all"
    NO_ANSWER = "no answer"  # timeouts, failures, or a mix with some rejects
    ALL_BUSY = "all busy"  # members were there, all in a call
    NOBODY_AVAILABLE = "nobody available"  # nobody logged in, logged on and registered
    WAIT_EXPIRED = "waited too long"  # the queue's max_wait ran out


@dataclass(frozen=True, slots=True)
class RingMember:
    """Ring this member."""

    extension: str


@dataclass(frozen=True, slots=True)
class StopMember:
    """Stop ringing this member (or hang up on an answer that came too late)."""

    extension: str
    reason: StopReason


@dataclass(frozen=True, slots=True)
class ConnectMember:
    """This member answered: connect the caller to them."""

    extension: str


@dataclass(frozen=True, slots=True)
class Overflow:
    """Nobody took the call: route it to ``destination`` (None: 480, "busy": 486, else a number)."""

    destination: str | None
    cause: OverflowCause

    @property
    def all_rejected(self) -> bool:
        """Every member rung declined the call."""
        return self.cause is OverflowCause.ALL_REJECTED


@dataclass(frozen=True, slots=True)
class ReturnToTransferer:
    """A transferred call was rejected by everyone it rang: give it back to ``transferer``."""

    transferer: str
    rejected_by: tuple[str, ...]


HuntCommand = RingMember | StopMember | ConnectMember | Overflow | ReturnToTransferer


class MemberOutcome(Enum):
    """What became of one member rung on one call, for the call record."""

    RINGING = "ringing"  # still ringing: no outcome yet
    ANSWERED = "answered"
    REJECTED = "rejected"
    NO_ANSWER = "no answer"
    FAILED = "failed"
    STOPPED = "stopped"  # someone else answered, or the caller hung up


class HuntState(Enum):
    """Where a hunt stands; every state but READY and HUNTING is final."""

    READY = "ready"
    HUNTING = "hunting"
    ANSWERED = "answered"
    OVERFLOWED = "overflowed"
    RETURNED = "returned"
    ABANDONED = "abandoned"


def classify(status: int) -> MemberOutcome:
    """The outcome a member's final failure status means."""
    if status in REJECT_STATUSES:
        return MemberOutcome.REJECTED
    if status in NO_ANSWER_STATUSES:
        return MemberOutcome.NO_ANSWER
    return MemberOutcome.FAILED


# -- memory across calls -------------------------------------------------------------------------


@dataclass(slots=True)
class _GroupRecord:
    last_rung: str | None = None
    answered_at: dict[str, float] = field(default_factory=dict)
    answered_calls: dict[str, int] = field(default_factory=dict)


class GroupMemory:
    """What the strategies remember across calls, per group (domain, name); one per server.

    It lives in memory only: after a restart ``rrmemory`` starts from the first member and
    ``leastrecent``/``fewestcalls`` treat everyone as never having answered, which is fair.
    """

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], _GroupRecord] = {}

    def _record(self, group: GroupEntry) -> _GroupRecord:
        key = (group.domain, group.name)
        record = self._groups.get(key)
        if record is None:
            record = self._groups[key] = _GroupRecord()
        return record

    def rung(self, group: GroupEntry, extension: str) -> None:
        """``extension`` was just rung for a call of ``group``."""
        self._record(group).last_rung = extension

    def answered(self, group: GroupEntry, extension: str, now: float) -> None:
        """``extension`` answered a call of ``group`` at ``now``."""
        record = self._record(group)
        record.answered_at[extension] = now
        record.answered_calls[extension] = record.answered_calls.get(extension, 0) + 1

    def last_rung(self, group: GroupEntry) -> str | None:
        """The member of ``group`` rung last, on any call."""
        record = self._groups.get((group.domain, group.name))
        return record.last_rung if record is not None else None

    def last_answered(self, group: GroupEntry, extension: str) -> float | None:
        """When ``extension`` last answered a call of ``group``; None if never."""
        record = self._groups.get((group.domain, group.name))
        return record.answered_at.get(extension) if record is not None else None

    def answered_calls(self, group: GroupEntry, extension: str) -> int:
        """How many calls of ``group`` ``extension`` has answered."""
        record = self._groups.get((group.domain, group.name))
        return record.answered_calls.get(extension, 0) if record is not None else 0


# -- who may ring, in which order ----------------------------------------------------------------


def eligible(group: GroupEntry, candidates: Iterable[Candidate]) -> list[str]:
    """The extensions of ``group`` that may ring now, in member order."""
    ok = {c.extension for c in candidates if c.available and (group.ring_busy or not c.busy)}
    return [m.extension for m in group.members if m.extension in ok]


def any_available(group: GroupEntry, candidates: Iterable[Candidate]) -> bool:
    """True when at least one member of ``group`` is available, busy or not."""
    members = {m.extension for m in group.members}
    return any(c.available and c.extension in members for c in candidates)


def ring_order(
    group: GroupEntry, extensions: Sequence[str], memory: GroupMemory, rng: random.Random
) -> list[str]:
    """The order in which ``group``'s strategy tries ``extensions`` (given in member order)."""
    match group.strategy:
        case Strategy.RINGALL | Strategy.LINEAR:
            return list(extensions)
        case Strategy.RRMEMORY:
            # Rotate the whole member list, not only today's candidates, so that the turn passes
            # on in member order even when the member rung last is now logged out.
            members = [m.extension for m in group.members]
            last = memory.last_rung(group)
            start = members.index(last) + 1 if last in members else 0
            wanted = set(extensions)
            return [e for e in members[start:] + members[:start] if e in wanted]
        case Strategy.LEASTRECENT:
            never = -inf
            return sorted(extensions, key=lambda e: _or(memory.last_answered(group, e), never))
        case Strategy.FEWESTCALLS:
            return sorted(extensions, key=lambda e: memory.answered_calls(group, e))
        case Strategy.RANDOM:
            shuffled = list(extensions)
            rng.shuffle(shuffled)
            return shuffled
        case _:
            assert_never(group.strategy)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


# -- one call's walk through one group -----------------------------------------------------------


class Hunt:
    """One call's walk through one group: who rings when, until someone answers or the overflow."""

    def __init__(
        self,
        group: GroupEntry,
        candidates: Sequence[Candidate],
        memory: GroupMemory,
        rng: random.Random | None = None,
        return_to: str | None = None,
    ) -> None:
        self.group = group
        self.candidates = tuple(candidates)
        self.memory = memory
        self.return_to = return_to
        self.state = HuntState.READY
        self._rng = rng if rng is not None else random.Random()
        self._order: list[str] = []
        self._next = 0  # index in _order of the member a hunt rings next
        self._current: str | None = None  # the member a hunt rings now (hunting strategies)
        self._outcomes: dict[str, MemberOutcome] = {}  # every member rung, in the order rung
        self._timed_out: set[str] = set()  # members whose turn we ended: their answer may still come
        self._ring_deadline = inf
        self._member_deadline = inf

    # -- what the record and the controller may ask

    @property
    def order(self) -> tuple[str, ...]:
        """The members this hunt tries, in the order it tries them (empty before ``start``)."""
        return tuple(self._order)

    @property
    def done(self) -> bool:
        """True once the hunt has ended, one way or another."""
        return self.state not in (HuntState.READY, HuntState.HUNTING)

    def outcomes(self) -> Mapping[str, MemberOutcome]:
        """Every member rung so far, in the order rung, with what became of them."""
        return MappingProxyType(dict(self._outcomes))

    def next_deadline(self) -> float:
        """When ``on_timer`` is next due; ``math.inf`` when nothing is."""
        if self.state is not HuntState.HUNTING:
            return inf
        return min(self._ring_deadline, self._member_deadline)

    # -- events

    def start(self, now: float) -> list[HuntCommand]:
        """Begin ringing: the first member(s), or the overflow when nobody may ring."""
        if self.state is not HuntState.READY:
            raise RuntimeError("a hunt starts once")
        self.state = HuntState.HUNTING
        self._order = ring_order(self.group, eligible(self.group, self.candidates), self.memory, self._rng)
        if not self._order:
            cause = (
                OverflowCause.ALL_BUSY
                if any_available(self.group, self.candidates)
                else OverflowCause.NOBODY_AVAILABLE
            )
            self.state = HuntState.OVERFLOWED
            return [Overflow(self.group.overflow, cause)]
        self._ring_deadline = now + self.group.ring_timeout
        if self.group.strategy is Strategy.RINGALL:
            self._next = len(self._order)
            return [self._ring(extension) for extension in self._order]
        return self._ring_next(now)

    def ringing(self, extension: str, now: float) -> list[HuntCommand]:
        """``extension`` is alerting. Nothing to decide: the controller relays ringback itself,
        and a member's time counts from when it was rung, not from when it started alerting."""
        return []

    def answered(self, extension: str, now: float) -> list[HuntCommand]:
        """``extension`` answered: it gets the call, or is hung up on if the hunt is over."""
        outcome = self._outcomes.get(extension)
        if outcome is None:
            return []  # never rung by this hunt: not our leg
        if self.state is not HuntState.HUNTING or not (
            outcome is MemberOutcome.RINGING or extension in self._timed_out
        ):
            return [StopMember(extension, StopReason.TOO_LATE)]
        self.state = HuntState.ANSWERED
        self._outcomes[extension] = MemberOutcome.ANSWERED
        self.memory.answered(self.group, extension, now)
        self._current = None
        self._member_deadline = self._ring_deadline = inf
        return [
            ConnectMember(extension),
            *self._stop_ringing(StopReason.ANSWERED_ELSEWHERE, MemberOutcome.STOPPED),
        ]

    def failed(self, extension: str, status: int, now: float) -> list[HuntCommand]:
        """``extension`` ended without answering, with final ``status`` (408 for a timeout)."""
        if self.state is not HuntState.HUNTING or self._outcomes.get(extension) is not MemberOutcome.RINGING:
            return []  # a member we already stopped, or never rang, telling us what we know
        self._outcomes[extension] = classify(status)
        if self.group.strategy is Strategy.RINGALL:
            if self._still_ringing():
                return []
            return self._end_unanswered([])
        self._current = None
        return self._ring_next(now)

    def on_timer(self, now: float) -> list[HuntCommand]:
        """Time passed: a member's turn or the whole ring time may have run out."""
        if self.state is not HuntState.HUNTING:
            return []
        if now >= self._ring_deadline:
            stops = self._stop_ringing(StopReason.RING_TIMEOUT, MemberOutcome.NO_ANSWER)
            return self._end_unanswered(stops)
        if now >= self._member_deadline and self._current is not None:
            stop: list[HuntCommand] = [StopMember(self._current, StopReason.MEMBER_TIMEOUT)]
            self._outcomes[self._current] = MemberOutcome.NO_ANSWER
            self._timed_out.add(self._current)
            self._current = None
            return stop + self._ring_next(now)
        return []

    def abandon(self, now: float) -> list[HuntCommand]:
        """The caller hung up: stop whoever still rings."""
        if self.done:
            return []
        self.state = HuntState.ABANDONED
        self._current = None
        self._member_deadline = self._ring_deadline = inf
        return self._stop_ringing(StopReason.CALLER_LEFT, MemberOutcome.STOPPED)

    # -- the walk

    def _ring(self, extension: str) -> RingMember:
        self._outcomes[extension] = MemberOutcome.RINGING
        self.memory.rung(self.group, extension)
        return RingMember(extension)

    def _ring_next(self, now: float) -> list[HuntCommand]:
        if self._next >= len(self._order) or now >= self._ring_deadline:
            return self._end_unanswered([])
        extension = self._order[self._next]
        self._next += 1
        self._current = extension
        self._member_deadline = min(now + self.group.member_timeout, self._ring_deadline)
        return [self._ring(extension)]

    def _still_ringing(self) -> list[str]:
        return [e for e, o in self._outcomes.items() if o is MemberOutcome.RINGING]

    def _stop_ringing(self, reason: StopReason, outcome: MemberOutcome) -> list[HuntCommand]:
        stops: list[HuntCommand] = []
        for extension in self._still_ringing():
            self._outcomes[extension] = outcome
            stops.append(StopMember(extension, reason))
        return stops

    def _end_unanswered(self, commands: list[HuntCommand]) -> list[HuntCommand]:
        self._current = None
        self._member_deadline = self._ring_deadline = inf
        outcomes = list(self._outcomes.values())
        all_rejected = bool(outcomes) and all(o is MemberOutcome.REJECTED for o in outcomes)
        if all_rejected and self.return_to is not None:
            self.state = HuntState.RETURNED
            return [*commands, ReturnToTransferer(self.return_to, tuple(self._outcomes))]
        self.state = HuntState.OVERFLOWED
        cause = OverflowCause.ALL_REJECTED if all_rejected else OverflowCause.NO_ANSWER
        return [*commands, Overflow(self.group.overflow, cause)]


__all__ = [
    "NO_ANSWER_STATUSES",
    "REJECT_STATUSES",
    "Candidate",
    "ConnectMember",
    "GroupMemory",
    "Hunt",
    "HuntCommand",
    "HuntState",
    "MemberOutcome",
    "Overflow",
    "OverflowCause",
    "ReturnToTransferer",
    "RingMember",
    "StopMember",
    "StopReason",
    "any_available",
    "classify",
    "eligible",
    "ring_order",
]

"""Queues: callers waiting for a group's members, acute calls first.

Theory of operation
-------------------
``GroupQueue`` holds one group's waiting callers, each known by its call key (the call's id).
Acute calls stand before every normal call; within one priority it is first come, first served.
``join`` returns the caller's position (1 is next), ``position`` tells it at any time (for
position announcements), ``leave`` takes a caller out (they hung up), ``pop`` takes the head.
A caller may wait ``max_wait`` seconds from joining: ``expired(now)`` takes out those who have
waited that long, and ``next_deadline()`` says when the next one will have.

``CallDistributor`` decides, for one group, what happens to each call offered to it. It is pure
like ``Hunt``: the call controller tells it what happened, with its current view of the members
(one ``Candidate`` each) and ``now``, and carries out what it returns:

- ``StartHunt``: ring this call now; the hunt is started already and its first commands come
  along. The controller drives the hunt from then on;
- ``Wait``: the caller waits in the queue, at this position;
- ``Divert``: the call leaves the group for its overflow (``Overflow`` says where and why).

Events: ``arrive`` (a call for the group), ``release`` (a call no longer needs the group: its hunt
ended in an answer, an overflow or a return, or the caller hung up, ringing or waiting),
``members_changed`` (a member's call ended, a member logged in, out, on or off, a registration
came or went), ``on_timer`` (a waiting caller's ``max_wait`` ran out).

The rules. The caller's own phones never ring for their call: a member calling their own group
is left out of every decision about that call (but not of other calls). A call when no member is
available at all (nobody logged in, logged on and registered, the caller aside) is diverted at
once: a queue with nobody to serve it is no queue. When everyone leaves while callers wait, the
waiting callers are diverted for the same reason (at closing time they get the overflow, not
minutes of hold music). Otherwise the call joins the queue and the queue is served:
while fewer calls of the group are being offered than there are members who may ring (available,
and not in a call unless the group has ``ring_busy``), the head of the queue starts its hunt. So
an arriving call rings at once when the queue is empty and a member is free, an acute call goes
ahead of every normal call waiting, and a caller whose hunt ends with everyone rejecting goes to
the overflow (the controller carries out the hunt's ``Overflow`` and releases the call) rather than
back into the queue. A group with ``max_wait`` of zero has no queue: a call that cannot ring at
once is diverted as ``ALL_BUSY``.

Why one offer per free member, in every strategy. A hunt rings all its candidates (``ringall``) or
one after the other, so a free member may see two calls of the group at once; but counting offers
against free members means no more calls ring than there are people to answer them, and the rest
wait where priority and arrival order can be kept. Ringing every waiting call on every free phone
would let whoever picks up choose, and an acute call could be left ringing behind normal ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from math import inf

from sentral.config.directory import GroupEntry
from sentral.routing.groups import (
    Candidate,
    GroupMemory,
    Hunt,
    HuntCommand,
    Overflow,
    OverflowCause,
    any_available,
    eligible,
)


@dataclass(frozen=True, slots=True)
class Waiting:
    """One caller in a queue."""

    call_key: str
    acute: bool
    joined: float


class GroupQueue:
    """One group's waiting callers: acute calls first, then first come, first served."""

    def __init__(self, max_wait: float, waited: Callable[[float], None] | None = None) -> None:
        self.max_wait = max_wait
        # Told how long each caller waited, as they leave with a time (served, diverted, gone).
        self.waited = waited
        # Dicts keep insertion order, which within one priority is arrival order.
        self._acute: dict[str, Waiting] = {}
        self._normal: dict[str, Waiting] = {}

    def __len__(self) -> int:
        return len(self._acute) + len(self._normal)

    def __contains__(self, call_key: object) -> bool:
        return call_key in self._acute or call_key in self._normal

    def __iter__(self) -> Iterator[Waiting]:
        """The waiting callers, next first."""
        yield from self._acute.values()
        yield from self._normal.values()

    def join(self, call_key: str, acute: bool, now: float) -> int:
        """Add a caller; their position (1 is next)."""
        if call_key in self:
            raise ValueError(f"call {call_key!r} is already waiting")
        (self._acute if acute else self._normal)[call_key] = Waiting(call_key, acute, now)
        position = self.position(call_key)
        assert position is not None
        return position

    def leave(self, call_key: str, now: float | None = None) -> bool:
        """Take a caller out (they hung up); False if they were not waiting. With ``now``, how
        long they waited is told to ``waited``."""
        waiting = self._acute.pop(call_key, None) or self._normal.pop(call_key, None)
        if waiting is None:
            return False
        if now is not None and self.waited is not None:
            self.waited(max(0.0, now - waiting.joined))
        return True

    def position(self, call_key: str) -> int | None:
        """Where a caller stands (1 is next); None if they are not waiting."""
        for index, waiting in enumerate(self, start=1):
            if waiting.call_key == call_key:
                return index
        return None

    def head(self) -> Waiting | None:
        """The caller served next, if any."""
        return next(iter(self), None)

    def pop(self, now: float | None = None) -> Waiting:
        """Take out the caller served next (at ``now``, see ``leave``)."""
        waiting = self.head()
        if waiting is None:
            raise IndexError("nobody is waiting")
        self.leave(waiting.call_key, now)
        return waiting

    def expired(self, now: float) -> list[Waiting]:
        """Take out every caller who has waited ``max_wait`` by ``now``, longest waiting first."""
        gone = sorted((w for w in self if now >= w.joined + self.max_wait), key=lambda w: w.joined)
        for waiting in gone:
            self.leave(waiting.call_key, now)
        return gone

    def next_deadline(self) -> float:
        """When the next caller will have waited ``max_wait``; ``math.inf`` when nobody waits."""
        # A scan: a clinic's queue holds a handful of callers, and max_wait may change under them.
        return min((w.joined + self.max_wait for w in self), default=inf)


# -- what the distributor decides ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class StartHunt:
    """Ring this call now: ``hunt`` has started and ``commands`` are its first."""

    call_key: str
    hunt: Hunt
    commands: tuple[HuntCommand, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    """The caller waits in the queue at ``position`` (1 is next)."""

    call_key: str
    position: int


@dataclass(frozen=True, slots=True)
class Divert:
    """The call leaves the group for its overflow."""

    call_key: str
    overflow: Overflow


DistributorCommand = StartHunt | Wait | Divert


class CallDistributor:
    """One group's calls: ring now, wait in the queue, or overflow."""

    def __init__(
        self,
        group: GroupEntry,
        memory: GroupMemory,
        rng: random.Random | None = None,
        waited: Callable[[float], None] | None = None,
    ) -> None:
        self.group = group
        self.memory = memory
        self.queue = GroupQueue(group.max_wait, waited)
        self._rng = rng if rng is not None else random.Random()
        self._offered: set[str] = set()  # calls whose hunt runs now
        # The calling extension of each call (from the group's clinic) offered or waiting: a
        # member's own phones never ring for their own call.
        self._callers: dict[str, str] = {}

    @property
    def offered(self) -> frozenset[str]:
        """The calls of this group being rung now."""
        return frozenset(self._offered)

    def position(self, call_key: str) -> int | None:
        """Where a waiting caller stands (1 is next); None if they are not waiting."""
        return self.queue.position(call_key)

    def reconfigure(self, group: GroupEntry) -> None:
        """The group's settings changed: later decisions and waiting callers follow them."""
        self.group = group
        self.queue.max_wait = group.max_wait

    def arrive(
        self,
        call_key: str,
        acute: bool,
        candidates: Sequence[Candidate],
        now: float,
        *,
        caller: str | None = None,
    ) -> list[DistributorCommand]:
        """A call for the group: ring it, queue it, or divert it. ``caller`` is the calling
        extension: a member calling their own group is not rung for it, and when nobody else is
        available the call is diverted as for a group with nobody available."""
        if call_key in self.queue or call_key in self._offered:
            raise ValueError(f"call {call_key!r} is already with this group")
        if not any_available(self.group, _others(candidates, caller)):
            return [Divert(call_key, Overflow(self.group.overflow, OverflowCause.NOBODY_AVAILABLE))]
        if caller is not None:
            self._callers[call_key] = caller
        self.queue.join(call_key, acute, now)
        commands = self._serve(candidates, now)
        position = self.queue.position(call_key)
        if position is None:
            return commands
        if self.group.max_wait <= 0:
            self.queue.leave(call_key, now)
            self._callers.pop(call_key, None)
            return [*commands, Divert(call_key, Overflow(self.group.overflow, OverflowCause.ALL_BUSY))]
        return [*commands, Wait(call_key, position)]

    def release(self, call_key: str, candidates: Sequence[Candidate], now: float) -> list[DistributorCommand]:
        """A call no longer needs the group (answered, overflowed, returned, or the caller left)."""
        self.queue.leave(call_key, now)
        self._offered.discard(call_key)
        self._callers.pop(call_key, None)
        return self.members_changed(candidates, now)

    def members_changed(self, candidates: Sequence[Candidate], now: float) -> list[DistributorCommand]:
        """Members came, went, or finished a call: serve the queue, or divert the callers who have
        nobody left (but, for a member calling their own group, themselves)."""
        overflow = Overflow(self.group.overflow, OverflowCause.NOBODY_AVAILABLE)
        commands: list[DistributorCommand] = []
        for waiting in list(self.queue):
            if not any_available(self.group, _others(candidates, self._callers.get(waiting.call_key))):
                self.queue.leave(waiting.call_key, now)
                self._callers.pop(waiting.call_key, None)
                commands.append(Divert(waiting.call_key, overflow))
        return commands + self._serve(candidates, now)

    def on_timer(self, now: float) -> list[DistributorCommand]:
        """Divert the callers who have waited ``max_wait``."""
        overflow = Overflow(self.group.overflow, OverflowCause.WAIT_EXPIRED)
        expired = self.queue.expired(now)
        for waiting in expired:
            self._callers.pop(waiting.call_key, None)
        return [Divert(waiting.call_key, overflow) for waiting in expired]

    def next_deadline(self) -> float:
        """When ``on_timer`` is next due; ``math.inf`` when nobody waits."""
        return self.queue.next_deadline()

    def _serve(self, candidates: Sequence[Candidate], now: float) -> list[DistributorCommand]:
        commands: list[DistributorCommand] = []
        while (waiting := self.queue.head()) is not None:
            # Counted for the caller at the head: a member calling their own group is free, but
            # not for that call.
            theirs = _others(candidates, self._callers.get(waiting.call_key))
            if len(self._offered) >= len(eligible(self.group, theirs)):
                break
            self.queue.pop(now)
            hunt = Hunt(self.group, theirs, self.memory, self._rng)
            started = tuple(hunt.start(now))
            if not hunt.done:  # a zero ring_timeout ends a hunt as it starts
                self._offered.add(waiting.call_key)
            else:
                self._callers.pop(waiting.call_key, None)
            commands.append(StartHunt(waiting.call_key, hunt, started))
        return commands


def _others(candidates: Sequence[Candidate], caller: str | None) -> Sequence[Candidate]:
    """The candidates but the caller: a member's phones never ring for their own call."""
    if caller is None:
        return candidates
    return [candidate for candidate in candidates if candidate.extension != caller]


__all__ = [
    "CallDistributor",
    "DistributorCommand",
    "Divert",
    "GroupQueue",
    "StartHunt",
    "Wait",
    "Waiting",
]

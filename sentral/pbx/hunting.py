"""Ring groups and functions in calls: the routing hunts and queues, spoken to call control.

Theory of operation
-------------------
``sentral.routing.groups`` and ``sentral.routing.queue`` decide, free of SIP, who rings for a
call to a group or function and whether the caller waits; this module carries their decisions
into the call-control vocabulary of ``sentral.pbx.call``. ``Hunting`` is the controller's
``GroupCalls``: one per server, it keeps a ``CallDistributor`` per group (its queue) and the
``GroupMemory`` the strategies share, and makes a ``GroupRing`` strategy for each call.

A member is rung on every registered contact of their extension, so the controller sees legs
while the hunt thinks in members: ``GroupRing`` folds the legs of one member back into one member
event. A reject from any of a member's phones (486, 600, 603) is the member's reject and stops
their other phones; any other failure counts once all of that member's phones have failed, with
the most telling status among them. The first 2xx connects and stops everyone else.

A call enters through a ``Timer`` event the controller sends right after routing it here: the
distributor says ring now (``StartHunt``), wait (``Wait``: ``Ringback`` with music, which the
controller plays as early media where it can; where it cannot, the caller hears ringback), or
overflow (``Divert``). Decisions about *other* calls (a waiting call may start when this one is
answered or hangs up) are parked on their ``GroupRing`` and those calls are handed back to the
controller by ``freed``, which sends each a ``Timer`` event. The
controller calls ``freed`` whenever someone may have become free: a call ended, staff logged in,
a phone registered.

Position announcements. A group or function with ``announce_every`` tells a waiting caller their
place in the queue ("you are number 2 in the queue", ``Announce``): first ``FIRST_ANNOUNCEMENT``
seconds after the music starts, then every ``announce_every`` seconds while they still wait, each
time with the place they have then (an acute call arriving moves the others back). Position 1 is
the next caller to ring a member. Nothing is announced once the call's hunt has begun.

An overflow to a number is a ``Route`` command: the controller runs the dial plan again, so an
overflow can be an extension, another group or function, and loops are bounded there. With no
overflow configured the caller gets 486 when every member rejected, else 480; ``busy`` is 486.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from math import inf

from sentral.config.directory import Directory, GroupEntry
from sentral.media.sounds import digits
from sentral.pbx.call import (
    Announce,
    Call,
    CallEvent,
    Cancel,
    Command,
    Connect,
    Fail,
    Leg,
    LegAnswered,
    LegFailed,
    LegRinging,
    Ringback,
    RingCaller,
    Route,
    Timer,
    Try,
    best_failure,
)
from sentral.routing.dialplan import BindingsLookup
from sentral.routing.groups import (
    REJECT_STATUSES,
    Candidate,
    ConnectMember,
    GroupMemory,
    Hunt,
    HuntCommand,
    Overflow,
    OverflowCause,
    ReturnToTransferer,
    RingMember,
    StopMember,
)
from sentral.routing.queue import CallDistributor, DistributorCommand, Divert, StartHunt, Wait, Waiting

# A caller who starts waiting hears this many seconds of music before their first position.
FIRST_ANNOUNCEMENT = 4.0


def position_prompts(position: int) -> tuple[str, ...]:
    """The prompts that say "you are number ``position`` in the queue"."""
    return ("you_are_number", *digits(position), "in_the_queue")


class Hunting:
    """Every group's queue and memory, and a ``GroupRing`` for each call to a group."""

    def __init__(
        self,
        directory: Callable[[], Directory],
        bindings: BindingsLookup,
        busy: Callable[[str, str], bool],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.directory = directory
        self.bindings = bindings
        self.busy = busy
        self.memory = GroupMemory()
        self.rng = rng if rng is not None else random.Random()
        self._distributors: dict[tuple[str, str], CallDistributor] = {}
        self._rings: dict[str, GroupRing] = {}  # call id -> its strategy, while it needs the group
        self._wake: dict[str, Call] = {}  # calls with distributor commands waiting for them
        # (domain, group name) -> callers who have left its queue, and the seconds they waited.
        self.waits: dict[tuple[str, str], tuple[int, float]] = {}

    def ring(self, call: Call, group: GroupEntry, acute: bool, now: float) -> GroupRing:
        ring = GroupRing(self, call, group, acute)
        self._rings[call.id] = ring
        return ring

    def freed(self, now: float) -> list[Call]:
        for key, distributor in list(self._distributors.items()):
            if distributor.queue:
                group = self._current(key, distributor)
                if group is not None:
                    self._dispatch(distributor.members_changed(self.candidates(group), now))
        woken = list(self._wake.values())
        self._wake.clear()
        return woken

    def queue_lengths(self) -> dict[tuple[str, str], int]:
        """How many callers wait in each group's queue now, by (domain, group name), for metrics."""
        return {key: len(distributor.queue) for key, distributor in self._distributors.items() if distributor.queue}

    def queues(self) -> dict[tuple[str, str], list[Waiting]]:
        """The callers waiting in each group's queue now, next first (acute first), by (domain,
        group name): what a switchboard shows."""
        return {key: list(distributor.queue) for key, distributor in self._distributors.items() if distributor.queue}

    def _waited(self, key: tuple[str, str], seconds: float) -> None:
        count, total = self.waits.get(key, (0, 0.0))
        self.waits[key] = (count + 1, total + seconds)

    def waiting(self, call_id: str) -> int | None:
        """A waiting caller's position in its group's queue (1 is next), for announcements."""
        ring = self._rings.get(call_id)
        return ring.distributor.position(call_id) if ring is not None else None

    # -- what the group rings make use of

    def candidates(self, group: GroupEntry, *, busy_now: str | None = None) -> list[Candidate]:
        """Every member of ``group`` as they stand: ``busy_now`` has just answered a call."""
        directory = self.directory()
        domain = group.domain
        found: list[Candidate] = []
        for member in group.members:
            extension = member.extension
            staff = directory.staff_for(domain, extension)
            available = (
                member.logged_in
                and staff is not None
                and staff.phone_on
                and bool(self.bindings((domain, extension)))
            )
            busy = extension == busy_now or self.busy(domain, extension)
            found.append(Candidate(extension, available, busy))
        return found

    def distributor(self, group: GroupEntry) -> CallDistributor:
        key = (group.domain, group.name)
        distributor = self._distributors.get(key)
        if distributor is None:
            distributor = self._distributors[key] = CallDistributor(
                group, self.memory, self.rng, functools.partial(self._waited, key)
            )
        elif distributor.group != group:
            distributor.reconfigure(group)
        return distributor

    def release(self, call_id: str, group: GroupEntry, now: float, *, busy_now: str | None = None) -> None:
        """``call_id`` no longer needs ``group``: the queue may move on."""
        if self._rings.pop(call_id, None) is None:
            return  # released already (answered or overflowed before it ended)
        distributor = self.distributor(group)
        self._dispatch(distributor.release(call_id, self.candidates(group, busy_now=busy_now), now))
        if not distributor.queue and not distributor.offered:
            del self._distributors[(group.domain, group.name)]

    def _current(self, key: tuple[str, str], distributor: CallDistributor) -> GroupEntry | None:
        group = self.directory().group(*key)
        if group is None:  # the group was removed while callers waited: they get its overflow
            return distributor.group
        if group != distributor.group:
            distributor.reconfigure(group)
        return group

    def _dispatch(self, commands: list[DistributorCommand]) -> None:
        for command in commands:
            ring = self._rings.get(command.call_key)
            if ring is not None:
                ring.pending.append(command)
                self._wake[ring.call.id] = ring.call


class GroupRing:
    """The ``RingStrategy`` of one call to a group or function."""

    def __init__(self, hunting: Hunting, call: Call, group: GroupEntry, acute: bool) -> None:
        self.hunting = hunting
        self.call = call
        self.group = group
        self.acute = acute
        self.distributor = hunting.distributor(group)
        self.hunt: Hunt | None = None
        self.pending: list[DistributorCommand] = []
        self.queued = False
        self.joined = inf
        self.announce_at = inf  # the next position announcement, while queued

    def next_deadline(self) -> float:
        if self.pending:
            return -inf  # commands are waiting: run them at once
        if self.hunt is not None:
            return self.hunt.next_deadline()
        if self.queued:
            return min(self.joined + self.group.max_wait, self.announce_at)
        return inf

    def ended(self, call: Call, now: float) -> None:
        if self.hunt is not None:
            self.hunt.abandon(now)
        self.hunting.release(call.id, self.group, now)

    def on_event(self, call: Call, event: CallEvent, now: float) -> list[Command]:
        match event:
            case Timer():
                if self.hunt is None and not self.queued and not self.pending:
                    caller = call.caller
                    own = caller.extension if caller.clinic.domain == self.group.domain else None
                    candidates = self.hunting.candidates(self.group)
                    self.hunting._dispatch(
                        self.distributor.arrive(call.id, self.acute, candidates, now, caller=own)
                    )
                elif self.queued and not self.pending and now >= self.joined + self.group.max_wait:
                    self.hunting._dispatch(self.distributor.on_timer(now))
                commands = self._take_pending(now)
                if self.hunt is not None:
                    commands += self._carry(call, self.hunt.on_timer(now), now)
                elif self.queued and now >= self.announce_at:
                    self.announce_at = now + self.group.announce_every
                    position = self.distributor.position(call.id)
                    if position is not None:
                        commands.append(Announce(position_prompts(position)))
                return commands
            case LegRinging(leg=leg, response=response):
                hunt = self.hunt
                ringing = self._carry(call, hunt.ringing(leg.extension, now), now) if hunt else []
                return [RingCaller(leg, response), *ringing]
            case LegAnswered(leg=leg, response=response):
                if self.hunt is None:
                    return [Cancel(leg, "not ringing")]
                return self._carry(call, self.hunt.answered(leg.extension, now), now, answer=(leg, event))
            case LegFailed(leg=leg, status=status):
                if self.hunt is None:
                    return []
                mine = [other for other in call.b_legs if other.extension == leg.extension]
                live = [other for other in mine if not other.done]
                if status in REJECT_STATUSES:
                    stops: list[Command] = [Cancel(other, "rejected") for other in live]
                    return stops + self._carry(call, self.hunt.failed(leg.extension, status, now), now)
                if live:
                    return []  # another phone of the same member still rings
                worst, _ = best_failure(other.status or 480 for other in mine)
                return self._carry(call, self.hunt.failed(leg.extension, worst, now), now)
            case _:
                return []

    def _take_pending(self, now: float) -> list[Command]:
        commands: list[Command] = []
        pending, self.pending = self.pending, []
        for command in pending:
            match command:
                case StartHunt(hunt=hunt, commands=first):
                    self.hunt = hunt
                    self.queued = False
                    self.announce_at = inf
                    commands += self._carry(self.call, list(first), now)
                case Wait():
                    if not self.queued:
                        self.queued = True
                        self.joined = now
                        every = self.group.announce_every
                        self.announce_at = now + min(FIRST_ANNOUNCEMENT, every) if every > 0 else inf
                    commands.append(Ringback(music=True))
                case Divert(overflow=overflow):
                    self.queued = False
                    self.announce_at = inf
                    commands += self._overflow(overflow, now)
        return commands

    def _carry(
        self,
        call: Call,
        commands: list[HuntCommand],
        now: float,
        answer: tuple[Leg, LegAnswered] | None = None,
    ) -> list[Command]:
        """The hunt's member commands as call-control commands on legs."""
        out: list[Command] = []
        queue = list(commands)
        while queue:
            command = queue.pop(0)
            match command:
                case RingMember(extension=extension):
                    contacts = tuple(self.hunting.bindings((self.group.domain, extension)))
                    if contacts:
                        out.append(Try(contacts))
                    elif self.hunt is not None:  # unregistered since the hunt began: no answer
                        queue.extend(self.hunt.failed(extension, 480, now))
                case StopMember(extension=extension, reason=reason):
                    out.extend(
                        Cancel(leg, reason.value)
                        for leg in call.b_legs
                        if leg.extension == extension and not leg.done
                    )
                case ConnectMember(extension=extension):
                    if answer is None:
                        continue
                    leg, event = answer
                    out.append(Connect(leg, event.response))
                    out.extend(
                        Cancel(other, "answered elsewhere")
                        for other in call.b_legs
                        if other is not leg and not other.done
                    )
                    self.hunting.release(call.id, self.group, now, busy_now=extension)
                case Overflow():
                    out.extend(self._overflow(command, now))
                case ReturnToTransferer():
                    # Hunts here are not made for transferred calls yet: treat it as everyone rejecting.
                    out.extend(self._overflow(Overflow(None, OverflowCause.ALL_REJECTED), now))
        return out

    def _overflow(self, overflow: Overflow, now: float) -> list[Command]:
        self.hunting.release(self.call.id, self.group, now)
        cause = f"{self.group.name}: {overflow.cause.value}"
        destination = overflow.destination
        if destination is None:
            if overflow.all_rejected:
                return [Fail(486, "Busy Here", cause)]
            return [Fail(480, "Temporarily Unavailable", cause)]
        if destination == "busy":
            return [Fail(486, "Busy Here", cause)]
        return [Route(destination, cause)]


__all__ = ["FIRST_ANNOUNCEMENT", "GroupRing", "Hunting", "position_prompts"]

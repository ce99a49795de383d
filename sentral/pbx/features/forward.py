"""Call forwarding: where a call to a member of staff's extension goes when they say so.

Theory of operation
-------------------
Each member of staff may have three forwards (``Forwards`` in the directory, set with `sentral
user set` or the forwarding codes): always, when busy, and when nobody answers within ``after``
seconds. Call control asks ``CallForwarding`` (its ``Forwarding``) whenever a call is routed to a
number, whether dialled, sent on by a group's overflow or by a forward before:

- ``forward``: a call to an extension with an unconditional forward goes on to its number at once,
  routed through the dial plan as if the caller had dialled it, the caller's identity unchanged.
  So does a call to an extension already in an answered call (``CallControl.busy``) with a busy
  forward, and a call to one whose phone cannot ring at all (logged off, not registered: 480) with
  a no-answer forward.
- ``ringing``: otherwise the phones ring as usual (``RingAll``), wrapped by ``ForwardingRing`` when
  there is a busy or a no-answer forward: when every phone has answered busy (486, or 600 busy
  everywhere) the call goes on to the busy forward, and after ``after`` seconds of ringing the
  phones are cancelled and it goes on to the no-answer forward. Both go through the core's
  ``Route``, which stops what rang.

Only a call to the person's own extension is forwarded: a group, a function or a role that rings
them as a member rings their phones, whatever their forwards say.

Never a loop. A forward is followed only to a number the call has not been routed to yet (the
extensions it was forwarded from, and the caller's own: a forward never brings a call back to its
caller), only while the call has routes left (``MAX_ROUTES``), and only to a number that still
leads somewhere; otherwise the forward is ignored and the extension rings itself. Each forward
followed is kept on the call (``Call.forwarded``: who it was for, which forward, where it went),
and the call's record carries them.
"""

from __future__ import annotations

from math import inf
from typing import assert_never

from sentral.config.directory import Directory, ForwardKind, StaffEntry
from sentral.pbx.call import (
    MAX_ROUTES,
    Call,
    CallControl,
    CallEvent,
    Command,
    LegAnswered,
    LegFailed,
    LegRinging,
    RingAll,
    RingStrategy,
    Route,
    Timer,
)
from sentral.routing.dialplan import UNAVAILABLE, Decision, Reject, Ring

# A phone answering one of these is busy; every phone busy is what a busy forward is for.
BUSY_STATUSES = (486, 600)


class CallForwarding:
    """The call core's ``Forwarding``: staff's forwards, followed without loops."""

    def __init__(self, core: CallControl) -> None:
        self.core = core

    def forward(self, call: Call, number: str, decision: Decision, now: float) -> str | None:
        staff = self._staff(call, number)
        if staff is None or not staff.forwards:
            return None
        forwards = staff.forwards
        kind: ForwardKind | None = None
        if (isinstance(decision, Ring) and decision.direct) or decision == UNAVAILABLE:
            if forwards.always is not None:
                kind = ForwardKind.ALWAYS
            elif forwards.busy is not None and self.core.busy.get((staff.domain, staff.extension), 0) > 0:
                kind = ForwardKind.BUSY
            elif forwards.no_answer is not None and isinstance(decision, Reject):
                kind = ForwardKind.NO_ANSWER
        return self.onward(call, staff, kind) if kind is not None else None

    def ringing(self, call: Call, number: str, strategy: RingAll, now: float) -> RingStrategy:
        staff = self._staff(call, number)
        if staff is None or not strategy.direct:
            return strategy
        busy = self.onward(call, staff, ForwardKind.BUSY, follow=False)
        no_answer = self.onward(call, staff, ForwardKind.NO_ANSWER, follow=False)
        if busy is None and no_answer is None:
            return strategy
        return ForwardingRing(self, staff, strategy, busy, no_answer, now)

    def onward(self, call: Call, staff: StaffEntry, kind: ForwardKind, *, follow: bool = True) -> str | None:
        """The number ``staff``'s forward of ``kind`` takes ``call`` to, if it may: one the call
        has not been to, that leads somewhere, with routes left. With ``follow`` it is recorded
        on the call as followed."""
        target = staff.forwards.target(kind)
        if target is None or call.routes >= MAX_ROUTES:
            return None
        been = {call.caller.extension, call.callee, *(hop[0] for hop in call.forwarded), staff.extension}
        if target in been or not _leads_somewhere(self.core.directory(), staff.domain, target):
            return None
        if follow:
            call.forwarded = (*call.forwarded, (staff.extension, kind.value, target))
        return target

    def _staff(self, call: Call, number: str) -> StaffEntry | None:
        return self.core.directory().staff_for(call.caller.clinic.domain, number)


def _leads_somewhere(directory: Directory, domain: str, number: str) -> bool:
    """Whether ``number`` is still a number of the clinic a call can be forwarded to."""
    return directory.staff_for(domain, number) is not None or directory.number(domain, number) is not None


class ForwardingRing:
    """Ring one person's phones (``ring``), going on to ``busy`` when every phone is busy and to
    ``no_answer`` when nobody has answered within their forward's time."""

    def __init__(
        self,
        forwarding: CallForwarding,
        staff: StaffEntry,
        ring: RingAll,
        busy: str | None,
        no_answer: str | None,
        now: float,
    ) -> None:
        self.forwarding = forwarding
        self.staff = staff
        self.ring = ring
        self.busy = busy
        self.no_answer = no_answer
        self.forward_at = inf
        if no_answer is not None:
            # The forward takes over from the core's own no-answer timeout, however long it is.
            self.forward_at = now + staff.forwards.after
            ring.deadline = inf

    def next_deadline(self) -> float:
        return min(self.forward_at, self.ring.next_deadline())

    def ended(self, call: Call, now: float) -> None:
        self.ring.ended(call, now)

    def on_event(self, call: Call, event: CallEvent, now: float) -> list[Command]:
        match event:
            case LegRinging():
                return self.ring.on_event(call, event, now)
            case LegAnswered():
                self.forward_at = inf
                return self.ring.on_event(call, event, now)
            case LegFailed(status=status):
                if self.busy is None or status not in BUSY_STATUSES:
                    return self.ring.on_event(call, event, now)
                if any(not leg.done for leg in call.b_legs):
                    return []  # busy here; another phone of theirs may still answer
                if any(leg.status not in BUSY_STATUSES for leg in call.b_legs if leg.status is not None):
                    return self.ring.on_event(call, event, now)
                return self._onward(call, ForwardKind.BUSY, event, now)
            case Timer():
                if now >= self.forward_at:
                    self.forward_at = inf
                    return self._onward(call, ForwardKind.NO_ANSWER, event, now)
                return self.ring.on_event(call, event, now) if now >= self.ring.next_deadline() else []
            case _:
                assert_never(event)

    def _onward(self, call: Call, kind: ForwardKind, event: CallEvent, now: float) -> list[Command]:
        target = self.forwarding.onward(call, self.staff, kind)
        if target is None:
            # The forward no longer leads anywhere new (the directory changed while the phones
            # rang): the call ends as it would have without it.
            return self.ring.on_event(call, event, now)
        return [Route(target, f"forwarded on {kind.value}")]


__all__ = ["BUSY_STATUSES", "CallForwarding", "ForwardingRing"]

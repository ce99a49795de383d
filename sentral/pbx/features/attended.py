"""Attended transfer (REFER with Replaces, RFC 3891 and RFC 5589) and taking a call over (INVITE
with Replaces naming a confirmed dialog).

Theory of operation
-------------------
Attended. B talks to A (call 1), holds A, calls C (call 2), talks, and transfers: B's phone sends a
REFER whose ``Refer-To`` is ``<sip:...?Replaces=...>``, the Replaces naming B's other dialog with
Sentral. Phones differ in which of the two calls the REFER comes on, and some swap the tags, so
the named dialog is looked up by Call-ID with its tags either way round; it must be B's own (a leg
of the same extension and clinic in another call). Sentral then does what the phones would do
end to end, without bothering A or C: call 1, the older call, keeps the record; C's leg moves into
it with its dialog and its relay ports (``CallControl.adopt``: C's phone notices nothing) and is
bridged to A (``connect_held``); A, whom B had put on hold, is offered the relay again
(``CallControl.resume``) so that it sends and hears once more, and its music stops. B is told the
transfer worked (202, then a NOTIFY with "200 OK"); B's leg of call 1 gets a BYE after
``TRANSFER_HANGUP`` unless B hangs up first (a phone hangs up itself once told), and B's leg of
call 2 at once, as that call ends with its own record, cause "attended transfer". Call 1's record
gains C's leg and a ``TransferReport`` of kind "attended".

Semi-attended. B transfers while C still rings (call 2 is not answered; B is its caller): call 2
ends, and call 1 goes on as the blind transfer of ``sentral.pbx.features.transfer`` would to the
number B dialled, with its recall rule: A hears music, C's phone rings again, now for A (showing
A), and A and C talk when C answers; when C rejects or does not answer, B's phones ring again. Its
``TransferReport`` is of kind "semi-attended".

Direct media. Phones are joined at the relay, so a phone of A's or C's whose media passes it by
(direct media) is brought there first (``CallControl.to_relay``, a re-INVITE): the REFER is
answered 202 with a NOTIFY "100 Trying" meanwhile, the transfer is made when the phone has moved
(if the calls are still as they were), and the final NOTIFY says "200 OK", or "501" when the
phone did not take the relay's offer (the calls then go on as they were). Another REFER for the
same calls meanwhile gets 491. Without a relay at all (``serve --direct-media``: an SDP exchange
with each phone would be needed, which is not done) the transfer is refused with 501.

Refusals. A Replaces naming no dialog of Sentral's is answered as the target would answer it: 202,
then a NOTIFY with "481 Call/Transaction Does Not Exist", and the calls go on. Naming the dialog of
the call the REFER came in (transferring a call to itself), or a dialog that is not B's, is 403.

Taking over. An INVITE with Replaces naming an answered leg X of a live call (offered by the core
through the ``replaces`` hook; early dialogs are call pickup's) from a phone D of a member of staff
of the same clinic: D is answered from the relay in the codec of X's peer and bridged to it, X
gets a BYE, and the record shows X "replaced" and D's leg answered. A phone that is not staff's
gets 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from sentral.pbx.call import (
    TRANSFER_HANGUP,
    Call,
    CallControl,
    CallState,
    FeatureDecision,
    Leg,
    LegState,
    TransferReport,
)
from sentral.pbx.features.transfer import Transfer
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, make_response
from sentral.pbx.sip.replaces import Replaces, replaces_of_uri
from sentral.pbx.sip.transaction import ServerTransaction
from sentral.pbx.sip.uri import Uri
from sentral.routing.dialplan import Decision, Query, Ring, RingGroup

# What the record says of a call ended because its parties were handed to another call.
CAUSE = "attended transfer"


@dataclass(eq=False, slots=True)
class _Plan:
    """A transfer as Sentral carries it out: Bob's leg in the call that is kept (the older, or the
    answered one) leaves it, and the transferee there is joined with the target of the other call
    (or, semi-attended, ``target`` None, the number Bob dialled is rung again for it: ``ring``)."""

    kept: Call
    second: Call
    by_kept: Leg
    by_second: Leg
    transferee: Leg
    target: Leg | None
    ring: Ring | RingGroup | None = None  # semi-attended: what rings the target again


@dataclass(eq=False, slots=True)
class _Relaying:
    """A transfer waiting for phones with direct media to come to the relay."""

    plan: _Plan
    moving: list[tuple[Call, Leg]]  # the phones still to move, in order
    leg: Leg  # the REFER's
    tx: ServerTransaction
    request: Request
    accepted: bool = False  # the REFER has been answered 202
    steps: int = 0  # how many phones have answered so far


def _stands(plan: _Plan) -> bool:
    """True while the calls of ``plan`` are as they were when it was made."""
    kept, second = plan.kept, plan.second
    if kept.over or second.over or kept.peer(plan.by_kept) is not plan.transferee:
        return False
    if plan.target is None:
        return second.state is not CallState.ANSWERED
    return second.peer(plan.by_second) is plan.target


class AttendedTransfer:
    """The attended transfer feature: a ``CallFeature``; a semi-attended transfer goes on as a blind
    one of ``blind``'s."""

    def __init__(self, core: CallControl, blind: Transfer) -> None:
        self.core = core
        self.blind = blind
        self._relaying: set[str] = set()  # ids of calls whose transfer waits for a phone to move

    # -- the core's hooks

    def dialled(self, call: Call, decision: FeatureDecision, now: float) -> bool:
        return False

    def keyed(self, call: Call, leg: Leg, keys: str, now: float) -> bool:
        return False

    def carried_out(self, call: Call, outcome: str, now: float) -> bool:
        return False

    def refer(
        self,
        call: Call,
        leg: Leg,
        tx: ServerTransaction,
        request: Request,
        target: Uri,
        decision: Decision,
        now: float,
    ) -> bool:
        """A REFER whose Refer-To carries Replaces: an attended (or semi-attended) transfer."""
        respond = self.core.port.respond
        try:
            replaces = replaces_of_uri(target)
        except SipError as exc:
            respond(tx, make_response(request, exc.status, exc.reason))
            return True
        if replaces is None:
            return False  # a blind transfer: not this feature's
        named = self._named(replaces)
        if named is None:
            # What the target, Sentral, would answer the INVITE the REFER asks for.
            self.core.port.respond(tx, make_response(request, 202))
            self.core.notify_refer(leg, 481)
            return True
        other, mine = named
        if call.id in self._relaying or other.id in self._relaying:
            respond(tx, make_response(request, 491, "A Transfer Of This Call Is Under Way"))
            return True
        if other is call:
            respond(tx, make_response(request, 403, "Cannot Transfer A Call To Itself"))
            return True
        if mine.extension != leg.extension or other.caller.clinic.domain != call.caller.clinic.domain:
            respond(tx, make_response(request, 403, "Not Your Call"))
            return True
        try:
            self._transfer(call, leg, other, mine, tx, request, now)
        except SipError as exc:
            respond(tx, make_response(request, exc.status, exc.reason, headers=exc.headers))
        return True

    def replaces(self, call: Call, old: Call, leg: Leg, now: float) -> bool:
        """A phone takes the place of ``leg``, answered in ``old``."""
        core = self.core
        peer = old.peer(leg)
        if (
            leg.state is not LegState.ANSWERED
            or old.state is not CallState.ANSWERED
            or old.holder is not None
        ):
            return False  # an early dialog is call pickup's; a held call has nobody to talk to
        if peer is None:
            return False
        domain = call.caller.clinic.domain
        if core.directory().staff_for(domain, call.caller.extension) is None:
            core.fail(call, 403, "Only Staff May Take Over A Call", now)
            return True
        body = core.joining_media(call, old, peer, _free_id(old, "r"), now)
        if body is None:
            return True
        _keep_as_a(old, peer)
        old.winner = None
        leg.outcome = "replaced"
        core.step_out(old, leg.extension)
        core.cancel_leg(old, leg, now)  # answered and no longer the call's: BYE
        core.take_over(call, old, body, now)
        if leg.holding:
            core.resume(old, peer, now)  # the phone that held it has gone
        core.changed(old, now)
        return True

    # -- attended and semi-attended

    def _named(self, replaces: Replaces) -> tuple[Call, Leg] | None:
        """The live call and leg of the dialog ``replaces`` names, its tags taken either way round
        (phones mix up which is whose)."""
        for ours, theirs in ((replaces.to_tag, replaces.from_tag), (replaces.from_tag, replaces.to_tag)):
            entry = self.core.leg_of(replaces.call_id, ours)
            if entry is None:
                continue
            call, leg = entry
            remote = leg.dialog.remote_tag if leg.dialog is not None else None
            if not call.over and (remote is None or remote == theirs):
                return entry
        return None

    def _plan(self, call: Call, leg: Leg, other: Call, mine: Leg) -> _Plan:
        """What ``leg``'s phone, in ``call``, transferring its party to its party in ``other``
        (where its leg is ``mine``), comes to; SipError(403) when there is nothing to transfer."""
        answered = call.state is CallState.ANSWERED
        if answered and other.state is CallState.ANSWERED:
            kept, second = (call, other) if call.started <= other.started else (other, call)
        elif answered:
            kept, second = call, other
        else:
            raise SipError(403, "Nothing To Transfer")
        by_kept, by_second = (leg, mine) if kept is call else (mine, leg)
        transferee = kept.peer(by_kept)
        if transferee is None or kept.holder is not None or second.holder is not None:
            raise SipError(403, "Nothing To Transfer")
        target = second.peer(by_second) if second.state is CallState.ANSWERED else None
        if target is None and (second.state is CallState.ANSWERED or by_second is not second.a):
            raise SipError(403, "Nothing To Transfer")  # nobody answered Bob, or Bob is not calling
        return _Plan(kept, second, by_kept, by_second, transferee, target)

    def _transfer(
        self,
        call: Call,
        leg: Leg,
        other: Call,
        mine: Leg,
        tx: ServerTransaction,
        request: Request,
        now: float,
    ) -> None:
        """Carry out the transfer ``leg``'s phone asked for; SipError for one that cannot be done,
        and then nothing changed."""
        plan = self._plan(call, leg, other, mine)
        media = self.core.media
        wanted = [(plan.kept, plan.transferee)]
        if plan.target is not None:
            wanted.append((plan.second, plan.target))
        moving = [
            (moved_call, moved) for moved_call, moved in wanted if not media.anchored(moved_call, moved)
        ]
        if moving:
            # Phones with direct media come to the relay first, one after the other.
            for busy in (plan.kept, plan.second):
                self._relaying.add(busy.id)
            self._to_relay(_Relaying(plan, moving, leg, tx, request), now)
            return
        self._join(plan, now)  # its SipError comes before anything is answered
        self.core.accept_refer(leg, tx, request)
        self._wrap_up(plan, now)

    def _to_relay(self, job: _Relaying, now: float) -> None:
        """Bring the next phone of ``job`` to the relay, or, when all are there, transfer."""
        if not job.moving:
            self._relayed(job, now)
            return
        call, leg = job.moving.pop(0)
        steps = job.steps
        self.core.to_relay(call, leg, now, lambda moved, at: self._moved(job, moved, at))
        if job.steps == steps and not job.accepted:
            # The phone has been offered the relay and answers later: Bob's phone is told meanwhile.
            job.accepted = True
            self.core.port.respond(job.tx, make_response(job.request, 202))
            self.core.notify_refer(job.leg, 100)

    def _moved(self, job: _Relaying, moved: bool, now: float) -> None:
        job.steps += 1
        if moved:
            self._to_relay(job, now)
        else:
            self._give_up(job, SipError(501, "Attended Transfer Needs Media Through Sentral"))

    def _relayed(self, job: _Relaying, now: float) -> None:
        """Every phone of ``job`` sends to the relay now: the transfer, if it still stands."""
        plan = job.plan
        if not _stands(plan):
            self._give_up(job, SipError(481, "Call/Transaction Does Not Exist"))
            return
        try:
            self._join(plan, now)
        except SipError as exc:
            self._give_up(job, exc)
            return
        self._relaying.difference_update((plan.kept.id, plan.second.id))
        if job.accepted:
            self.core.notify_refer(job.leg, 200)
        else:
            self.core.accept_refer(job.leg, job.tx, job.request)
        self._wrap_up(plan, now)

    def _give_up(self, job: _Relaying, error: SipError) -> None:
        """The transfer cannot be done after all: Bob's phone is told why, and the calls go on."""
        self._relaying.difference_update((job.plan.kept.id, job.plan.second.id))
        if job.accepted:
            self.core.notify_refer(job.leg, error.status)
        else:
            self.core.port.respond(
                job.tx, make_response(job.request, error.status, error.reason, headers=error.headers)
            )

    def _join(self, plan: _Plan, now: float) -> None:
        """Join the transferee with the target: move the target's leg into the kept call, or
        (semi-attended) see that the number Bob dialled can be rung for it. SipError when it
        cannot be done, and then nothing changed."""
        if plan.target is not None:
            self._attended(plan, plan.target, now)
        else:
            plan.ring = self._ringable(plan)

    def _wrap_up(self, plan: _Plan, now: float) -> None:
        """Bob's legs go: the kept call's when his phone hangs up (or after ``TRANSFER_HANGUP``),
        the other with its call, which ends now (a target still ringing in it is cancelled, and
        rung again for the transferee as a blind transfer's target)."""
        core = self.core
        plan.by_second.outcome = "transferred"
        core.hang_up(plan.second, CAUSE, now)
        if plan.ring is not None:
            self.blind.transfer(
                plan.kept, plan.by_kept, plan.transferee, plan.second.callee, plan.ring, now, "semi-attended"
            )
            self._release(plan.kept, plan.by_kept)
            if plan.by_kept.holding:
                core.resume(plan.kept, plan.transferee, now)
        core.hang_up_leg_at(plan.kept, plan.by_kept, now + TRANSFER_HANGUP)
        core.changed(plan.kept, now)
        core.arm(plan.kept)
        core.members_changed(now)

    def _ringable(self, plan: _Plan) -> Ring | RingGroup:
        """What the dial plan makes now of the number Bob's ringing call dialled; SipError when
        it rings nobody any more."""
        core, second = self.core, plan.second
        query = Query(
            second.caller.clinic, second.callee, core.directory(), core.bindings, plan.by_kept.extension
        )
        decision = core.dialplan.route(query)
        if not isinstance(decision, Ring | RingGroup):
            raise SipError(480, "Temporarily Unavailable")
        return decision

    def _attended(self, plan: _Plan, target: Leg, now: float) -> None:
        core = self.core
        kept, by_kept, transferee = plan.kept, plan.by_kept, plan.transferee
        core.adopt(kept, target, plan.second, now)  # the SipError of media that cannot move comes first
        self._leave(kept, by_kept, transferee)
        core.connect_held(kept, target, now)
        kept.transfers.append(
            TransferReport(now, by_kept.extension, "attended", target.extension, "answered")
        )
        if by_kept.holding:
            core.resume(kept, transferee, now)
        if plan.by_second.holding:
            core.resume(kept, target, now)

    def _leave(self, kept: Call, by_kept: Leg, transferee: Leg) -> None:
        """The transferer's leg is out of ``kept``, whose A leg is now the transferee's."""
        _keep_as_a(kept, transferee)
        kept.winner = None
        by_kept.outcome = "transferred"
        self.core.step_out(kept, by_kept.extension)
        self._release(kept, by_kept)

    def _release(self, kept: Call, by_kept: Leg) -> None:
        # Bob's phone hears nothing more, and what it sends must not reach the transferee.
        self.core.media.release_leg(kept, by_kept)


def _keep_as_a(call: Call, leg: Leg) -> None:
    """Make ``leg``, a leg of ``call``, its A leg: what stays of the call is on its side."""
    if leg is not call.a:
        call.b_legs[call.b_legs.index(leg)] = call.a
        call.a = leg


def _free_id(call: Call, prefix: str) -> str:
    """A leg id ``call`` does not use yet."""
    taken = {leg.id for leg in call.legs}
    number = len(call.legs)
    while f"{prefix}{number}" in taken:
        number += 1
    return f"{prefix}{number}"


__all__ = ["CAUSE", "AttendedTransfer"]

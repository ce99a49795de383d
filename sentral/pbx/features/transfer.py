"""Blind transfer (REFER, RFC 3515; Referred-By, RFC 3892) and the clinic's recall rule.

Theory of operation
-------------------
A phone in an answered call sends a REFER whose Refer-To names a number of the clinic, without
Replaces (a Refer-To with Replaces asks for an attended transfer, which is not this module's).
Sentral carries the transfer out itself, as a B2BUA: the other phone never sees the REFER.

Taking it. The transferring phone gets 202 and a NOTIFY "100 Trying" (the REFER's implicit
subscription, active), and leaves the call at once: its line ends in presence, its leg's outcome
is "transferred", and it gets a BYE after ``TRANSFER_HANGUP`` unless it hangs up first, as a park
key's transfer. The other phone, the transferee, stays alone in the call as its A leg (swapped in
when it was the answering phone), hears music from the relay, and ``Transfer`` holds the call
(``CallHolder``). The target number is routed as a direct call to it would be: an extension rings
every phone of it (``RingAll``), a role the phones of its holders, a group or function by its own
strategy and queue (``GroupCalls.ring``). The target's forwards are followed as for a direct
call (always, busy, and no answer for a phone that cannot ring at all); a forward on no answer is
not, since the recall rule decides what a transfer nobody answers comes to. The phones rung show
the transferee (``ring_as``), not the transferring phone, and the INVITEs carry ``Referred-By: <sip:TRANSFERER@clinic>``. As soon as
the target rings, the transferring phone is told the transfer succeeded (NOTIFY "200 OK", which
ends the subscription), as Asterisk does: what happens if nobody answers is the recall rule's.

Answered. The phone that answers is connected to the transferee (``connect_held``); the call's
record keeps every leg and a ``TransferReport`` of the transfer whose outcome is "answered".

The recall rule. When the target rejects the call (486, 600, 603), fails, or nobody answers within
``CallSettings.transfer_recall`` seconds, the transferring phone rings again, for its own no-answer
time, shown as the transferee with "Returned: " before the name (in the clinic's prompt language:
"Tilbake: " in Norwegian). A group or function is done when its strategy is (every member rejected
or its ring time ran out: the strategy's ``Fail``, or its ``Route`` to the group's overflow, whose
number is remembered rather than followed). Answering the recall connects the two again (outcome
"returned"). When the transferring phone does not answer either, the target's overflow number, if
it had one, is rung as the last try (overflows of overflows are followed as the core's ``Route``
does, bounded by ``MAX_ROUTES``); with none, or when that fails too, the transferee hears "the
number is not available" and is hung up on (outcome "failed"). A recalled call never recalls again.

Refused. A REFER from a phone of nobody on the staff is 403, as is one made while the call is not
answered or is held by a feature (parked), and one that would transfer the call to the transferring
phone's extension or the transferee's; one while this call is being transferred already is 491.
A target number the dial plan refuses (404, 480 for a phone logged off or unregistered) gets 202
and a NOTIFY with that status: the call stays as it was, and the phone can resume it. Without the
relay (``serve --direct-media``) nothing can play music to the transferee, and the transfer goes
on in silence; a transferee whose phone has direct media on is moved to the relay first
(``CallControl.to_relay``, a re-INVITE), and hears music once it has answered. A transferee the
transferring phone held before its REFER (as most desk phones do) is offered the relay again
(``CallControl.resume``), so that it sends its voice again for the target to hear.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from enum import Enum
from math import inf
from typing import assert_never

from sentral.config.directory import Directory
from sentral.pbx.call import (
    MAX_ROUTES,
    TRANSFER_HANGUP,
    Announce,
    Call,
    CallControl,
    CallState,
    Cancel,
    Command,
    Connect,
    Fail,
    FeatureDecision,
    HangUp,
    Leg,
    ReOffer,
    RingAll,
    Ringback,
    RingCaller,
    Route,
    Timer,
    TransferReport,
    Try,
    after_prompt,
)
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, Response, make_response
from sentral.pbx.sip.transaction import ServerTransaction
from sentral.pbx.sip.uri import Uri, unescape
from sentral.routing.dialplan import Decision, Query, Reject, Ring, RingGroup, dialled_number
from sentral.routing.outside import Outside, Refused
from sentral.routing.park import Park

# What the phone rung by a recall shows before the transferee's name, by prompt language.
RETURNED = {"nb": "Tilbake", "en": "Returned"}
# What the transferee hears before Sentral hangs up when nobody could take the call.
NOBODY_PROMPT = "number_unavailable"


class Stage(Enum):
    """Where a blind transfer stands."""

    TARGET = "target"  # the number transferred to rings (or its group hunts)
    RECALL = "recall"  # the transferring phone rings again
    OVERFLOW = "overflow"  # the target's overflow rings: the last try
    ENDING = "ending"  # the transferee hears that nobody could take the call, then is hung up


@dataclass(eq=False, slots=True)
class Transferring:
    """One blind transfer under way: what ``Transfer`` keeps for a call it holds."""

    by: str  # the transferring extension
    target: str  # the number transferred to
    name: str  # the transferee, as the phones rung for the call show them
    user: str  # the transferee's extension
    entry: int  # the index of its TransferReport in ``Call.transfers``
    stage: Stage = Stage.TARGET
    first: int = 0  # the first B leg rung in this stage: those before are no part of it
    overflow: str | None = None  # the target's overflow number, from its strategy's Route
    music: bool = False  # whether music (or the ringing tone) plays to the transferee
    ringback: bool = False  # the transferee hears the ringing tone rather than music


def _attended(uri: Uri) -> bool:
    """True when the Refer-To asks for an attended transfer (it carries Replaces, RFC 3891)."""
    return any(unescape(name).lower() == "replaces" for name, _ in uri.headers)


class Transfer:
    """The blind transfer feature: a ``CallFeature``, and the ``CallHolder`` of transferred calls
    while their target rings."""

    def __init__(self, core: CallControl) -> None:
        self.core = core
        self._calls: dict[str, Transferring] = {}  # held call's id -> its transfer

    # -- the core's hooks

    def dialled(self, call: Call, decision: FeatureDecision, now: float) -> bool:
        return False

    def keyed(self, call: Call, leg: Leg, keys: str, now: float) -> bool:
        return False

    def carried_out(self, call: Call, outcome: str, now: float) -> bool:
        return False

    def replaces(self, call: Call, old: Call, leg: Leg, now: float) -> bool:
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
        """A blind transfer from ``leg``'s phone to the number the dial plan made ``decision`` of."""
        if _attended(target) or isinstance(decision, Park):
            return False  # an attended transfer, or one to the park number: other features'
        core = self.core

        def refuse(status: int, reason: str) -> bool:
            core.port.respond(tx, make_response(request, status, reason))
            return True

        domain = call.caller.clinic.domain
        directory = core.directory()
        if directory.staff_for(domain, leg.extension) is None:
            return refuse(403, "Only Staff Phones Transfer Calls")
        if call.id in self._calls:
            return refuse(491, "Transfer Under Way")
        transferee = call.peer(leg)
        if call.state is not CallState.ANSWERED or call.holder is not None or transferee is None:
            return refuse(403, "No Answered Call To Transfer")
        number = target.user_unescaped or dialled_number(str(target))
        own = (leg.extension, transferee.extension)
        if number in own or (isinstance(decision, Ring) and decision.extension in own):
            return refuse(403, "Cannot Transfer A Call To Itself")
        _, decision = self._follow(call, number, decision, transferee.extension, now)
        match decision:
            case Reject(status=status, reason=reason) | Refused(status=status, reason=reason):
                # Nobody to ring, or a number the transferring phone may not call out to: the phone
                # hears why, and its call goes on as it was.
                core.port.respond(tx, make_response(request, 202))
                core.notify_refer(leg, status, reason)
                call.transfers.append(TransferReport(now, leg.extension, "blind", number, "failed"))
                return True
            case Ring() | RingGroup() | Outside():
                pass
            case _:
                return refuse(403, "Not A Number To Transfer To")  # a feature code or a park slot
        core.port.respond(tx, make_response(request, 202))
        core.notify_refer(leg, 100)
        self._take(call, leg, transferee, number, directory, now)
        self._ring(call, self._calls[call.id], decision, now)
        # Told as soon as the target rings: if nobody answers, the recall rule brings the call back.
        core.notify_refer(leg, 200)
        core.changed(call, now)
        core.arm(call)
        core.members_changed(now)
        return True

    # -- taking the call

    def transfer(
        self,
        call: Call,
        leg: Leg,
        transferee: Leg,
        number: str,
        decision: Ring | RingGroup | Outside,
        now: float,
        kind: str,
        *,
        ringback: bool = False,
    ) -> None:
        """Transfer ``call``, answered, from ``leg``'s phone to ``number`` (``decision``: what the
        dial plan made of it) as a blind transfer, the REFER being answered by whoever asks: an
        attended transfer made while its target still rang ("semi-attended", ``kind``) goes on this
        way, forwards and recall rule and all; so does a call Sentral placed (click-to-call) once
        its member of staff answered, who hears the ringing tone (``ringback``) rather than music."""
        _, followed = self._follow(call, number, decision, transferee.extension, now)
        self._take(call, leg, transferee, number, self.core.directory(), now, kind, ringback)
        self._ring(call, self._calls[call.id], followed, now)
        self.core.changed(call, now)
        self.core.arm(call)
        self.core.members_changed(now)

    def _take(
        self,
        call: Call,
        leg: Leg,
        transferee: Leg,
        number: str,
        directory: Directory,
        now: float,
        kind: str = "blind",
        ringback: bool = False,
    ) -> None:
        """``leg`` transfers ``call`` to ``number``: it steps out, the transferee waits alone."""
        core = self.core
        if transferee is not call.a:
            # The transferee's leg becomes the A leg: what stays of the call is on its side.
            call.b_legs[call.b_legs.index(transferee)] = call.a
            call.a = transferee
        domain = call.caller.clinic.domain
        name = ""
        if transferee.extension == call.caller.extension:
            name = call.caller.name
        else:
            staff = directory.staff_for(domain, transferee.extension)
            name = staff.name if staff is not None else ""
        if call.leaving is not None and call.leaving is not leg:
            core.cancel_leg(call, call.leaving, now)  # an earlier transferring phone, still up: it goes now
        # A call Sentral placed for a member of staff (click-to-call) is handed on by nobody's
        # phone: the record names the member of staff, and the INVITEs no Referred-By.
        call.transfers.append(TransferReport(now, leg.extension or transferee.extension, kind, number))
        state = Transferring(
            leg.extension, number, name or transferee.extension, transferee.extension, len(call.transfers) - 1
        )
        state.ringback = ringback
        self._calls[call.id] = state
        call.winner = None
        call.holder = self
        call.referred_by = f"sip:{leg.extension}@{domain}" if leg.extension else ""
        call.listed = (state.user, number)
        leg.outcome = "transferred"
        core.step_out(call, leg.extension)
        # A transferring phone hangs up itself once told the transfer worked; if not, we do.
        core.hang_up_leg_at(call, leg, now + TRANSFER_HANGUP)
        if core.media.anchored(call, call.a):
            state.music = self._waiting(call, state)
            if leg.holding:
                # Most desk phones hold the other side before a blind transfer, and a held phone
                # sends nothing: it is offered the relay again, so the target will hear it.
                core.resume(call, call.a, now)
        else:
            # A phone with direct media: it hears nothing, and its media cannot reach the target's
            # phone, until it is moved to the relay (a re-INVITE), which the target's ringing hides.
            core.to_relay(call, call.a, now, functools.partial(self._moved, call.id))

    def _moved(self, call_id: str, moved: bool, now: float) -> None:
        """The transferee's phone was moved to the relay (or refused): music while it waits."""
        call = self.core.calls.get(call_id)
        state = self._calls.get(call_id)
        if moved and call is not None and state is not None and call.holder is self and not state.music:
            state.music = self._waiting(call, state)

    def _waiting(self, call: Call, state: Transferring) -> bool:
        """What the transferee hears while the target rings: music, or the ringing tone."""
        media = self.core.media
        return media.ringback(call, call.a) if state.ringback else media.music(call, call.a, True)

    def _ring(self, call: Call, state: Transferring, decision: Decision, now: float) -> None:
        """Ring what the dial plan decided for the target (or its overflow) as a direct call would."""
        core = self.core
        state.first = len(call.b_legs)
        match decision:
            case Ring(contacts=contacts, direct=direct):
                settings = core.settings
                wait = settings.transfer_recall if state.stage is Stage.TARGET else settings.no_answer
                call.strategy = RingAll(now + wait, direct=direct, first=state.first)
                self.command(call, Try(contacts), now)
            case RingGroup(group=group, acute=acute) if core.groups is not None:
                call.strategy = core.groups.ring(call, group, call.acute or acute, now)
                core.event(call, Timer(), now)
            case Reject(status=status, reason=reason):
                self.command(call, Fail(status, reason), now)
            case Outside():
                # Out on a trunk: the outside-lines feature hunts the trunks for the call.
                if not any(feature.dialled(call, decision, now) for feature in core.features):
                    self.command(call, Fail(503, "No Outside Line"), now)
            case _:
                self.command(call, Fail(404, "Not Found"), now)
        core.tell_lines(call, now)
        core.arm(call)

    # -- the CallHolder of transferred calls

    def ring_as(self, call: Call, leg: Leg) -> tuple[str, str]:
        # The phones rung show the transferee; a recall says it is one.
        state = self._calls.get(call.id)
        if state is None:
            return call.caller.name or call.caller.extension, call.caller.extension
        if state.stage is Stage.RECALL:
            returned = RETURNED.get(self.core.settings.language, RETURNED["en"])
            return f"{returned}: {state.name}", state.user
        return state.name, state.user

    def on_timer(self, call: Call, now: float) -> None:
        if call.strategy.next_deadline() <= now:
            self.core.event(call, Timer(), now)  # the target, or the recall, was not answered in time
        state = self._calls.get(call.id)
        if state is not None and state.stage is Stage.ENDING and call.recall_at <= now:
            self.core.hang_up(call, "transfer not answered", now)

    def ended(self, call: Call, now: float) -> None:
        state = self._calls.pop(call.id, None)
        call.referred_by = ""
        if state is not None:
            self._outcome(call, state, "failed")

    def command(self, call: Call, command: Command, now: float) -> None:
        """Carry out a command of the strategy ringing the target, the transferer or the overflow."""
        core = self.core
        state = self._calls.get(call.id)
        if state is None:
            return
        match command:
            case Try(targets=targets):
                rung = 0
                for row in targets:
                    try:
                        core.ring(call, row, now)
                        rung += 1
                    except SipError:
                        continue
                if not rung and all(leg.done for leg in call.b_legs[state.first :]):
                    self.command(call, Fail(480, "No contact"), now)
            case Connect(leg=leg, response=response):
                self._answered(call, state, leg, response, now)
            case Cancel(leg=leg):
                if leg in call.b_legs[state.first :]:
                    core.cancel_leg(call, leg, now)  # never the transferring phone's own leg
            case Fail():
                self._unanswered(call, state, None, now)
            case Route(number=number):
                self._unanswered(call, state, number, now)
            case HangUp(cause=cause):
                core.hang_up(call, cause, now)
            case ReOffer(source=source, tx=tx, request=request):
                core.relay(call, source, tx, request, now)
            case Announce(names=names):
                if state.music and not state.ringback:
                    core.media.announce(call, call.a, names)  # the transferee's place in a queue
            case RingCaller() | Ringback():
                pass  # the transferee hears music (or the ringing tone) meanwhile
            case _:
                assert_never(command)

    # -- how it ends

    def _answered(self, call: Call, state: Transferring, leg: Leg, response: Response, now: float) -> None:
        """``leg`` answered (the target, its overflow, or the transferring phone's recall): connect
        it to the transferee."""
        core = self.core
        core.take_answer(call, leg, response)
        for other in call.b_legs[state.first :]:
            if other is not leg and not other.done:
                # Stopped here: the strategy's own Cancels after its Connect are moot once it is replaced.
                core.cancel_leg(call, other, now)
        self._let_go(call, state, "returned" if state.stage is Stage.RECALL else "answered")
        call.strategy.ended(call, now)
        call.strategy = RingAll()
        call.listed = (state.user, leg.extension)
        core.connect_held(call, leg, now)
        core.changed(call, now)

    def _unanswered(self, call: Call, state: Transferring, overflow: str | None, now: float) -> None:
        """Nobody answered what this stage rang (``overflow``: the group's overflow number, which
        its strategy would route the call to): the next stage."""
        core = self.core
        for leg in call.b_legs[state.first :]:
            if not leg.done:
                core.cancel_leg(call, leg, now)
        call.strategy.ended(call, now)
        call.strategy = RingAll()
        match state.stage:
            case Stage.TARGET:
                state.overflow = overflow
                self._recall(call, state, now)
            case Stage.RECALL:
                if state.overflow is not None:
                    self._overflow(call, state, state.overflow, now)
                else:
                    self._give_up(call, state, now)
            case Stage.OVERFLOW:
                if overflow is not None:
                    self._overflow(call, state, overflow, now)
                else:
                    self._give_up(call, state, now)
            case Stage.ENDING:
                pass
            case _:
                assert_never(state.stage)

    def _recall(self, call: Call, state: Transferring, now: float) -> None:
        """The target did not take the call: ring the transferring phone again, once."""
        core = self.core
        state.stage = Stage.RECALL
        call.referred_by = ""
        if not state.by:
            self._unanswered(call, state, None, now)  # nobody's phone handed the call on: none to recall
            return
        call.listed = (state.user, state.by)
        decision = core.dialplan.route(Query(call.caller.clinic, state.by, core.directory(), core.bindings))
        if isinstance(decision, Ring):
            self._ring(call, state, decision, now)
        else:
            self._unanswered(call, state, None, now)  # the transferring phone is gone (logged off)

    def _overflow(self, call: Call, state: Transferring, number: str, now: float) -> None:
        """The last try: the target's overflow ``number``, through the dial plan."""
        core = self.core
        call.routes += 1
        if call.routes > MAX_ROUTES:
            self._give_up(call, state, now)
            return
        state.stage = Stage.OVERFLOW
        call.referred_by = f"sip:{state.by}@{call.caller.clinic.domain}" if state.by else ""
        call.listed = (state.user, number)
        query = Query(call.caller.clinic, number, core.directory(), core.bindings, state.user)
        _, decision = self._follow(call, number, core.dialplan.route(query), state.user, now)
        self._ring(call, state, decision, now)

    def _follow(
        self, call: Call, number: str, decision: Decision, caller: str, now: float
    ) -> tuple[str, Decision]:
        """Where a call to ``number`` goes once its always or busy forwards (or a no-answer forward
        of a phone that cannot ring) are followed, as for a direct call (``CallControl.forwarding``,
        which bounds the chain): the number and the dial plan's decision for it."""
        core = self.core
        forwarding = core.forwarding
        while forwarding is not None:
            onward = forwarding.forward(call, number, decision, now)
            if onward is None:
                break
            call.routes += 1
            number = onward
            decision = core.dialplan.route(Query(call.caller.clinic, number, core.directory(), core.bindings, caller))
        return number, decision

    def _give_up(self, call: Call, state: Transferring, now: float) -> None:
        """Nobody could take the call: the transferee hears so, and is hung up on."""
        core = self.core
        state.stage = Stage.ENDING
        call.referred_by = ""
        if state.music:
            state.music = core.media.music(call, call.a, False)
        call.recall_at = now + after_prompt(core.media.play(call, call.a, [NOBODY_PROMPT]))
        core.tell_lines(call, now)
        core.arm(call)

    def _let_go(self, call: Call, state: Transferring, outcome: str) -> None:
        """The transfer is over with ``outcome``: the call is no longer held."""
        self._calls.pop(call.id, None)
        call.holder = None
        call.recall_at = inf
        call.referred_by = ""
        self._outcome(call, state, outcome)
        self.core.touched()

    @staticmethod
    def _outcome(call: Call, state: Transferring, outcome: str) -> None:
        if state.entry < len(call.transfers):
            call.transfers[state.entry] = replace(call.transfers[state.entry], outcome=outcome)


__all__ = ["NOBODY_PROMPT", "RETURNED", "Stage", "Transfer", "Transferring"]

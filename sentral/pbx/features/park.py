"""Parking in calls: the park code, transfers to the park number, retrieving a slot, the recall.

Theory of operation
-------------------
``sentral.routing.park`` keeps the slots, free of SIP (``ParkLots``, which the core holds so that
the directory's changes reach them); ``Parking`` carries its answers into calls with the core's
vocabulary, and is the ``CallHolder`` of every parked call.

Parking. During an answered call, either phone keys ``PARK_CODE`` (RFC 4733 or SIP INFO): the
other phone is parked on the first free slot of the clinic's first park lot, hears music from then
on, and the phone that keyed the code hears "the call is parked on 7 0 1" and is sent a BYE. Keys
from a phone of no member of staff, a call with nowhere to park, and a full lot (which says "number
unavailable") leave the call as it was. The parked phone's leg becomes the call's A leg (swapped in
when it was the answering phone) and the call has no winner while it waits; re-INVITEs and UPDATEs
from it (session refreshes) are answered by Sentral from the relay.

A phone with direct media sends its media past the relay, where its music would play: the slot is
taken at once, the phone is moved to the relay first (``CallControl.to_relay``: a re-INVITE) and the
call parked once it has answered; the parker, moved the same way, hears the slot after that. A phone
that refuses the move is not parked and its slot is free again. Without the relay at all
(``--direct-media``) nothing can play music to a parked phone, so the park code is ignored.

A blind transfer (REFER, RFC 3515) to the park number parks the other phone the same way, without
the announcement: the transferring phone is told the transfer succeeded (202, then a NOTIFY with
"200 OK") and hangs up itself, as a phone's park key expects (after ``TRANSFER_HANGUP`` Sentral
does it); the 202 waits for a phone with direct media to have moved to the relay (503 when it would
not). Dialled, the park number has nothing to park: 403.

Retrieving. Anyone dialling the slot takes the call: the dialler's INVITE does not start a call of
its own but joins the parked one as a leg, answered from the relay in the parked phone's codec, and
the two are bridged; the record is that one call, with its parker's and retriever's legs. An empty
slot, or one of another clinic, answers 404.

Recall. A call left on its slot for the lot's timeout rings the parker (``RingAll`` over their
phones, an offer of Sentral's in the parked phone's codec, shown as "Parked 701") while the music
plays on; answering connects them, an unanswered recall puts the call back on its slot, and after
the lot's last recall Sentral hangs up with the cause "park timeout". A slot's busy-lamp key
follows the call on it through the line observer, as the slot's "extension".
"""

from __future__ import annotations

from collections.abc import Callable
from math import inf
from typing import assert_never

from sentral.media.sounds import digits
from sentral.pbx.call import (
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
    LegState,
    ReOffer,
    RingAll,
    Ringback,
    RingCaller,
    Route,
    Timer,
    Try,
    after_prompt,
)
from sentral.pbx.presence import Phase
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, Response, make_response
from sentral.pbx.sip.transaction import ServerTransaction
from sentral.pbx.sip.uri import Uri
from sentral.routing.dialplan import Decision, Query, Ring
from sentral.routing.park import GiveUp, LotFull, Park, ParkLot, Reparked, Retrieve

# What a phone keys during a call to park the other side (Asterisk's usual in-call park code).
PARK_CODE = "#72"


class Parking:
    """The parking feature: a ``CallFeature``, and the ``CallHolder`` of parked calls."""

    def __init__(self, core: CallControl) -> None:
        self.core = core
        self._lots: dict[str, ParkLot] = {}  # parked call's id -> the lot it waits on
        self._moving: set[str] = set()  # calls whose phone is being moved to the relay to be parked

    # -- the core's hooks

    def dialled(self, call: Call, decision: FeatureDecision, now: float) -> bool:
        match decision:
            case Park():
                # A call is parked from inside it (``PARK_CODE``); dialled, the number has nothing to park.
                self.core.fail(call, 403, "Nothing to park", now)
            case Retrieve(lot=lot, slot=slot):
                self._retrieve(call, lot.domain, self.core.lots.get(lot), slot, now)
            case _:
                return False
        return True

    def keyed(self, call: Call, leg: Leg, keys: str, now: float) -> bool:
        if not keys.endswith(PARK_CODE):
            return False
        self._park(call, leg, now)
        return True

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
        """A blind transfer to the park number parks the other phone."""
        if not isinstance(decision, Park):
            return False
        respond = self.core.port.respond

        def answer(parked: bool) -> None:
            if parked:
                self.core.accept_refer(leg, tx, request)
            else:
                respond(tx, make_response(request, 503, "Park Lot Full Or Unavailable"))

        if call.state is not CallState.ANSWERED or call.parked or call.peer(leg) is None:
            respond(tx, make_response(request, 403, "Nothing to park"))
        elif not self._park(
            call, leg, now, lot=self.core.lots.get(decision.lot), announce=False, then=answer
        ):
            answer(False)
        return True

    def carried_out(self, call: Call, outcome: str, now: float) -> bool:
        return False

    def replaces(self, call: Call, old: Call, leg: Leg, now: float) -> bool:
        return False

    # -- parking

    def _park(
        self,
        call: Call,
        parker: Leg,
        now: float,
        *,
        lot: ParkLot | None = None,
        announce: bool = True,
        then: Callable[[bool], None] | None = None,
    ) -> bool:
        """``parker``'s phone keyed the park code (or transferred the call to a park number,
        ``lot``): park the other phone on the clinic's first lot, or ``lot``. False when it cannot
        be; otherwise the slot is taken and the call parked once the phone is at the relay, after
        which ``then`` is told whether it was."""
        core = self.core
        parked = call.peer(parker)
        domain = call.caller.clinic.domain
        directory = core.directory()
        lot = lot or core.lots.first(directory, domain)
        if (
            parked is None
            or lot is None
            or call.id in self._moving
            or directory.staff_for(domain, parker.extension) is None
        ):
            return False  # nowhere to park, or keys from someone who is not staff: the keys were just keys
        result = lot.park(call.id, parker.extension, now)
        if isinstance(result, LotFull):
            if announce:
                core.media.play(call, parker, ["number_unavailable"])
            return False
        self._moving.add(call.id)

        def moved(at_relay: bool, now: float) -> None:
            self._moving.discard(call.id)
            done = at_relay and self._parked(call, parker, parked, lot, result.slot, now, announce=announce)
            if not done:
                lot.leave(call.id)
            if then is not None:
                then(done)

        core.to_relay(call, parked, now, moved)
        return True

    def _parked(
        self, call: Call, parker: Leg, parked: Leg, lot: ParkLot, slot: str, now: float, *, announce: bool
    ) -> bool:
        """``parked``'s phone, its media at the relay, is parked on ``slot`` (taken for it already),
        unless the call changed meanwhile or no music can be played. Whether it was."""
        core = self.core
        if call.over or call.holder is not None or call.peer(parker) is not parked:
            return False  # hung up, or parked or retrieved otherwise while the phone moved
        if not core.media.music(call, parked, True):
            return False  # no relay to play to the parked phone (``--direct-media``): not parked
        if parked is not call.a:
            # The parked phone's leg becomes the A leg: what stays of the call is on its side.
            call.b_legs[call.b_legs.index(parked)] = call.a
            call.a = parked
        call.winner = None
        call.holder = self
        call.parked = slot
        self._lots[call.id] = lot
        call.recall_at = now + lot.lot.timeout
        parker.outcome = "parked"
        core.step_out(call, parker.extension)
        # A transferring phone hangs up itself once told the transfer worked; if not, we do.
        core.hang_up_leg_at(call, parker, now + TRANSFER_HANGUP)
        core.changed(call, now)
        core.tell_line(call, slot, Phase.CONFIRMED, now)
        core.arm(call)
        core.members_changed(now)
        if announce:
            # The parker hears the slot from the relay, moved there too if it has direct media.
            core.to_relay(call, parker, now, lambda _, now: self._announce(call, parker, slot, now))
        return True

    def _announce(self, call: Call, parker: Leg, slot: str, now: float) -> None:
        """Tell ``parker`` the slot (where its phone's media reaches the relay), then hang it up."""
        if call.over or parker.done or call.leaving is not parker:
            return  # gone already
        lasts = self.core.media.play(call, parker, ["call_parked_on", *digits(slot)])
        self.core.hang_up_leg_at(call, parker, now + after_prompt(lasts))
        self.core.arm(call)

    def _unpark(self, call: Call, now: float) -> None:
        """The call leaves its slot (retrieved, recalled and answered, hung up, given up)."""
        slot, lot = call.parked, self._lots.pop(call.id, None)
        call.holder, call.parked, call.recall_at = None, "", inf
        if lot is not None:
            lot.leave(call.id)
        self.core.touched()
        self.core.tell_line(call, slot, Phase.TERMINATED, now)

    def _retrieve(self, call: Call, domain: str, lot: ParkLot, slot: str, now: float) -> None:
        """``call`` dials ``slot``: its caller joins the call parked there, or gets 404."""
        core = self.core
        key = lot.occupied().get(slot)
        parked = core.calls.get(key) if key is not None else None
        if parked is None or parked.parked != slot or parked.caller.clinic.domain != domain:
            core.fail(call, 404, "Nothing parked there", now)
            return
        leg = call.a
        body = core.joining_media(call, parked, parked.a, f"r{len(parked.b_legs) + 1}", now)
        if body is None:
            return
        self._unpark(parked, now)
        for other in parked.b_legs:
            if other.state in (LegState.CALLING, LegState.EARLY):
                core.cancel_leg(parked, other, now)  # a recall ringing: too late
        parked.strategy.ended(parked, now)
        parked.strategy = RingAll()
        leg.outcome = "retrieved"
        core.take_over(call, parked, body, now)

    # -- the recall: the CallHolder of parked calls

    def ring_as(self, call: Call, leg: Leg) -> tuple[str, str]:
        # A recall shows its slot.
        return f"Parked {call.parked}", call.parked

    def on_timer(self, call: Call, now: float) -> None:
        if call.strategy.next_deadline() <= now:
            self.core.event(call, Timer(), now)  # the recall was not answered in time
        if call.parked and call.recall_at <= now:
            self._recall_due(call, now)

    def ended(self, call: Call, now: float) -> None:
        self._unpark(call, now)

    def _recall_due(self, call: Call, now: float) -> None:
        """The lot's timeout passed for ``call`` (and maybe for others on its lot): ring the parkers."""
        core = self.core
        lot = self._lots.get(call.id)
        if lot is None:
            return
        for recall in lot.on_timer(now):
            due = core.calls.get(recall.call_key)
            if due is None or due.parked != recall.slot:
                lot.leave(recall.call_key)
                continue
            due.recall_at = inf
            decision = core.dialplan.route(
                Query(due.caller.clinic, recall.parker_extension, core.directory(), core.bindings)
            )
            if isinstance(decision, Ring):
                due.strategy = RingAll(now + min(core.settings.no_answer, lot.lot.timeout), direct=True)
                self.command(due, Try(decision.contacts), now)
            else:
                self.command(due, Fail(480, "Parker unavailable"), now)  # phone off, gone
            core.tell_lines(due, now)
            core.arm(due)

    def command(self, call: Call, command: Command, now: float) -> None:
        """Carry out a command for a parked call, whose strategy is ringing its parker back."""
        core = self.core
        match command:
            case Try(targets=targets):
                rung = 0
                for row in targets:
                    try:
                        core.ring(call, row, now)
                        rung += 1
                    except SipError:
                        continue
                if not rung:
                    self.command(call, Fail(480, "No contact"), now)
            case Connect(leg=leg, response=response):
                self._recall_answered(call, leg, response, now)
            case Cancel(leg=leg):
                core.cancel_leg(call, leg, now)
            case Fail():
                self._recall_failed(call, now)
            case HangUp(cause=cause):
                core.hang_up(call, cause, now)
            case ReOffer(source=source, tx=tx, request=request):
                core.relay(call, source, tx, request, now)
            case RingCaller() | Ringback() | Announce() | Route():
                pass  # the parked phone hears its music meanwhile
            case _:
                assert_never(command)

    def _recall_answered(self, call: Call, leg: Leg, response: Response, now: float) -> None:
        """The parker answered the recall: connect them to the parked phone."""
        core = self.core
        core.take_answer(call, leg, response)
        self._unpark(call, now)
        call.strategy = RingAll()
        core.connect_held(call, leg, now)

    def _recall_failed(self, call: Call, now: float) -> None:
        """Nobody answered the recall: back on the slot, or, after the lot's last recall, hung up."""
        core = self.core
        for leg in call.b_legs:
            if leg.state in (LegState.CALLING, LegState.EARLY):
                core.cancel_leg(call, leg, now)
        call.strategy.ended(call, now)
        call.strategy = RingAll()
        lot = self._lots.get(call.id)
        outcome = lot.recall_failed(call.id, now) if lot is not None else None
        match outcome:
            case Reparked(deadline=deadline):
                call.recall_at = deadline
            case GiveUp():
                core.hang_up(call, "park timeout", now)
            case None:
                pass
            case _:
                assert_never(outcome)
        core.arm(call)


__all__ = ["PARK_CODE", "Parking"]

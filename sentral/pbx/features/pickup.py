"""Call pickup: answering a colleague's ringing call from one's own phone.

Theory of operation
-------------------
Three ways in, one way through:

- ``**EXT`` (directed pickup, ``Pickup`` with an extension): a call ringing on EXT's phones;
- ``*8`` (group pickup, ``Pickup`` without one): a call ringing for a group or function the
  dialler is a member of (logged in or not). A caller waiting in a queue with no member's phone
  ringing for it is not ringing anyone, so ``*8`` does not take it: a queue's order is the
  queue's, and a pickup that jumped it would also take calls nobody has been offered yet. As soon
  as a member's phone rings for it, it can be picked up. Among several calls ``first_to_pick``
  (``sentral.routing.pickup``) chooses: acute first, then the longest ringing;
- an INVITE with Replaces (RFC 3891) naming Sentral's early dialog with a ringing phone, which a
  busy-lamp key builds from the ``call-id``, ``local-tag`` and ``remote-tag`` of the dialog-info
  NOTIFY (``sentral.pbx.sip.dialog_info``). Only a ringing leg is picked up this way; a confirmed
  dialog is an attended transfer's, and this feature leaves it alone.

Who may: a member of staff of the call's clinic (403 otherwise), and not the call's own caller
(403: picking up one's own call is no pickup). Nothing ringing to pick up: 404, and the picker's
call is refused, as Asterisk does.

Picking up. The caller's INVITE is still unanswered and the picker's has an offer of its own: two
offers cannot answer each other, so both are answered from the relay and then joined, as a
parked call is retrieved. The caller is answered first, in whatever G.711 law its offer leads
with (or sent an offer of Sentral's, when its INVITE had none); the picker is answered in the
caller's law, so that the relay passes packets unchanged. Only then does anything change: every
leg still ringing for the call is cancelled with ``Reason: SIP;cause=200;text="Call completed
elsewhere"`` (RFC 3326, so those phones show no missed call), the call's ring strategy ends, the
caller gets its 200, and the picker's INVITE joins the call (``CallControl.take_over``): it is
answered, bridged to the caller, and its own call dissolves into the picked-up one, whose record
keeps every leg, the cancelled ones and the picker's ("picked up"), with the picker as the one who
answered. The lines follow: the picked-up extension's goes from early to terminated, the
picker's to confirmed. Media the relay cannot answer refuses the picker with its status (488) and
the call rings on.

Connecting the picker's leg as the call's winner instead (as if it had answered the call) would
need an answer to the caller's offer from the picker, which has only an offer to give; it would
take a re-INVITE of one side before anyone hears anything. Answering both from the relay costs
nothing of that and is what retrieval does already. Without the relay (`sentral serve
--direct-media`) the two phones' media cannot be joined, so pickup is refused with 488.
"""

from __future__ import annotations

from sentral.pbx.call import (
    Call,
    CallControl,
    CallState,
    FeatureDecision,
    Leg,
    LegState,
    OriginPerLeg,
    RingAll,
    Side,
)
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request
from sentral.pbx.sip.transaction import ServerTransaction
from sentral.pbx.sip.uri import Uri
from sentral.routing.dialplan import Decision
from sentral.routing.pickup import Pickup, Ringing, first_to_pick

# The Reason (RFC 3326) on the CANCEL to the phones that rang: not a missed call.
COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
PICKED_UP = "picked up"  # the picker's leg in the record


def _ringing(leg: Leg) -> bool:
    """True while ``leg``'s phone has the call offered and has not answered."""
    return leg.side is Side.B and leg.state in (LegState.CALLING, LegState.EARLY)


def _waiting(call: Call) -> bool:
    """True while ``call`` is unanswered and nobody holds it: a call a pickup can take."""
    return call.state in (CallState.TRYING, CallState.RINGING) and call.holder is None


class CallPickup:
    """The pickup feature: ``**EXT``, ``*8`` and INVITEs with Replaces for a ringing dialog."""

    def __init__(self, core: CallControl) -> None:
        self.core = core

    # -- the core's hooks

    def dialled(self, call: Call, decision: FeatureDecision, now: float) -> bool:
        if not isinstance(decision, Pickup):
            return False
        if self._refused(call, now):
            return True
        if decision.extension:
            candidates = self._ringing_on(call, decision.extension)
        else:
            candidates = self._ringing_for_groups_of(call)
        others = [other for other in candidates if other.caller.extension != call.caller.extension]
        if not others:
            if candidates:
                self.core.fail(call, 403, "Cannot Pick Up Own Call", now)
            else:
                self.core.fail(call, 404, "Nothing To Pick Up", now)
            return True
        by_key = {other.id: other for other in others}
        chosen = first_to_pick(
            Ringing(other.id, other.acute, other.rang if other.rang is not None else other.started)
            for other in others
        )
        assert chosen is not None
        self._pick_up(call, by_key[chosen.key], now)
        return True

    def keyed(self, call: Call, leg: Leg, keys: str, now: float) -> bool:
        return False  # pickup is dialled, never keyed during a call

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
        return False

    def carried_out(self, call: Call, outcome: str, now: float) -> bool:
        return False

    def replaces(self, call: Call, old: Call, leg: Leg, now: float) -> bool:
        """A busy-lamp key's pickup: ``leg`` must be ringing; a confirmed dialog is not ours."""
        if not _ringing(leg) or not _waiting(old):
            return False
        if self._refused(call, now):
            return True
        if old.caller.extension == call.caller.extension:
            self.core.fail(call, 403, "Cannot Pick Up Own Call", now)
            return True
        self._pick_up(call, old, now)
        return True

    # -- what may be picked up

    def _refused(self, call: Call, now: float) -> bool:
        """Refuse ``call``'s pickup when its caller is no member of staff, or nothing could join
        the media; whether it was refused."""
        core = self.core
        if core.directory().staff_for(call.caller.clinic.domain, call.caller.extension) is None:
            core.fail(call, 403, "Only Staff Pick Up Calls", now)
            return True
        if isinstance(core.media, OriginPerLeg):
            core.fail(call, 488, "Pickup Needs The Media Relay", now)
            return True
        return False

    def _live(self, call: Call) -> list[Call]:
        """The calls of ``call``'s clinic, other than itself, that are waiting to be answered."""
        domain = call.caller.clinic.domain
        return [
            other
            for other in self.core.calls.values()
            if other is not call and _waiting(other) and other.caller.clinic.domain == domain
        ]

    def _ringing_on(self, call: Call, extension: str) -> list[Call]:
        """The calls ringing on ``extension``'s phones."""
        return [
            other
            for other in self._live(call)
            if any(leg.extension == extension and _ringing(leg) for leg in other.b_legs)
        ]

    def _ringing_for_groups_of(self, call: Call) -> list[Call]:
        """The calls ringing a member's phone for a group or function ``call``'s caller is in."""
        memberships = self.core.directory().memberships(call.caller.clinic.domain, call.caller.extension)
        groups = {group.name for group in memberships}
        return [
            other
            for other in self._live(call)
            if other.group in groups and any(_ringing(leg) for leg in other.b_legs)
        ]

    # -- picking up

    def _pick_up(self, call: Call, old: Call, now: float) -> None:
        """``call``'s caller picks up ``old``: both answered from the relay, joined, and ``call``
        dissolved into ``old``. Media the relay refuses refuses ``call``; ``old`` rings on."""
        core = self.core
        media = core.media
        a, leg = old.a, call.a
        try:
            answer = media.answer_locally(old, a, old.a_sdp) if old.a_sdp else media.offer_locally(old, a)
        except SipError as exc:
            core.fail(call, exc.status, exc.reason, now, exc.headers)
            return
        body = core.joining_media(call, old, a, f"p{len(old.b_legs) + 1}", now)
        if body is None:
            return
        for other in old.b_legs:
            if _ringing(other):
                core.cancel_leg(old, other, now, COMPLETED_ELSEWHERE)
        old.strategy.ended(old, now)
        old.strategy = RingAll()
        core.answer_caller(old, answer, now)
        leg.outcome = PICKED_UP
        core.take_over(call, old, body, now)
        core.members_changed(now)  # a group's call taken: its queue may move on


__all__ = ["COMPLETED_ELSEWHERE", "PICKED_UP", "CallPickup"]

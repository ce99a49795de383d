"""Click-to-call: Sentral rings a member of staff's phones, then connects the one that answers to
a number.

Theory of operation
-------------------
The clinic platform or the switchboard page asks for a call from extension EXT to NUMBER
(``ClickToCall.call``). The number is checked first, under EXT's own outbound permission, the way
the dial plan routes it when EXT dials it: a number nobody could take (no such extension, a
phone logged off) or one the outbound policy refuses (a country not open, a staff member allowed
internal calls only) is refused before any phone rings, with the status a phone dialling it would
get and a sentence. So is a feature code or a park slot, and an extension with no phone to ring.

Nothing came in on the wire, so the call is one Sentral places itself (``CallControl.originate``):
its A leg is Sentral's own, and this feature holds the call (``CallHolder``) while every phone of
EXT rings, shown the number about to be called (the name of the extension or group, when it is
one). Nobody answering within the no-answer time, or every phone rejecting, ends the call, and its
record says so.

When a phone answers, the others stop ringing, and the call goes on as a blind transfer of that
phone to NUMBER (``Transfer.transfer``, kind ``click-to-call``), so that what a transfer does for
its target holds here too: an extension rings all its phones, a group or function hunts by its
strategy, an outside number goes out on the clinic's trunks with EXT's caller ID, and the number's
forwards are followed. The phone hears the ringing tone from the relay meanwhile (not the music a
transferee hears). When nobody takes the call the phone hears that the number is unavailable and
is hung up on: there is no transferring phone to recall. The record lists the transfer, with EXT
as the one who asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from sentral.pbx.call import (
    Announce,
    Call,
    CallControl,
    Caller,
    Cancel,
    Command,
    Connect,
    Fail,
    HangUp,
    Leg,
    ReOffer,
    RingAll,
    Ringback,
    RingCaller,
    Route,
    Timer,
    Try,
)
from sentral.pbx.features.transfer import Transfer
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Response
from sentral.routing.dialplan import Query, Reject, Ring, RingGroup
from sentral.routing.outside import Outside, Refused

KIND = "click-to-call"  # the kind of transfer the record lists


class ClickRefused(Exception):
    """A click-to-call that cannot be placed: the status a phone dialling the number would get
    (404, 403, 480, ...) and a sentence saying what to fix."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


@dataclass(eq=False, slots=True)
class Placing:
    """A click-to-call whose member of staff's phones ring."""

    extension: str
    number: str
    shown: str  # what the phones rung show as the caller: the number, or whom it reaches
    decision: Ring | RingGroup | Outside


def _user(number: str) -> str:
    """``number`` without the separators people type (spaces, dashes, dots, brackets)."""
    return "".join(c for c in number if c not in " -.()/")


class ClickToCall:
    """Click-to-call: the ``CallHolder`` of the calls it places while their member of staff's
    phones ring. It hooks nothing in the core (it is no ``CallFeature``): calls start here."""

    def __init__(self, core: CallControl, transfer: Transfer) -> None:
        self.core = core
        self.transfer = transfer
        self._calls: dict[str, Placing] = {}

    # -- placing a call

    def call(self, domain: str, extension: str, number: str, now: float) -> Call:
        """Ring ``extension``'s phones and connect the one that answers to ``number``: the call,
        ringing. Raises ClickRefused when it cannot be placed."""
        core = self.core
        directory = core.directory()
        clinic = directory.clinic(domain)
        staff = directory.staff_for(domain, extension)
        if clinic is None or staff is None:
            raise ClickRefused(404, f"there is no extension {extension} in {domain}")
        number = number.strip()
        if not number:
            raise ClickRefused(400, "give the number to call")
        decision = core.dialplan.route(Query(clinic, number, directory, core.bindings, extension))
        match decision:
            case Reject(status=status, reason=reason) | Refused(status=status, reason=reason):
                raise ClickRefused(status, f"{extension} cannot call {number}: {reason}")
            case Ring(extension=reached) if reached == extension:
                raise ClickRefused(400, f"{number} is {extension}'s own number")
            case Ring() | RingGroup() | Outside():
                pass
            case _:
                raise ClickRefused(400, f"{number} is a feature code or a park slot, not a number to call")
        own = core.dialplan.route(Query(clinic, extension, directory, core.bindings))
        if not isinstance(own, Ring) or not own.contacts:
            raise ClickRefused(480, f"{extension} has no phone registered and logged on to ring first")
        # The number as the records and the phones' SIP headers write it: E.164 for one outside,
        # what the dial plan reached otherwise (a number typed with spaces is no SIP user).
        match decision:
            case Outside(number=normalised):
                number, shown = normalised, number
            case Ring(name=name) if name:
                number, shown = _user(number), name
            case RingGroup(group=group):
                number, shown = _user(number), group.name
            case _:
                number = shown = _user(number)
        call = core.originate(Caller(clinic, extension, staff.name), number, self, now)
        self._calls[call.id] = Placing(extension, number, shown, decision)
        call.strategy = RingAll(now + core.settings.no_answer, direct=True)
        self.command(call, Try(own.contacts), now)
        core.changed(call, now)
        core.arm(call)
        return call

    # -- the CallHolder of the calls placed, while the member of staff's phones ring

    def ring_as(self, call: Call, leg: Leg) -> tuple[str, str]:
        placing = self._calls.get(call.id)
        if placing is None:
            return call.caller.name or call.caller.extension, call.caller.extension
        return placing.shown, placing.number

    def on_timer(self, call: Call, now: float) -> None:
        if call.strategy.next_deadline() <= now:
            self.core.event(call, Timer(), now)  # nobody answered in time

    def ended(self, call: Call, now: float) -> None:
        self._calls.pop(call.id, None)

    def command(self, call: Call, command: Command, now: float) -> None:
        """Carry out what the strategy ringing the member of staff's phones commands."""
        core = self.core
        placing = self._calls.get(call.id)
        if placing is None:
            return
        match command:
            case Try(targets=targets):
                for row in targets:
                    try:
                        core.ring(call, row, now)
                    except SipError:
                        continue
                if all(leg.done for leg in call.b_legs):
                    self.command(call, Fail(480, "No contact"), now)
            case Connect(leg=leg, response=response):
                self._answered(call, placing, leg, response, now)
            case Cancel(leg=leg):
                core.cancel_leg(call, leg, now)
            case Fail(status=status, reason=reason):
                self._not_answered(call, status, reason, now)
            case Route():
                self._not_answered(call, 480, "Temporarily Unavailable", now)
            case HangUp(cause=cause):
                core.hang_up(call, cause, now)
            case ReOffer(source=source, tx=tx, request=request):
                core.relay(call, source, tx, request, now)
            case RingCaller() | Ringback() | Announce():
                pass  # nobody waits on Sentral's side of the call
            case _:
                assert_never(command)

    def _answered(self, call: Call, placing: Placing, leg: Leg, response: Response, now: float) -> None:
        """``leg``'s phone answered: the call goes on as its transfer to the number."""
        core = self.core
        core.take_answer(call, leg, response)
        for other in call.b_legs:
            if other is not leg and not other.done:
                core.cancel_leg(call, other, now)
        del self._calls[call.id]
        call.strategy.ended(call, now)
        call.strategy = RingAll()
        call.holder = None
        call.answered = now
        core.occupy(call, placing.extension)
        self.transfer.transfer(call, call.a, leg, placing.number, placing.decision, now, KIND, ringback=True)

    def _not_answered(self, call: Call, status: int, reason: str, now: float) -> None:
        """The member of staff's phones did not take the call: it ends."""
        call.status = status
        self.core.hang_up(call, f"{status} {reason}" if reason else str(status), now)


__all__ = ["KIND", "ClickRefused", "ClickToCall", "Placing"]

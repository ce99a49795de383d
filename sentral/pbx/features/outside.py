"""Outside lines: calls out to the public network on a clinic's trunks.

Theory of operation
-------------------
The dial plan asks the clinic's outbound policy (``sentral.routing.outside``) last, after every
number of the clinic's own: a number outside comes here either as ``Outside`` (it may go out) or
as ``Refused`` (the policy says no: a country the clinic has not opened, a member of staff who may
not dial out).

A refused call hears why (the policy's prompt, as early media from the relay) and then gets the
refusal's status, 403; the security log says who tried and why, the call's record says why in its
cause. An international call beyond the toll-fraud caps (``InternationalCaps``) is refused the
same way.

A call that may go out hunts the clinic's trunks in their order (priority, then name), skipping
those marked down (``CarrierLine.usable``): it rings the number on the first, and fails over to the
next when the carrier answers 5xx or 408, or does not answer at all within ``CARRIER_TIMEOUT``.
Any other final answer (busy, no such number) is the called party's, and ends the call with it.
Each outcome is told to the trunk's line, which marks a trunk that keeps failing down. Emergency
numbers go out whatever the policy, marked acute.

The INVITE to the carrier carries the number as the trunk writes numbers, From and
P-Asserted-Identity with the clinic's main number (or the member of staff's own public number),
and, when dialled with the hide-number code, ``Privacy: id`` (RFC 3323, RFC 3325) with an
anonymous From. Its media always goes through the relay: the carrier never learns a phone's
address.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import inf
from typing import Any, Protocol, assert_never

import structlog

from sentral.config.directory import ClinicEntry, StaffEntry, TrunkEntry
from sentral.pbx.call import (
    Call,
    CallControl,
    CallEvent,
    Carrier,
    Command,
    Connect,
    Fail,
    FeatureDecision,
    Leg,
    LegAnswered,
    LegFailed,
    LegRinging,
    LegState,
    RingCaller,
    Timer,
    after_prompt,
)
from sentral.pbx.sip.errors import SipError, reason_phrase
from sentral.pbx.sip.transaction import State, hostport
from sentral.pbx.transport import Target
from sentral.routing.outside import (
    CAP_REFUSED,
    InternationalCaps,
    Outside,
    Refused,
    caller_id,
    carrier_number,
)

log = structlog.get_logger("sentral.outside")
security_log = structlog.get_logger("sentral.security")

# How long a carrier may take to answer an INVITE at all (even 100 Trying) before the call fails
# over to the next trunk; Timer B's 32 s would keep a caller in silence far too long.
CARRIER_TIMEOUT = 4.0
# How long a called number may ring before the call gives up (the network usually ends it first).
OUTSIDE_RING = 120.0
ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>'


class CarrierLine(Protocol):
    """One trunk as the hunt needs it (``sentral.pbx.trunks.TrunkLine``)."""

    entry: TrunkEntry
    calls: int

    def usable(self, now: float) -> bool: ...

    def call_failed(self, status: int | None, now: float) -> None: ...

    def call_answered(self, now: float) -> None: ...


class Carriers(Protocol):
    """The server's trunks (``sentral.pbx.trunks.Trunks``)."""

    def lines(self, domain: str) -> Sequence[CarrierLine]: ...

    # Any: each implementation takes its own kind of line, the one its ``lines`` gives.
    def target(self, line: Any) -> Target: ...


def _hostport(entry: TrunkEntry) -> str:
    """The trunk's host, with its port when that is not the transport's default."""
    if entry.port == (5061 if entry.transport == "tls" else 5060):
        return f"[{entry.host}]" if ":" in entry.host else entry.host
    return hostport(entry.host, entry.port)


def carrier_for(
    entry: TrunkEntry, outside: Outside, clinic: ClinicEntry, staff: StaffEntry | None, name: str
) -> Carrier:
    """How a call to ``outside`` goes out on trunk ``entry``: Request-URI, To, From and identity."""
    host = _hostport(entry)
    region = clinic.country
    uri = f"sip:{carrier_number(outside.number, entry.number_format, region)}@{host}"
    identity = caller_id(clinic, staff)
    headers: list[tuple[str, str]] = []
    if identity is not None:
        written = carrier_number(identity, entry.number_format, region)
        headers.append(("P-Asserted-Identity", f"<sip:{identity}@{host};user=phone>"))
        display = f'"{name}" ' if name and not outside.hidden else ""
        from_ = f"{display}<sip:{written}@{host}>"
    else:
        from_ = f"<sip:{entry.username or 'anonymous'}@{host}>"
    if outside.hidden:
        from_ = ANONYMOUS_FROM
        headers.append(("Privacy", "id"))
    return Carrier(
        trunk=entry.name,
        uri=uri,
        to=f"<{uri}>",
        from_=from_,
        headers=tuple(headers),
        username=entry.username,
        password=entry.password,
    )


def _reason(status: int) -> str:
    return reason_phrase(status) or "Failed"


class TrunkHunt:
    """The ring strategy of a call out: the clinic's trunks one after another until a carrier takes
    the call (see the module's docstring)."""

    def __init__(
        self,
        core: CallControl,
        carriers: Carriers,
        lines: Sequence[CarrierLine],
        outside: Outside,
        carrier: Sequence[Carrier],
        release: tuple[InternationalCaps, str, str] | None,
    ) -> None:
        self.core = core
        self.carriers = carriers
        self.lines = list(lines)
        self.outside = outside
        self.carrier = list(carrier)
        self.next = 0
        # An emergency call that finds every trunk marked down tries them all the same, in order.
        self.forced = False
        self.tried: set[int] = set()
        self.line: CarrierLine | None = None
        self.leg: Leg | None = None
        self.deadline = inf
        self.statuses: list[int] = []
        self.release = release

    def next_deadline(self) -> float:
        return self.deadline

    def start(self, call: Call, now: float) -> list[Command]:
        """Ring the number on the first trunk that is usable, or fail when none is left."""
        while self.next < len(self.lines):
            index = self.next
            self.next += 1
            line = self.lines[index]
            if index in self.tried or (not self.forced and not line.usable(now)):
                continue
            self.tried.add(index)
            try:
                leg = self.core.ring_carrier(
                    call, self.carriers.target(line), self.carrier[index], self.outside.number, now
                )
            except SipError as exc:
                return [Fail(exc.status, exc.reason, f"{exc.status} {exc.reason}", exc.headers)]
            self._leave_line()
            self.line, self.leg = line, leg
            line.calls += 1
            self.deadline = now + CARRIER_TIMEOUT
            # At debug: the record names the trunk of each leg; a line per call out costs at info.
            log.debug("outside_call", trunk=line.entry.name, clinic=call.caller.clinic.domain)
            return []
        if self.outside.emergency and not self.forced:
            # Marked down is a guess made from other calls; an emergency call still goes out.
            self.forced = True
            self.next = 0
            return self.start(call, now)
        if self.statuses:
            status = max(self.statuses)
            return [Fail(503 if status >= 500 else status, "No Outside Line Answered", "all trunks failed")]
        return [Fail(503, "No Outside Line", "no trunk available")]

    def _leave_line(self) -> None:
        if self.line is not None:
            self.line.calls = max(0, self.line.calls - 1)
            self.line = None

    def ended(self, call: Call, now: float) -> None:
        self.deadline = inf
        self._leave_line()
        if self.release is not None:
            caps, domain, extension = self.release
            self.release = None
            caps.release(domain, extension)

    def on_event(self, call: Call, event: CallEvent, now: float) -> list[Command]:
        line = self.line
        match event:
            case LegRinging(leg=leg, response=response):
                if leg is not self.leg:
                    return []
                # Ringing is no verdict on the trunk yet: a carrier may ring, then fail with 503.
                self.deadline = now + OUTSIDE_RING
                return [RingCaller(leg, response)]
            case LegAnswered(leg=leg, response=response):
                if line is not None and leg is self.leg:
                    line.call_answered(now)
                self.deadline = inf
                return [Connect(leg, response)]
            case LegFailed(leg=leg, status=status):
                if leg is not self.leg:
                    return []
                if status >= 500 or status == 408:
                    if line is not None:
                        line.call_failed(status, now)
                    self.statuses.append(status)
                    return self.start(call, now)
                if line is not None:
                    line.call_answered(now)  # the carrier works; the called party refused
                self.deadline = inf
                return [Fail(status, "", f"{status} {_reason(status)}")]
            case Timer():
                current = self.leg
                self.deadline = inf
                if current is None:
                    return []
                silent = current.state is LegState.CALLING and (
                    current.invite_tx is None or current.invite_tx.state is State.CALLING
                )
                self.core.cancel_leg(call, current, now, "no answer")
                if silent:
                    # The carrier has not answered at all: try the next trunk.
                    if line is not None:
                        line.call_failed(None, now)
                    self.statuses.append(408)
                    return self.start(call, now)
                return [Fail(480, "No answer", "no answer timeout")]
            case _:
                assert_never(event)


class OutsideLines:
    """The outside-lines feature: the calls the outbound policy lets out, and those it refuses."""

    def __init__(self, core: CallControl, carriers: Carriers | None, caps: InternationalCaps | None = None) -> None:
        self.core = core
        self.carriers = carriers
        self.caps = caps if caps is not None else InternationalCaps()

    def dialled(self, call: Call, decision: FeatureDecision, now: float) -> bool:
        match decision:
            case Refused():
                self._refuse(call, decision, now)
                return True
            case Outside():
                self._out(call, decision, now)
                return True
            case _:
                return False

    def _refuse(self, call: Call, refused: Refused, now: float) -> None:
        """The caller hears why (the refusal's prompt, as early media), then gets its status."""
        caller = call.caller
        security_log.warning(
            "outside_call_refused", clinic=caller.clinic.domain, extension=caller.extension, why=refused.why
        )
        log.debug("outside_call_refused_number", number=call.callee)
        lasts = self.core.early_prompt(call, [refused.prompt], now)
        fail = Fail(refused.status, refused.reason, refused.why)
        if lasts is None:
            self.core.execute(call, fail, now)
            return
        call.strategy = _FailLater(now + after_prompt(lasts), fail)
        self.core.arm(call)

    def _out(self, call: Call, outside: Outside, now: float) -> None:
        caller = call.caller
        clinic = caller.clinic
        domain = clinic.domain
        lines = list(self.carriers.lines(domain)) if self.carriers is not None else []
        if not lines or self.carriers is None:
            self.core.execute(call, Fail(503, "No Outside Line", "no trunk"), now)
            return
        release = None
        if outside.international and not outside.emergency:
            settings = self.core.settings
            # Read at each call, so that a reload's new caps hold from the next call on.
            self.caps.per_clinic = settings.international_calls
            self.caps.per_staff = settings.international_calls_per_staff
            if not self.caps.admit(domain, caller.extension):
                security_log.warning("international_cap_hit", clinic=domain, extension=caller.extension)
                self._refuse(call, CAP_REFUSED, now)
                return
            release = (self.caps, domain, caller.extension)
        if outside.emergency:
            call.acute = True
        staff = None if caller.outside else self.core.directory().staff_for(domain, caller.extension)
        call.callee = outside.number
        carriers = [carrier_for(line.entry, outside, clinic, staff, caller.name) for line in lines]
        hunt = TrunkHunt(self.core, self.carriers, lines, outside, carriers, release)
        call.strategy = hunt
        for command in hunt.start(call, now):
            self.core.execute(call, command, now)
        if not call.over:
            self.core.arm(call)

    def keyed(self, call: Call, leg: Leg, keys: str, now: float) -> bool:
        return False

    def refer(self, *args: object) -> bool:
        return False

    def carried_out(self, call: Call, outcome: str, now: float) -> bool:
        return False

    def replaces(self, call: Call, old: Call, leg: Leg, now: float) -> bool:
        return False


class _FailLater:
    """A call that hears why it is refused, then gets the refusal."""

    def __init__(self, at: float, fail: Fail) -> None:
        self.at = at
        self.fail = fail

    def next_deadline(self) -> float:
        return self.at

    def ended(self, call: Call, now: float) -> None:
        self.at = inf

    def on_event(self, call: Call, event: CallEvent, now: float) -> list[Command]:
        if isinstance(event, Timer) and self.at <= now:
            self.at = inf
            return [self.fail]
        return []


__all__ = ["CARRIER_TIMEOUT", "CarrierLine", "Carriers", "OutsideLines", "TrunkHunt", "carrier_for"]

"""SIP transactions: RFC 3261 §17 client and server transactions, with the RFC 6026 corrections.

Theory of operation
-------------------
A transaction is one request and the responses to it (for an INVITE answered with a non-2xx
final response, the ACK too). It exists to make an unreliable transport look reliable enough:
the client side retransmits the request until something answers, the server side absorbs request
retransmissions by re-sending its last response, and both sides linger long enough to soak up
stragglers before forgetting the exchange.

``TransactionLayer`` owns every live transaction. It is sans-IO: each method takes a message and
the current time ``now`` (seconds, any monotonic origin) and returns a list of actions, in the
order they are to be carried out:

- ``Send``: bytes for the driver to transmit to an address (over the connection or socket the
  flag ``reliable`` and the address designate);
- events for the transaction user (the UA core, the B2BUA, the registrar): ``RequestReceived``,
  ``CancelReceived``, ``AckReceived``, ``ResponseReceived``, ``StrayResponse``,
  ``TransactionTimeout``, ``TransportError`` and ``TransactionTerminated``.

The driver feeds every parsed message to ``receive``, sends with ``send_request`` and ``cancel``,
answers with ``respond``, reports send failures with ``transport_error``, and calls ``on_timer``
once the clock passes ``next_deadline()``.

Matching (§17.1.3, §17.2.3). A received request whose top Via branch carries the RFC 3261 magic
cookie is keyed by (branch, sent-by, method), an ACK being keyed as the INVITE it acknowledges.
A CANCEL is a transaction of its own; the INVITE it cancels is the one keyed by the same branch
and sent-by with method INVITE. Requests from RFC 2543 elements (no cookie) are keyed by
Request-URI, To tag, From tag, Call-ID, CSeq number, top Via and method; once a final response
has gone out the INVITE is keyed a second time with that response's To tag, which is the tag the
ACK carries. Request-URIs are compared as text, which is what retransmissions from one element
reproduce. A received response is keyed by (top Via branch, CSeq method).

Every request that matches nothing, apart from an ACK, gets a new server transaction at once, so
that its retransmissions are absorbed from the first one on; the transaction user is told with
``RequestReceived`` (``CancelReceived`` for a CANCEL, naming the INVITE transaction it cancels,
if any). An ACK that matches nothing is the ACK for a 2xx, which belongs to the dialog layer:
``AckReceived`` with no transaction. So is an ACK that reaches an INVITE server transaction in the
Accepted state (RFC 6026 §7.1). A response that matches no client transaction is a
``StrayResponse``: a stateless element would forward it, a UA or B2BUA may still need to ACK a
stray 2xx retransmission, and anything else is dropped by the transaction user (RFC 6026 §7.3).

States and timers are those of the RFCs. Client INVITE: Calling, Proceeding, Completed, Accepted,
Terminated; Timer A retransmits (T1, doubling, no cap), Timer B gives up after 64*T1 while
Calling (and 64*T1 after a CANCEL went out with no final response since, §9.1), Timer D lingers in Completed (32 s, or zero over a reliable transport) re-sending the
ACK the layer built for a non-2xx final response, Timer M lingers in Accepted (64*T1) passing
2xx retransmissions and forked 2xx responses up. Client non-INVITE: Trying, Proceeding,
Completed, Terminated; Timer E retransmits (T1 doubling to T2; T2 once Proceeding), Timer F gives
up after 64*T1, Timer K lingers (T4, or zero). Server INVITE: Proceeding, Completed, Confirmed,
Accepted, Terminated; a 100 Trying goes out after 200 ms unless the transaction user answered
first or cleared ``auto_trying``, Timer G retransmits a non-2xx final response (T1 doubling to
T2), Timer H gives up waiting for the ACK (64*T1), Timer I lingers after it (T4, or zero), Timer
L lingers in Accepted (64*T1) while the transaction user retransmits its 2xx. Server non-INVITE:
Trying, Proceeding, Completed, Terminated; Timer J lingers (64*T1, or zero). Over a reliable
transport no retransmission timer runs. A timeout reaches the transaction user as
``TransactionTimeout`` carrying, for Timers B and F, the 408 the RFC says to act upon.

CANCEL (§9.1). ``cancel`` builds the CANCEL for a client INVITE transaction and starts its
client transaction, to the same destination, once a provisional response has arrived; until then
the CANCEL is held, and it is dropped if a final response (or Timer B) ends the INVITE first.

Timers. Each transaction keeps two timer slots, a retransmission one (A, E, G, or the 100 Trying
delay) and a lifetime one (B, D, F, H, I, J, K, L, M). The layer keeps one timer wheel
(timers.py) of (deadline, transaction) entries. A transaction whose earliest deadline changes gets
a new entry and remembers that deadline; an entry whose deadline is not the one its transaction
remembers is stale and skipped when it comes due (lazy deletion), and the wheel is compacted when
stale entries outnumber live ones four to one. ``on_timer`` only ever touches transactions that
are due.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from math import inf
from typing import assert_never

from sentral.pbx.sip import entropy
from sentral.pbx.sip.headers import Via
from sentral.pbx.sip.message import BRANCH_MAGIC, Field, Request, Response, make_response
from sentral.pbx.sip.timers import TimerWheel

Address = tuple[str, int]

# An RFC 3261 key is (branch, sent-by host, sent-by port, method); an RFC 2543 one is
# (Request-URI, To tag, From tag, Call-ID, CSeq number, top Via, method).
ServerKey = tuple[object, ...]
ClientKey = tuple[str, str]

_DEFAULT_PORT = 5060


class State(Enum):
    """Transaction states, named as in RFC 3261 §17 and RFC 6026."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


# A client transaction in one of these states has not had its final response.
_AWAITING_FINAL = frozenset((State.CALLING, State.TRYING, State.PROCEEDING))


class Timer(Enum):
    """The transaction timers of RFC 3261 §17 and RFC 6026 (Timer C belongs to proxies)."""

    A = "A"  # client INVITE: request retransmission
    B = "B"  # client INVITE: timeout while Calling
    D = "D"  # client INVITE: linger in Completed
    E = "E"  # client non-INVITE: request retransmission
    F = "F"  # client non-INVITE: timeout
    G = "G"  # server INVITE: non-2xx final response retransmission
    H = "H"  # server INVITE: ACK wait
    I = "I"  # noqa: E741 - the RFC's name; server INVITE: linger in Confirmed
    J = "J"  # server non-INVITE: linger in Completed
    K = "K"  # client non-INVITE: linger in Completed
    L = "L"  # server INVITE: linger in Accepted
    M = "M"  # client INVITE: linger in Accepted
    TRYING = "100"  # server INVITE: send 100 Trying if the transaction user has been silent


@dataclass(frozen=True, slots=True)
class Timings:
    """Timer values in seconds (RFC 3261 Table 4); T1, T2 and T4 are configurable."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    # Timer D over unreliable transports: "at least 32 seconds".
    d: float = 32.0
    # §17.2.1: a 100 Trying goes out unless the transaction user answers within 200 ms.
    trying: float = 0.2

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J, L and M."""
        return 64 * self.t1


class TransactionStateError(Exception):
    """The transaction user asked for something the transaction's state does not allow.

    (An ``Exception``, not a ``RuntimeError``: the compiled build cannot derive from the latter.)
    """


# -- actions -------------------------------------------------------------------------------------

# Several actions are made for every message, so they spell out their __init__: compiled, the one
# @dataclass generates would run as interpreted Python, and a frozen class could not assign in its
# own. They are not frozen, but nothing changes one once made.

@dataclass(slots=True, init=False, unsafe_hash=True)
class Send:
    """Transmit ``data`` to ``destination``; ``tx`` is the transaction to blame on failure."""

    data: bytes
    destination: Address
    reliable: bool
    tx: ClientTransaction | ServerTransaction

    def __init__(
        self, data: bytes, destination: Address, reliable: bool, tx: ClientTransaction | ServerTransaction
    ) -> None:
        self.data = data
        self.destination = destination
        self.reliable = reliable
        self.tx = tx


@dataclass(slots=True, init=False, unsafe_hash=True)
class RequestReceived:
    """A new request; ``tx`` is the server transaction created for it (respond through it)."""

    tx: ServerTransaction
    request: Request

    def __init__(self, tx: ServerTransaction, request: Request) -> None:
        self.tx = tx
        self.request = request


@dataclass(slots=True, init=False, unsafe_hash=True)
class CancelReceived:
    """A new CANCEL; ``tx`` answers it, ``invite_tx`` is the INVITE it cancels (None: 481)."""

    tx: ServerTransaction
    request: Request
    invite_tx: ServerTransaction | None

    def __init__(self, tx: ServerTransaction, request: Request, invite_tx: ServerTransaction | None) -> None:
        self.tx = tx
        self.request = request
        self.invite_tx = invite_tx


@dataclass(slots=True, init=False, unsafe_hash=True)
class AckReceived:
    """An ACK for a 2xx: the dialog layer's business. ``tx`` is set when it reached an INVITE
    server transaction in the Accepted state."""

    request: Request
    source: Address
    reliable: bool
    tx: ServerTransaction | None

    def __init__(
        self, request: Request, source: Address, reliable: bool, tx: ServerTransaction | None
    ) -> None:
        self.request = request
        self.source = source
        self.reliable = reliable
        self.tx = tx


@dataclass(slots=True, init=False, unsafe_hash=True)
class ResponseReceived:
    """A response for a client transaction (retransmitted 2xx responses included)."""

    tx: ClientTransaction
    response: Response

    def __init__(self, tx: ClientTransaction, response: Response) -> None:
        self.tx = tx
        self.response = response


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matches no client transaction."""

    response: Response
    source: Address
    reliable: bool


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B, F or H fired. ``response`` is the 408 a client acts upon (None for Timer H)."""

    tx: ClientTransaction | ServerTransaction
    timer: Timer
    response: Response | None


@dataclass(frozen=True, slots=True)
class TransportError:
    """Sending for ``tx`` failed; the transaction is terminated (§17.1.4, §17.2.4)."""

    tx: ClientTransaction | ServerTransaction


@dataclass(slots=True, init=False, unsafe_hash=True)
class TransactionTerminated:
    """``tx`` has reached the Terminated state and left the layer."""

    tx: ClientTransaction | ServerTransaction

    def __init__(self, tx: ClientTransaction | ServerTransaction) -> None:
        self.tx = tx


Event = (
    RequestReceived
    | CancelReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimeout
    | TransportError
    | TransactionTerminated
)
Action = Send | Event


# -- message helpers -----------------------------------------------------------------------------


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie and 96 random bits."""
    return BRANCH_MAGIC + entropy.token_hex(12)


def hostport(host: str, port: int) -> str:
    """``host:port`` as a SIP header writes it, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_via(transport: str, local: tuple[str, int]) -> str:
    """The Via of a request Sentral starts from ``local``: a fresh branch, rport asked for."""
    return f"SIP/2.0/{transport.upper()} {hostport(*local)};branch={new_branch()};rport"


def local_contact(transport: str, local: tuple[str, int]) -> str:
    """Sentral's own Contact at ``local`` (its transport named unless UDP)."""
    suffix = "" if transport == "udp" else f";transport={transport}"
    return f"<sip:sentral@{hostport(*local)}{suffix}>"


def _top_via_text(request: Request) -> str:
    first = request.header_lines("via")[0]
    return str(request.top_via) if "," in first else first


def _copied_fields(request: Request, method: str, to: str) -> list[Field]:
    fields: list[Field] = [("via", "Via", _top_via_text(request)), ("max-forwards", "Max-Forwards", "70")]
    fields.extend(("route", "Route", value) for value in request.header_lines("route"))
    fields.append(("from", "From", request.header_lines("from")[0]))
    fields.append(("to", "To", to))
    fields.append(("call-id", "Call-ID", request.call_id))
    fields.append(("cseq", "CSeq", f"{request.cseq.seq} {method}"))
    return fields


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response to ``invite`` (RFC 3261 §17.1.1.3): the INVITE's
    Request-URI, top Via, From, Call-ID, CSeq number and Route headers, the response's To."""
    to = response.header_lines("to")[0]
    return Request("ACK", invite.uri_text, _copied_fields(invite, "ACK", to))


def build_cancel(invite: Request, reason: str = "") -> Request:
    """The CANCEL for ``invite`` (RFC 3261 §9.1): same Request-URI, Call-ID, From, To and CSeq
    number, method CANCEL, the INVITE's top Via alone and its Route headers; with ``reason``, a
    Reason header (RFC 3326) saying why, which a phone reads to tell a missed call from one
    completed elsewhere."""
    to = invite.header_lines("to")[0]
    fields = _copied_fields(invite, "CANCEL", to)
    if reason:
        fields.append(("reason", "Reason", reason))
    return Request("CANCEL", invite.uri_text, fields)


def response_destination(via: Via, source: Address, reliable: bool) -> Address:
    """Where responses to a request go (RFC 3261 §18.2.2, RFC 3581 rport).

    Over a reliable transport, back over the connection the request came in on; otherwise to the
    maddr if any, to the source address and port when rport was asked for, and else to the source
    address (the ``received`` value) at the sent-by port.
    """
    if reliable:
        return source
    rport = False
    for name, value in via.params:
        if name == "rport":
            rport = True
        elif name == "maddr" and value:
            return (value, via.port or _DEFAULT_PORT)
    if rport:
        return source
    return (source[0], via.port or _DEFAULT_PORT)


def _server_key(request: Request, via: Via, method: str) -> tuple[ServerKey, bool]:
    """The §17.2.3 key of a received request, and whether it is an RFC 2543 (legacy) one."""
    branch = via.branch
    if branch is not None and branch.startswith(BRANCH_MAGIC):
        return (branch, via.host, via.port, method), False
    return _legacy_key(request, via, request.to_tag, method), True


def _legacy_key(request: Request, via: Via, to_tag: str | None, method: str) -> ServerKey:
    return (request.uri_text, to_tag, request.from_tag, request.call_id, request.cseq.seq, via, method)


# -- transactions --------------------------------------------------------------------------------


class _TimerSlots:
    """The two timer slots every transaction has: a retransmission one and a lifetime one."""

    _rtx_at: float
    _end_at: float
    _rtx_timer: Timer
    _end_timer: Timer

    @property
    def next_deadline(self) -> float | None:
        """When the next timer of this transaction fires, or None."""
        at = min(self._rtx_at, self._end_at)
        return None if at == inf else at

    @property
    def timers(self) -> dict[Timer, float]:
        """The running timers and their deadlines."""
        out: dict[Timer, float] = {}
        if self._rtx_at != inf:
            out[self._rtx_timer] = self._rtx_at
        if self._end_at != inf:
            out[self._end_timer] = self._end_at
        return out


class ServerTransaction(_TimerSlots):
    """The server side of one request: RFC 3261 §17.2 with RFC 6026's Accepted state.

    ``auto_trying`` may be cleared by the transaction user on ``RequestReceived`` to suppress the
    automatic 100 Trying of an INVITE.
    """

    def __init__(
        self,
        request: Request,
        key: ServerKey,
        legacy: bool,
        source: Address,
        reliable: bool,
        timings: Timings,
        auto_trying: bool,
        now: float,
    ) -> None:
        self.request = request
        self.method = request.method
        self.key = key
        self.legacy = legacy
        self.source = source
        self.reliable = reliable
        self.destination = response_destination(request.top_via, source, reliable)
        self._timings = timings
        self.auto_trying = auto_trying
        self.last_response: Response | None = None
        self._ack_key: ServerKey | None = None
        self._timer_at = inf
        self._end_at = inf
        self._end_timer = Timer.H
        self._interval = 0.0
        self.invite = invite = self.method == "INVITE"
        if invite:
            self.state = State.PROCEEDING
            self._rtx_timer = Timer.TRYING
            self._rtx_at = now + timings.trying if auto_trying else inf
        else:
            self.state = State.TRYING
            self._rtx_timer = Timer.G
            self._rtx_at = inf
        self._last_bytes: bytes | None = None

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.state.value}>"

    def _send_last(self, out: list[Action]) -> None:
        data = self._last_bytes
        if data is not None:
            out.append(Send(data, self.destination, self.reliable, self))

    def _on_retransmission(self, out: list[Action]) -> None:
        """A retransmission of the request: re-send the last response where the RFCs say so."""
        match self.state:
            case State.PROCEEDING | State.COMPLETED:
                self._send_last(out)
            case State.TRYING | State.CONFIRMED | State.ACCEPTED | State.TERMINATED:
                # Trying: nothing sent yet. Confirmed: the ACK came. Accepted: the transaction
                # user retransmits its 2xx (RFC 6026 §7.1).
                pass
            case State.CALLING:
                raise AssertionError("a server transaction is never Calling")
            case _:
                assert_never(self.state)

    def _on_ack(self, ack: Request, source: Address, reliable: bool, now: float, out: list[Action]) -> None:
        match self.state:
            case State.COMPLETED:
                self.state = State.CONFIRMED
                self._rtx_at = inf
                if self.reliable:
                    self.state = State.TERMINATED
                else:
                    self._end_timer = Timer.I
                    self._end_at = now + self._timings.t4
            case State.ACCEPTED:
                out.append(AckReceived(ack, source, reliable, self))
            case State.PROCEEDING | State.CONFIRMED | State.TERMINATED | State.TRYING:
                # An ACK before any final response is meaningless; in Confirmed it is a
                # retransmission the transaction absorbs.
                pass
            case State.CALLING:
                raise AssertionError("a server transaction is never Calling")
            case _:
                assert_never(self.state)

    def _respond(self, response: Response, now: float, out: list[Action]) -> None:
        status = response.status
        state = self.state
        if state is State.ACCEPTED and 200 <= status < 300:
            # RFC 6026 §7.1: the transaction user's 2xx retransmissions go straight out.
            data = self._last_bytes if response is self.last_response else None
            out.append(Send(data or response.to_bytes(), self.destination, self.reliable, self))
            return
        if state is not State.PROCEEDING and state is not State.TRYING:
            raise TransactionStateError(f"cannot send {status} in the {state.value} state")
        data = response.to_bytes()
        self.last_response = response
        self._last_bytes = data
        out.append(Send(data, self.destination, self.reliable, self))
        timings = self._timings
        if status < 200:
            self.state = State.PROCEEDING
            self._rtx_at = inf
            return
        if not self.invite:
            self.state = State.COMPLETED
            if self.reliable:
                self.state = State.TERMINATED
            else:
                self._end_timer = Timer.J
                self._end_at = now + timings.timeout
                # Lingering for Timer J only needs the response bytes. At thousands of requests a
                # second, 32 s of fully parsed requests are hundreds of thousands of objects that
                # every full garbage collection pass would have to visit.
                self.request.forget_parsed()
                response.forget_parsed()
            return
        self._rtx_at = inf
        # As for Timer J above: what lingers needs only bytes. The transaction user is done with
        # the INVITE; a 2xx it retransmits is serialized again from its fields.
        self.request.forget_parsed()
        response.forget_parsed()
        if status < 300:
            self.state = State.ACCEPTED
            self._end_timer = Timer.L
        else:
            self.state = State.COMPLETED
            self._end_timer = Timer.H
            if not self.reliable:
                self._rtx_timer = Timer.G
                self._interval = timings.t1
                self._rtx_at = now + timings.t1
        self._end_at = now + timings.timeout

    def _fire(self, now: float, out: list[Action]) -> None:
        """Run the earliest due timer."""
        if self._rtx_at <= self._end_at:
            timer = self._rtx_timer
            self._rtx_at = inf
        else:
            timer = self._end_timer
            self._end_at = inf
        match timer:
            case Timer.TRYING:
                if self.auto_trying and self._last_bytes is None and self.state is State.PROCEEDING:
                    trying = make_response(self.request, 100)
                    self.last_response = trying
                    self._last_bytes = data = trying.to_bytes()
                    out.append(Send(data, self.destination, self.reliable, self))
            case Timer.G:
                self._send_last(out)
                self._interval = interval = min(2 * self._interval, self._timings.t2)
                self._rtx_at = now + interval
            case Timer.H:
                self.state = State.TERMINATED
                out.append(TransactionTimeout(self, Timer.H, None))
            case Timer.I | Timer.J | Timer.L:
                self.state = State.TERMINATED
            case (
                Timer.A | Timer.B | Timer.D | Timer.E | Timer.F | Timer.K | Timer.M
            ):  # pragma: no cover - client timers
                raise AssertionError(f"Timer {timer.value} on a server transaction")
            case _:
                assert_never(timer)


class ClientTransaction(_TimerSlots):
    """The client side of one request: RFC 3261 §17.1 with RFC 6026's Accepted state."""

    def __init__(
        self, request: Request, key: ClientKey, destination: Address, reliable: bool, timings: Timings
    ) -> None:
        self.request = request
        self.method = request.method
        self.key = key
        self.destination = destination
        self.reliable = reliable
        self._timings = timings
        self.invite = invite = self.method == "INVITE"
        self.state = State.CALLING if invite else State.TRYING
        self.last_response: Response | None = None
        self._request_bytes = b""
        self._ack_bytes: bytes | None = None
        self._cancel: ClientTransaction | None = None
        self._timer_at = inf
        self._rtx_at = inf
        self._end_at = inf
        self._rtx_timer = Timer.A if invite else Timer.E
        self._end_timer = Timer.B if invite else Timer.F
        self._interval = timings.t1

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.method} {self.state.value}>"

    @property
    def cancel_tx(self) -> ClientTransaction | None:
        """The CANCEL transaction for this INVITE, once ``cancel`` asked for one."""
        return self._cancel

    def _start(self, now: float, out: list[Action]) -> None:
        self._request_bytes = data = self.request.to_bytes()
        out.append(Send(data, self.destination, self.reliable, self))
        timings = self._timings
        if not self.reliable:
            self._rtx_at = now + timings.t1
        self._end_at = now + timings.timeout

    def _on_response(self, response: Response, now: float, out: list[Action]) -> None:
        status = response.status
        state = self.state
        timings = self._timings
        if self.invite:
            match state:
                case State.CALLING | State.PROCEEDING:
                    self.last_response = response
                    out.append(ResponseReceived(self, response))
                    if status < 200:
                        if state is State.CALLING:
                            # No Timer B in Proceeding: the transaction user ends a long ring
                            # with a CANCEL, which restarts it (§9.1).
                            self.state = State.PROCEEDING
                            self._rtx_at = self._end_at = inf
                    elif status < 300:
                        self.state = State.ACCEPTED
                        self._rtx_at = inf
                        self._end_timer = Timer.M
                        self._end_at = now + timings.timeout
                    else:
                        self.state = State.COMPLETED
                        self._ack_bytes = ack = build_ack(self.request, response).to_bytes()
                        out.append(Send(ack, self.destination, self.reliable, self))
                        self._rtx_at = inf
                        if self.reliable:
                            self.state = State.TERMINATED
                        else:
                            self._end_timer = Timer.D
                            self._end_at = now + timings.d
                case State.COMPLETED:
                    if status >= 300 and self._ack_bytes is not None:
                        out.append(Send(self._ack_bytes, self.destination, self.reliable, self))
                case State.ACCEPTED:
                    # RFC 6026 §7.2: 2xx retransmissions and forked 2xx responses go up so that
                    # the dialog layer can ACK them.
                    if 200 <= status < 300:
                        out.append(ResponseReceived(self, response))
                case State.TERMINATED:
                    pass
                case State.TRYING | State.CONFIRMED:
                    raise AssertionError(f"a client INVITE transaction is never {state.value}")
                case _:
                    assert_never(state)
            return
        match state:
            case State.TRYING | State.PROCEEDING:
                self.last_response = response
                out.append(ResponseReceived(self, response))
                if status < 200:
                    self.state = State.PROCEEDING
                else:
                    self.state = State.COMPLETED
                    self._rtx_at = inf
                    if self.reliable:
                        self.state = State.TERMINATED
                    else:
                        self._end_timer = Timer.K
                        self._end_at = now + timings.t4
            case State.COMPLETED | State.TERMINATED:
                pass
            case State.CALLING | State.CONFIRMED | State.ACCEPTED:
                raise AssertionError(f"a client non-INVITE transaction is never {state.value}")
            case _:
                assert_never(state)

    def _timeout(self, timer: Timer, out: list[Action]) -> None:
        self.state = State.TERMINATED
        out.append(TransactionTimeout(self, timer, make_response(self.request, 408)))

    def _fire(self, now: float, out: list[Action]) -> None:
        """Run the earliest due timer."""
        if self._rtx_at <= self._end_at:
            timer = self._rtx_timer
            self._rtx_at = inf
        else:
            timer = self._end_timer
            self._end_at = inf
        timings = self._timings
        match timer:
            case Timer.A:
                out.append(Send(self._request_bytes, self.destination, self.reliable, self))
                self._interval = interval = 2 * self._interval
                self._rtx_at = now + interval
            case Timer.E:
                out.append(Send(self._request_bytes, self.destination, self.reliable, self))
                if self.state is State.PROCEEDING:
                    interval = timings.t2
                else:
                    interval = min(2 * self._interval, timings.t2)
                self._interval = interval
                self._rtx_at = now + interval
            case Timer.B | Timer.F:
                self._timeout(timer, out)
            case Timer.D | Timer.K | Timer.M:
                self.state = State.TERMINATED
            case (
                Timer.G | Timer.H | Timer.I | Timer.J | Timer.L | Timer.TRYING
            ):  # pragma: no cover - server timers
                raise AssertionError(f"Timer {timer.value} on a client transaction")
            case _:
                assert_never(timer)


Transaction = ClientTransaction | ServerTransaction


# -- the layer -----------------------------------------------------------------------------------


def _still_set(at: float, tx: Transaction) -> bool:
    """Whether a timer entry is the one its transaction waits for (the others are left over)."""
    return at == tx._timer_at and tx.state is not State.TERMINATED


class TransactionLayer:
    """Every live transaction, their matching tables and one timer wheel."""

    def __init__(self, timings: Timings | None = None, *, auto_trying: bool = True) -> None:
        self.timings = timings or Timings()
        # The default for new INVITE server transactions (each has its own ``auto_trying``).
        self.auto_trying = auto_trying
        self._servers: dict[ServerKey, ServerTransaction] = {}
        self._server_count = 0
        self._clients: dict[ClientKey, ClientTransaction] = {}
        self._timers: TimerWheel[Transaction] = TimerWheel()

    def __len__(self) -> int:
        """Live transactions, client and server (held CANCELs not counted)."""
        return len(self._clients) + self._server_count

    @property
    def server_count(self) -> int:
        """Live server transactions."""
        return self._server_count

    @property
    def client_count(self) -> int:
        """Live client transactions."""
        return len(self._clients)

    @property
    def clients_awaiting_final(self) -> int:
        """Client transactions that have no final response yet, but for OPTIONS (keepalives, which
        nobody waits on); the others only wait to absorb retransmissions of one."""
        return sum(
            1 for tx in self._clients.values() if tx.state in _AWAITING_FINAL and tx.method != "OPTIONS"
        )

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, msg: Request | Response, source: Address, reliable: bool, now: float) -> list[Action]:
        """Match a received message to its transaction, or report it as new or stray.

        Raises SipError (400) when the message lacks what matching needs (top Via, CSeq, and for
        RFC 2543 requests From, To and Call-ID); the driver answers or drops it.
        """
        out: list[Action] = []
        if isinstance(msg, Response):
            via = msg.top_via
            ctx = self._clients.get((via.branch or "", msg.cseq.method))
            if ctx is None:
                out.append(StrayResponse(msg, source, reliable))
                return out
            ctx._on_response(msg, now, out)
            self._settle_client(ctx, now, out)
            return out

        via = msg.top_via
        method = msg.method
        is_ack = method == "ACK"
        key, legacy = _server_key(msg, via, "INVITE" if is_ack else method)
        stx = self._servers.get(key)
        if stx is not None:
            if is_ack:
                stx._on_ack(msg, source, reliable, now, out)
                self._settle_server(stx, out)
            else:
                # Absorbing a retransmission changes neither state nor timers.
                stx._on_retransmission(out)
            return out
        if is_ack:
            out.append(AckReceived(msg, source, reliable, None))
            return out
        stx = ServerTransaction(msg, key, legacy, source, reliable, self.timings, self.auto_trying, now)
        self._servers[key] = stx
        self._server_count += 1
        if method == "CANCEL":
            out.append(CancelReceived(stx, msg, self._servers.get((*key[:-1], "INVITE"))))
        else:
            out.append(RequestReceived(stx, msg))
        at = stx._rtx_at
        if at != inf:
            stx._timer_at = at
            self._timers.push(at, stx)
        return out

    def knows(self, request: Request) -> bool:
        """Whether ``request`` is a retransmission of one a server transaction is serving."""
        key, _ = _server_key(request, request.top_via, request.method)
        return key in self._servers

    def find_invite(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a received CANCEL cancels, if it is still live."""
        key, _ = _server_key(cancel, cancel.top_via, "INVITE")
        return self._servers.get(key)

    # -- the server side -------------------------------------------------------------------------

    def respond(self, tx: ServerTransaction, response: Response, now: float) -> list[Action]:
        """Send ``response`` through server transaction ``tx``.

        Raises TransactionStateError when the state forbids it (a second final response, or
        anything once Terminated); a 2xx in Accepted is the transaction user's retransmission
        and goes out.
        """
        out: list[Action] = []
        tx._respond(response, now, out)
        if tx.legacy and tx.invite and tx._ack_key is None and response.status >= 200:
            to_tag = response.to_tag
            if to_tag != tx.request.to_tag:
                req = tx.request
                tx._ack_key = ack_key = _legacy_key(req, req.top_via, to_tag, "INVITE")
                self._servers[ack_key] = tx
        self._settle_server(tx, out)
        return out

    # -- the client side -------------------------------------------------------------------------

    def send_request(
        self, request: Request, destination: Address, reliable: bool, now: float
    ) -> tuple[ClientTransaction, list[Action]]:
        """Start a client transaction for ``request``, whose top Via must carry an RFC 3261
        branch unique to it (see ``new_branch``). Not for ACK, which is never a transaction."""
        if request.method == "ACK":
            raise ValueError("an ACK is sent without a client transaction")
        branch = request.top_via.branch
        if branch is None or not branch.startswith(BRANCH_MAGIC):
            raise ValueError("a client transaction needs an RFC 3261 branch in its top Via")
        key = (branch, request.method)
        if key in self._clients:
            raise ValueError(f"a client transaction with branch {branch} is already live")
        tx = ClientTransaction(request, key, destination, reliable, self.timings)
        self._clients[key] = tx
        out: list[Action] = []
        tx._start(now, out)
        self._schedule(tx)
        return tx, out

    def cancel(
        self, invite_tx: ClientTransaction, now: float, reason: str = ""
    ) -> tuple[ClientTransaction | None, list[Action]]:
        """CANCEL the INVITE of ``invite_tx`` (RFC 3261 §9.1), with ``reason`` as its Reason header
        if given.

        Returns the CANCEL's client transaction, sent now if a provisional response has arrived
        and otherwise held until one does; None when a final response has already arrived. A
        second call returns the first CANCEL transaction.
        """
        if not invite_tx.invite:
            raise ValueError("only an INVITE can be cancelled")
        if invite_tx._cancel is not None:
            return invite_tx._cancel, []
        state = invite_tx.state
        if state is not State.CALLING and state is not State.PROCEEDING:
            return None, []
        request = build_cancel(invite_tx.request, reason)
        key = (invite_tx.key[0], "CANCEL")
        cancel_tx = ClientTransaction(request, key, invite_tx.destination, invite_tx.reliable, self.timings)
        invite_tx._cancel = cancel_tx
        out: list[Action] = []
        if state is State.PROCEEDING:
            self._start_cancel(invite_tx, cancel_tx, now, out)
            self._schedule(invite_tx)
        return cancel_tx, out

    def _start_cancel(
        self, invite_tx: ClientTransaction, cancel_tx: ClientTransaction, now: float, out: list[Action]
    ) -> None:
        self._clients[cancel_tx.key] = cancel_tx
        cancel_tx._start(now, out)
        self._schedule(cancel_tx)
        # §9.1: with no final response 64*T1 after the CANCEL, the INVITE counts as cancelled.
        invite_tx._end_timer = Timer.B
        invite_tx._end_at = now + self.timings.timeout

    # -- failures and timers ---------------------------------------------------------------------

    def transport_error(self, tx: Transaction, now: float) -> list[Action]:
        """The driver could not send for ``tx``: inform the transaction user and terminate it."""
        out: list[Action] = []
        if tx.state is State.TERMINATED:
            return out
        tx.state = State.TERMINATED
        out.append(TransportError(tx))
        if isinstance(tx, ClientTransaction):
            self._settle_client(tx, now, out)
        else:
            self._settle_server(tx, out)
        return out

    def next_deadline(self) -> float | None:
        """When ``on_timer`` next has work, or None. May be early (a stale entry): harmless."""
        return self._timers.next_deadline()

    def on_timer(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``, in deadline order."""
        out: list[Action] = []
        timers = self._timers
        for at, tx in timers.pop_due(now):
            if not _still_set(at, tx):
                continue
            tx._timer_at = inf
            tx._fire(now, out)
            if isinstance(tx, ClientTransaction):
                self._settle_client(tx, now, out)
            else:
                self._settle_server(tx, out)
        held = len(timers)
        if held > 1024 and held > 4 * (self._server_count + len(self._clients)):
            timers.compact(_still_set)
        return out

    # -- bookkeeping -----------------------------------------------------------------------------

    def _schedule(self, tx: Transaction) -> None:
        rtx = tx._rtx_at
        end = tx._end_at
        at = rtx if rtx < end else end
        if at != tx._timer_at:
            tx._timer_at = at
            if at != inf:
                self._timers.push(at, tx)

    def _settle_server(self, tx: ServerTransaction, out: list[Action]) -> None:
        if tx.state is not State.TERMINATED:
            self._schedule(tx)
            return
        tx._timer_at = inf
        self._server_count -= 1
        servers = self._servers
        if servers.get(tx.key) is tx:
            del servers[tx.key]
        ack_key = tx._ack_key
        if ack_key is not None and servers.get(ack_key) is tx:
            del servers[ack_key]
        out.append(TransactionTerminated(tx))

    def _settle_client(self, tx: ClientTransaction, now: float, out: list[Action]) -> None:
        cancel = tx._cancel
        if cancel is not None and cancel.state is not State.TERMINATED and cancel.key not in self._clients:
            # A held CANCEL: send it once the INVITE is Proceeding, drop it once it is over.
            if tx.state is State.PROCEEDING:
                self._start_cancel(tx, cancel, now, out)
            elif tx.state is not State.CALLING:
                cancel.state = State.TERMINATED
                out.append(TransactionTerminated(cancel))
        if tx.state is not State.TERMINATED:
            self._schedule(tx)
            return
        tx._timer_at = inf
        clients = self._clients
        if clients.get(tx.key) is tx:
            del clients[tx.key]
        out.append(TransactionTerminated(tx))

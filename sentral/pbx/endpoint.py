"""The endpoint driver: where bytes from the network meet the sans-IO SIP core.

Theory of operation: every message the transports receive arrives in ``on_message`` with its
``Origin``. The driver asks the abuse guard whether the source may be heard, parses, answers
malformed requests statelessly (the one place a ``SipError`` becomes a response), stamps the top
Via with ``received``/``rport`` (RFC 3261 §18.2.1, RFC 3581), and hands the message to the
transaction layer. New server transactions are dispatched by method to their transaction user:
the registrar for REGISTER, the endpoint itself for OPTIONS, call control (``CallControl``) for
INVITE, ACK, CANCEL, BYE, UPDATE, INFO and PRACK and for every response to a request it sent,
the presence hub (``PresenceHub``) for SUBSCRIBE and for the responses to its NOTIFYs, and the
trunks (``Trunks``) for the responses to their REGISTERs and OPTIONS (offered first: they are
few and cheap to tell apart). Everything the core wants sent or timed comes back as actions,
which the driver carries out: bytes to the transports, deadlines to one timer on the event loop
(the earliest of the transaction layer's, call control's, the presence hub's and the trunks').
That timer is set to the end of the timer wheel's tick (10 ms) the deadline falls in, so that
timers due within one tick fire on one wake-up: under load thousands come due each second, each
at an instant of its own, and waking the loop for each one cost more than the timers did. A timer
fires at most a tick late, never early; SIP's timers count in half seconds.

A new INVITE or SUBSCRIBE is authenticated here, before call control or the presence hub sees
it, with the same digest rules as REGISTER: a 407 carrying one Proxy-Authenticate per algorithm
offered to the calling phone, and a failure counted against the source in the guard. The realm is the
caller's clinic (the From domain's); once authenticated, a Request-URI for a domain not served
gets 404 and one for another clinic of this server 403 (``Registrar.addressing`` decides; an IP
address there stands for the caller's own clinic).

The endpoint is call control's ``CallPort``: it starts client transactions towards the
``Target`` a leg names (a binding's source address, listener and connection), sends end-to-end
ACKs straight to the transports, and hands finished calls' records to ``on_record``. While ``draining`` (SIGTERM), new INVITEs get 503 with Retry-After
and calls in progress carry on. While ``shedding`` (the transports find the server overloaded),
new INVITEs get 503 too, statelessly, before any transaction, challenge or routing is spent on
them; retransmissions and requests of calls in progress are served as ever.

Responses go where RFC 3261 §18.2.2 and RFC 3581 say: over the connection the request came on
for TCP and TLS; for UDP to the ``received`` address and the ``rport`` port (the source of the
request, which is what a phone behind NAT needs), from the socket the request arrived on.

A REGISTER's bindings are committed to storage before its 200 OK is sent: the registrar decides,
the writer commits (batched with other registrations), and the response goes out from the
commit's completion callback. No task is created per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import Callable, Iterable

import structlog

from sentral.config.db import StoreError
from sentral.config.directory import ClinicEntry, Directory, StaffEntry, TrunkEntry
from sentral.config.store import BindingRow
from sentral.config.writer import BindingWriter
from sentral.logs import sip_trace_text, unfiltered_logger
from sentral.media.dtmf import Digit
from sentral.pbx.call import ALLOW as CALL_ALLOW
from sentral.pbx.call import Call, CallControl, Caller, CallReport, CallSettings, MediaPolicy
from sentral.pbx.caller_id import CallerId, CallerLookups
from sentral.pbx.features import click_to_call
from sentral.pbx.features import standard as standard_features
from sentral.pbx.guard import Guard, GuardAction, SecurityEventKind
from sentral.pbx.hunting import Hunting
from sentral.pbx.location import Location
from sentral.pbx.presence import PresenceHub
from sentral.pbx.registrar import AuthOutcome, RegisterResult, Registrar
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.headers import Via, parse_name_addr
from sentral.pbx.sip.message import (
    Field,
    ParseError,
    Request,
    Response,
    error_response_fields,
    local_tag,
    make_response,
    parse_message,
)
from sentral.pbx.sip.timers import TICK
from sentral.pbx.sip.transaction import (
    AckReceived,
    Action,
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    StrayResponse,
    TransactionLayer,
    TransactionStateError,
    TransactionTerminated,
    TransactionTimeout,
    TransportError,
    response_destination,
)
from sentral.pbx.transport import Origin, Outbound, Target
from sentral.pbx.trunks import Trunks
from sentral.routing.dialplan import DialPlan, Feature
from sentral.routing.inbound import called
from sentral.routing.inbound import route as inbound_route
from sentral.routing.outside import caller_e164

log = structlog.get_logger("sentral.endpoint")
security_log = structlog.get_logger("sentral.security")
# ``serve --sip-trace``: shown at any --log-level once asked for.
trace_log = unfiltered_logger("sentral.sip_trace")

SUPPORTED = ("path", "outbound", "timer")
ALLOW = (*(method.strip() for method in CALL_ALLOW.split(",")), "SUBSCRIBE")
# Methods call control serves (a new INVITE reaches it only once authenticated).
CALL_METHODS = frozenset({"INVITE", "BYE", "UPDATE", "INFO", "PRACK", "REFER"})
DRAIN_RETRY_AFTER = "30"
OVERLOAD_RETRY_AFTER = "2"  # short: a proxy or trunk takes Retry-After as the time to keep away
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
_TICKS_PER_SECOND = round(1 / TICK)
SIP_METHODS = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
        "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    }
)
SERVER_NAME = "Sentral"


class Endpoint:
    """Drives the SIP core for one server process."""

    def __init__(
        self,
        transports: Outbound,
        layer: TransactionLayer,
        registrar: Registrar,
        location: Location,
        writer: BindingWriter,
        guard: Guard,
        directory: Callable[[], Directory],
        *,
        sip_trace: bool = False,
        call_settings: CallSettings | None = None,
        on_record: Callable[[CallReport], asyncio.Future[None] | None] | None = None,
        on_feature: Callable[[Call, Feature], asyncio.Future[str]] | None = None,
        media: MediaPolicy | None = None,
    ) -> None:
        self.transports = transports
        self.layer = layer
        self.registrar = registrar
        self.location = location
        self.writer = writer
        self.guard = guard
        self.directory = directory
        self.sip_trace = sip_trace
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # How deep in ``_run`` we are: actions run nested (a response sent from a transaction
        # user's handler), and the timer is rescheduled once, when the outermost run ends.
        self._depth = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origins: dict[ServerTransaction, Origin] = {}
        self._targets: dict[ClientTransaction, Target] = {}
        self._local_hosts: dict[tuple[str, str], str] = {}
        self.draining = False
        # Overloaded (the transports' word): new calls are refused statelessly, before any
        # transaction, challenge or routing, so that the calls in progress complete.
        self.shedding = False
        self.shed = 0  # new calls refused while overloaded, since the start
        self.on_record = on_record
        self.on_feature = on_feature
        bindings = lambda aor: location.bindings(aor, time.time())  # noqa: E731
        self.hunting = Hunting(directory, bindings, lambda domain, ext: (domain, ext) in self.calls.busy)
        self.presence = PresenceHub(self, directory, lambda aor: bool(location.bindings(aor, time.time())))
        self.trunks = Trunks(self, directory)
        guard.also_trusted = lambda host: self.trunks.for_source(host) is not None
        self.calls = CallControl(
            self,
            DialPlan(),
            directory,
            bindings,
            settings=call_settings,
            media=media,
            timings=layer.timings,
            groups=self.hunting,
            lines=self.presence,
            features=lambda core: standard_features(core, self.trunks),
        )
        self.clicks = click_to_call(self.calls)
        # Who calls from outside, from the clinic's records (None: no lookups, nothing held).
        self.caller_id: CallerId | None = None

    def look_up_callers(self, lookups: CallerLookups) -> None:
        """Ask ``lookups`` who calls from outside before the phones ring (``sentral.pbx.caller_id``)."""
        self.caller_id = CallerId(self.calls, lookups, self._schedule)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the running event loop (timers are scheduled on it)."""
        self._loop = loop

    # -- receiving --------------------------------------------------------------------------

    def on_message(self, data: bytes, origin: Origin) -> None:
        """One complete message from the network."""
        now = time.monotonic()
        verdict = self.guard.check(origin.host, now)
        self.log_security()
        if verdict is GuardAction.BLOCK:
            return
        if self.sip_trace:
            trace_log.debug("sip_in", peer=f"{origin.transport}:{origin.host}:{origin.port}", message=_text(data))
        try:
            message = parse_message(data, datagram=not origin.reliable)
        except ParseError as exc:
            self._reject_unparsed(exc, exc.fields, origin)
            return
        except SipError as error:
            # Its own name: compiled, an except clause's variable keeps the first clause's type.
            if not error.drop:
                log.info("unparsable_message", peer=origin.host, reason=error.reason)
            return
        if isinstance(message, Response):
            self._on_response(message, origin, now)
            return
        if verdict is GuardAction.THROTTLE and message.method != "ACK":
            self._reject_unparsed(
                SipError(503, "Service Unavailable", headers=(("Retry-After", "30"),)), message.fields, origin
            )
            return
        try:
            message.validate()
            self._stamp_via(message, origin)
        except SipError as error:
            if message.method != "ACK":
                self._reject_unparsed(error, message.fields, origin)
            return
        if (
            self.shedding
            and message.method == "INVITE"
            and message.to_tag is None
            and not self.layer.knows(message)
        ):
            self._shed(message, origin)
            return
        self._run(self.layer.receive(message, _peer(origin), origin.reliable, now), origin)

    def _shed(self, request: Request, origin: Origin) -> None:
        """Refuse a new call while overloaded: 503 with a short Retry-After, sent statelessly
        (RFC 3261 §8.2.6; a retransmission is refused again, the ACK matches nothing)."""
        self.shed += 1
        response = make_response(
            request, 503, to_tag=local_tag(request), headers=[("Retry-After", OVERLOAD_RETRY_AFTER)]
        )
        self._send_stateless(response, request.top_via, origin)

    def _on_response(self, response: Response, origin: Origin, now: float) -> None:
        try:
            response.validate()
        except SipError:
            return  # a malformed response is dropped (RFC 3261 §18.1.2)
        self._run(self.layer.receive(response, _peer(origin), origin.reliable, now), origin)

    def _stamp_via(self, request: Request, origin: Origin) -> None:
        stamped = request.top_via.stamped(origin.host, origin.port)
        if stamped is not None:
            request.replace_top_via(stamped)

    # -- the transaction user ------------------------------------------------------------------

    def _on_request(self, tx: ServerTransaction, request: Request, origin: Origin, now: float) -> None:
        method = request.method
        if method == "REGISTER" or method == "OPTIONS":
            unsupported = [t for t in request.tokens("require") if t not in SUPPORTED]
            if unsupported:
                self._respond(
                    tx, make_response(request, 420, headers=[("Unsupported", ", ".join(unsupported))])
                )
                return
        uri = request.uri
        if uri.scheme not in ("sip", "sips", "tel"):
            self._respond(tx, make_response(request, 416))
            return
        if method == "REGISTER":
            self._register(tx, request, origin)
        elif method == "INVITE" and not request.to_tag:
            self._invite(tx, request, origin, now)
        elif method == "SUBSCRIBE":
            self._subscribe(tx, request, origin, now)
        elif (method in CALL_METHODS and (request.to_tag or method != "REFER")) or (
            method == "OPTIONS" and request.to_tag
        ):
            # A REFER outside a call is for nothing Sentral serves: 405 below.
            self.calls.on_request(tx, request, now)
        elif method == "OPTIONS":
            self._respond(tx, self._options(request))
        elif method in SIP_METHODS:
            self._respond(tx, make_response(request, 405, headers=[("Allow", ", ".join(ALLOW))]))
        else:
            self._respond(tx, make_response(request, 501, headers=[("Allow", ", ".join(ALLOW))]))

    def _options(self, request: Request) -> Response:
        return make_response(
            request,
            200,
            to_tag=local_tag(request),
            headers=[
                ("Allow", ", ".join(ALLOW)),
                ("Accept", "application/sdp"),
                ("Supported", ", ".join(SUPPORTED)),
                ("Server", SERVER_NAME),
            ],
        )

    def _invite(self, tx: ServerTransaction, request: Request, origin: Origin, now: float) -> None:
        """A new call: refused while draining, challenged until authenticated, then call control's."""
        if self.draining:
            self._respond(
                tx,
                make_response(
                    request, 503, to_tag=local_tag(request), headers=[("Retry-After", DRAIN_RETRY_AFTER)]
                ),
            )
            return
        trunks = self.trunks
        line = trunks.for_source(origin.host) if trunks is not None and trunks.configured else None
        if line is not None:
            self._from_trunk(tx, request, origin, line.entry, now)
            return
        if self._stranger_to_public_number(request):
            # A call to a public number from an address that is no trunk's, and not from a member
            # of staff: toll fraud or a misconfigured carrier. Refused at once, and logged.
            security_log.warning("untrusted_call_to_public_number", source=_source_text(*_peer(origin)))
            self._respond(tx, make_response(request, 403, "Forbidden", to_tag=local_tag(request)))
            return
        authenticated = self._authenticate(tx, request, origin, now)
        if authenticated is None:
            return
        clinic, staff = authenticated
        caller = Caller(clinic, staff.extension, staff.name)
        # Only a trusted source (a trunk, the clinic's own network) may ask for emergency priority.
        acute = (request.header("priority") or "").strip().lower() == "emergency" and self.guard.trusts(
            origin.host
        )
        self.calls.on_invite(tx, request, origin, caller, now, acute=acute)

    def _from_trunk(
        self, tx: ServerTransaction, request: Request, origin: Origin, trunk: TrunkEntry, now: float
    ) -> None:
        """A call in from a carrier on ``trunk``: the public number it calls (however the carrier
        writes it) goes where that number leads now (its destination, or when closed its closed-to
        number or the closed message), with the caller's number in E.164."""
        directory = self.directory()
        clinic = directory.clinics.get(trunk.domain)
        users = [request.uri.user_unescaped or ""]
        for name in ("p-called-party-id", "to"):
            value = request.header(name)
            if value:
                with contextlib.suppress(SipError):
                    users.append(parse_name_addr(value).uri.user_unescaped or "")
        number = called(users, clinic.country, directory.public_numbers) if clinic is not None else None
        if clinic is None or number is None or number.domain != clinic.domain:
            log.info("trunk_call_to_unknown_number", trunk=trunk.name, clinic=trunk.domain)
            self._respond(tx, make_response(request, 404, "No Such Number", to_tag=local_tag(request)))
            return
        routed = inbound_route(number, clinic, directory.holidays.get(clinic.domain, frozenset()), time.time())
        identity = request.header("p-asserted-identity") or request.header("from") or ""
        try:
            user = parse_name_addr(identity.split(",", 1)[0]).uri.user_unescaped
        except SipError:
            user = ""
        private = "id" in (request.header("privacy") or "").lower()
        caller_number = "anonymous" if private or not user else caller_e164(user, clinic.country)
        acute = (request.header("priority") or "").strip().lower() == "emergency"
        log.info("trunk_call_in", trunk=trunk.name, clinic=clinic.domain, closed=routed.closed)
        log.debug("trunk_call_in_numbers", caller=caller_number, called=number.number, to=routed.dialled)
        caller = Caller(clinic, caller_number, "", outside=True, trunk=trunk.name)
        caller_id = self.caller_id
        found = caller_id.chain(clinic.domain) if caller_id is not None and caller_number != "anonymous" else None
        if found is None:
            self.calls.on_invite(tx, request, origin, caller, now, acute=acute, dialled=routed.dialled)
            return
        # The clinic's records are asked who calls; the phones ring when they answer, or when
        # the clinic's budget has passed, whichever comes first.
        assert caller_id is not None
        chain, budget = found
        call = self.calls.on_invite(
            tx, request, origin, caller, now, acute=acute, dialled=routed.dialled, hold_until=now + budget
        )
        if call is not None and call.routing is not None:
            caller_id.start(call, chain, caller_number, ask_id=number.ask_id and not routed.closed)

    def _stranger_to_public_number(self, request: Request) -> bool:
        """Whether ``request`` calls one of the server's public numbers from someone who is not a
        member of staff of a clinic here (by its From: a phone of the clinic's is challenged as
        usual, and may call its own clinic's public number)."""
        directory = self.directory()
        if not directory.public_numbers:
            return False
        user = request.uri.user_unescaped or ""
        regions = {clinic.country for clinic in directory.clinics.values()}
        if not any(called([user], region, directory.public_numbers) is not None for region in regions):
            return False
        clinic = self.registrar.addressing(request, directory).realm
        caller = request.from_.uri.user_unescaped or ""
        return clinic is None or directory.staff_for(clinic.domain, caller) is None

    def _authenticate(
        self, tx: ServerTransaction, request: Request, origin: Origin, now: float
    ) -> tuple[ClinicEntry, StaffEntry] | None:
        """Digest-authenticate a request other than REGISTER with the same rules: a 407 carrying one
        Proxy-Authenticate per algorithm offered to the calling phone (``Registrar.offered``),
        failures counted against the source.
        The clinic and the member of staff, or None once the request has been answered."""
        directory = self.directory()
        addressing = self.registrar.addressing(request, directory)
        clinic = addressing.realm
        if clinic is None:
            if addressing.served:
                self._respond(tx, make_response(request, 404, "Unknown Domain", to_tag=local_tag(request)))
            else:
                # Neither from nor for a clinic served here: there is no realm to challenge in,
                # and Sentral relays nothing. 403 at once, as a proxy answers a request it will
                # not relay (Kamailio's stock configuration: "Not relaying").
                self._respond(tx, make_response(request, 403, "Not Relaying", to_tag=local_tag(request)))
            return None
        wall = time.time()
        try:
            outcome, creds = self.registrar.authenticate(
                request, clinic, directory, wall, "proxy-authorization"
            )
        except SipError as exc:
            self._respond(tx, make_response(request, exc.status, exc.reason, to_tag=local_tag(request)))
            return None
        if outcome is AuthOutcome.FAILED:
            self.guard.auth_failed(origin.host, now)
            _log_auth_failed(
                origin,
                request.method,
                creds.username if creds is not None else None,
                self.registrar.failure_reason(creds, clinic, directory),
            )
            self.log_security()
        if outcome is not AuthOutcome.OK:
            values = self.registrar.authority.challenge(
                clinic.domain,
                wall,
                algorithms=self.registrar.offered(request, clinic, directory),
                stale=outcome is AuthOutcome.STALE,
            )
            headers = [("Proxy-Authenticate", value) for value in values]
            self._respond(tx, make_response(request, 407, to_tag=local_tag(request), headers=headers))
            return None
        assert creds is not None
        self.guard.auth_succeeded(origin.host, now)
        staff = directory.staff_for(clinic.domain, creds.username)
        if staff is None:  # removed between the digest check and here
            self._respond(tx, make_response(request, 403, to_tag=local_tag(request)))
            return None
        # Authenticated first, then the Request-URI judged (the order of RFC 3261 §8.2), so that
        # what a domain is served for is told only to the clinic's own staff.
        if not addressing.served:
            # RFC 3261 §8.2.2.1: a Request-URI the server does not accept requests for is 404.
            self._respond(tx, make_response(request, 404, "Domain Not Served", to_tag=local_tag(request)))
            return None
        if addressing.callee is None or addressing.callee.domain != clinic.domain:
            # Another clinic on this server: there is no configuration for calls between
            # clinics yet, so none goes through.
            refused = make_response(request, 403, "Calls Between Clinics Not Served", to_tag=local_tag(request))
            self._respond(tx, refused)
            return None
        return clinic, staff

    def _subscribe(self, tx: ServerTransaction, request: Request, origin: Origin, now: float) -> None:
        """A SUBSCRIBE: a new one is challenged like an INVITE, one inside a subscription's dialog
        (a refresh) is the presence hub's at once, as in-dialog requests of calls are."""
        if request.to_tag:
            self.presence.on_request(tx, request, origin, now)
            return
        authenticated = self._authenticate(tx, request, origin, now)
        if authenticated is not None:
            clinic, staff = authenticated
            self.presence.on_subscribe(tx, request, origin, clinic, staff.extension, now)

    def _register(self, tx: ServerTransaction, request: Request, origin: Origin) -> None:
        wall = time.time()
        try:
            result = self.registrar.register(request, origin, self.directory(), wall)
        except SipError as exc:
            self._respond(tx, make_response(request, exc.status, exc.reason, headers=exc.headers))
            return
        self._account(result, origin, request)
        if not result.upserts and not result.deletes:
            self._respond(tx, result.response)
            return
        future = self.writer.submit(result.upserts, result.deletes)
        future.add_done_callback(lambda f: self._registered(f, tx, request, result))

    def _registered(
        self, future: asyncio.Future[None], tx: ServerTransaction, request: Request, result: RegisterResult
    ) -> None:
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if error is not None:
            log.error("binding_write_failed", error=str(error))
            self._respond(tx, make_response(request, 500, "Server Internal Error"))
            return
        self.location.apply(result.upserts, result.deletes)
        _log_binding_changes(result)
        self._respond(tx, result.response)
        aors = {(row.domain, row.extension) for row in result.upserts}
        aors.update((domain, extension) for domain, extension, _ in result.deletes)
        self._registration_changed(aors)

    def _registration_changed(self, aors: Iterable[tuple[str, str]]) -> None:
        now, wall = time.monotonic(), time.time()
        for domain, extension in aors:
            registered = bool(self.location.bindings((domain, extension), wall))
            self.presence.registration(domain, extension, registered, now)
        self._schedule()

    def bindings_expired(self, rows: Iterable[BindingRow]) -> None:
        """Bindings ran out (``Location.expire``): logged, and watchers of those extensions may see
        them go."""
        expired = list(rows)
        for row in expired:
            log.info("registration_expired", **_binding_fields(row))
        self._registration_changed({(row.domain, row.extension) for row in expired})

    def _account(self, result: RegisterResult, origin: Origin, request: Request) -> None:
        now = time.monotonic()
        if result.auth is AuthOutcome.FAILED:
            self.guard.auth_failed(origin.host, now)
            _log_auth_failed(origin, request.method, result.username, result.reason)
        elif result.auth is AuthOutcome.OK:
            self.guard.auth_succeeded(origin.host, now)
        self.log_security()

    def log_security(self) -> None:
        for event in self.guard.events():
            if event.kind is SecurityEventKind.AUTH_FAILURE:
                continue  # already logged as auth_failed, with the user and transport
            security_log.warning(f"security_{event.kind.value}", remote=event.host, reason=event.reason, count=event.count)

    # -- sending and timers ---------------------------------------------------------------------

    def _respond(self, tx: ServerTransaction, response: Response) -> None:
        try:
            actions = self.layer.respond(tx, response, time.monotonic())
        except TransactionStateError:
            return  # the transaction ended (Timer J or a transport error) before the answer was ready
        self._run(actions, None)

    def _run(self, actions: list[Action], origin: Origin | None) -> None:
        self._depth += 1
        try:
            self._carry_out(actions, origin)
        finally:
            self._depth -= 1
        if not self._depth:
            self._schedule()

    def _carry_out(self, actions: list[Action], origin: Origin | None) -> None:
        now = time.monotonic()
        for action in actions:
            match action:
                case Send():
                    self._send(action)
                case RequestReceived(tx=tx, request=request):
                    assert origin is not None
                    self._origins[tx] = origin
                    self._on_request(tx, request, origin, now)
                case CancelReceived(tx=tx, request=request, invite_tx=invite_tx):
                    assert origin is not None
                    self._origins[tx] = origin
                    self.calls.on_cancel(tx, request, invite_tx, now)
                case TransactionTerminated(tx=tx):
                    if isinstance(tx, ServerTransaction):
                        self._origins.pop(tx, None)
                    else:
                        self._targets.pop(tx, None)
                        self.calls.on_terminated(tx)
                        self.presence.on_terminated(tx)
                case AckReceived(request=request):
                    self.calls.on_ack(request, now)
                case ResponseReceived(tx=tx, response=response):
                    trunks = self.trunks
                    taken = trunks.configured and trunks.on_response(tx, response, now)
                    if not taken and not self.presence.on_response(tx, response, now):
                        self.calls.on_response(tx, response, now)
                    if response.status >= 200:
                        # The transaction now lingers (up to 32 s) to absorb retransmissions,
                        # holding its request and this response: keep them as text only, as
                        # server transactions do, for the collector's sake.
                        tx.request.forget_parsed()
                        response.forget_parsed()
                case StrayResponse(response=response):
                    self.calls.on_stray_response(response, now)
                case TransactionTimeout(tx=tx) | TransportError(tx=tx):
                    trunks = self.trunks
                    taken = trunks.configured and trunks.on_timeout(tx, now)
                    if not taken and not self.presence.on_timeout(tx, now):
                        self.calls.on_timeout(tx, now)

    def _send(self, action: Send) -> None:
        tx = action.tx
        host, port = action.destination
        if isinstance(tx, ServerTransaction):
            origin = self._origins.get(tx)
            if origin is not None:
                target = Target(origin.transport, host, port, origin.local, origin.conn_id)
            else:
                target = Target("udp", host, port)
        else:
            target = self._targets.get(tx) or Target("udp", host, port)
        if self.sip_trace:
            trace_log.debug("sip_out", peer=f"{target.transport}:{host}:{port}", message=_text(action.data))
        # A failure is reported on the next turn of the loop: the sender may still be setting the
        # transaction up (call control files a client transaction after starting it).
        if not self.transports.send(action.data, target) and action.reliable and self._loop is not None:
            self._loop.call_soon(self._transport_failed, tx)

    def _transport_failed(self, tx: ClientTransaction | ServerTransaction) -> None:
        self._run(self.layer.transport_error(tx, time.monotonic()), None)

    # -- the call port ----------------------------------------------------------------------------

    def respond(self, tx: ServerTransaction, response: Response) -> None:
        """Send a response through a server transaction (call control's port)."""
        self._respond(tx, response)

    def send_request(self, request: Request, target: Target) -> ClientTransaction:
        """Start a client transaction towards ``target``."""
        tx, actions = self.layer.send_request(
            request, (target.host, target.port), target.transport != "udp", time.monotonic()
        )
        self._targets[tx] = target
        self._run(actions, None)
        return tx

    def send_ack(self, request: Request, target: Target) -> None:
        """Send an end-to-end ACK (no transaction)."""
        data = request.to_bytes()
        if self.sip_trace:
            trace_log.debug("sip_out", peer=f"{target.transport}:{target.host}:{target.port}", message=_text(data))
        self.transports.send(data, target)

    def cancel(self, tx: ClientTransaction, reason: str = "") -> None:
        """CANCEL an INVITE client transaction (``reason``: its Reason header, if any)."""
        cancel_tx, actions = self.layer.cancel(tx, time.monotonic(), reason)
        if cancel_tx is not None:
            target = self._targets.get(tx)
            if target is not None:
                self._targets[cancel_tx] = target
        self._run(actions, None)

    def local_address(self, target: Target) -> tuple[str, int]:
        """Our address as ``target`` reaches it: the listener's, or for a wildcard listener the
        source address the kernel picks towards the peer."""
        listen = target.local
        if listen is None:
            listen = next((b for b in self.transports.bound if b.transport == target.transport), None)
        if listen is None:
            return target.host, 5060
        host = listen.host
        if host in WILDCARD_HOSTS:
            key = (listen.host, target.host)
            host = self._local_hosts.get(key) or ""
            if not host:
                host = self._local_hosts[key] = _source_address(target.host)
        return host, listen.port

    def feature(self, call: Call, feature: Feature) -> None:
        """Carry out a feature code (logging in and out) off the event loop, then answer the call."""
        if self.on_feature is None:
            self.calls.feature_failed(call.id, 501, "Not Implemented", time.monotonic())
            return
        future = self.on_feature(call, feature)
        call_id = call.id

        def done(outcome: asyncio.Future[str]) -> None:
            now = time.monotonic()
            error = None if outcome.cancelled() else outcome.exception()
            if outcome.cancelled() or error is not None:
                # A StoreError is the member's mistake (not a member of any function): 403.
                status, reason = (403, "Forbidden") if isinstance(error, StoreError) else (500, "Server Error")
                log.info("feature_refused", call=call_id, code=feature.code.value, error=str(error))
                self.calls.feature_failed(call_id, status, reason, now)
            else:
                log.info("feature_done", call=call_id, code=feature.code.value, outcome=outcome.result())
                self.calls.feature_done(call_id, outcome.result(), now)
                self.calls.members_changed(now)
                self.presence.directory_changed(now)
            self._schedule()

        future.add_done_callback(done)

    def digit(self, call_id: str, leg_id: str, digit: Digit) -> None:
        """A key pressed on a phone, as the media relay heard it (RFC 4733): call control's, and
        the timers it may have set (a prompt waiting for the next key)."""
        self.calls.digit(call_id, leg_id, digit, time.monotonic())
        self._schedule()

    def click_to_call(self, domain: str, extension: str, number: str) -> str:
        """Ring ``extension``'s phones, then connect the one that answers to ``number`` (the
        ``click`` feature): the call's id. Raises ClickRefused with the status and a sentence."""
        call = self.clicks.call(domain, extension, number, time.monotonic())
        self._schedule()
        log.info("click_to_call", call=call.id, clinic=domain, extension=extension)
        return call.id

    def members_changed(self) -> None:
        """Staff logged in or out, or registered: calls waiting in a queue may ring now."""
        self.calls.members_changed(time.monotonic())
        self._schedule()

    def trunks_changed(self) -> None:
        """The directory changed (or the server is ready): bring the trunks in line with it."""
        self.trunks.reconfigure(time.monotonic())
        self._schedule()

    def trunk_resolved(self, name: str, addresses: list[str] | None) -> None:
        """A trunk's host ``name`` resolved to ``addresses`` (None: it did not)."""
        self.trunks.resolved(name, addresses, time.monotonic())
        self._schedule()

    def stop_trunks(self) -> None:
        """The server stops: deregister the trunks that are registered."""
        self.trunks.stop(time.monotonic())
        self._schedule()

    def hang_up_all(self) -> None:
        """End every call in progress (the end of a drain)."""
        self.calls.hang_up_all(time.monotonic())
        self._schedule()

    def record(self, report: CallReport, reply: tuple[ServerTransaction, Response] | None = None) -> None:
        """A call ended: log it, hand its record on, and send ``reply`` once the record is stored."""
        directory = self.directory()
        answered_by = report.answered_by
        log.info(
            "call_ended",
            call=report.call_id,
            caller=_party(directory, report.clinic, report.caller),
            callee=_party(directory, report.clinic, report.callee),
            answered_by=_party(directory, report.clinic, answered_by) if answered_by else None,
            duration=round(report.ended - report.answered, 1) if report.answered is not None else 0.0,
            status=report.status,
            hangup_by=report.hangup_by,
            cause=report.cause,
        )
        # A number from outside the clinic is a patient's: in full only at DEBUG.
        log.debug("call_ended_parties", call=report.call_id, caller=report.caller, callee=report.callee)
        if self.caller_id is not None:
            self.caller_id.forget(report.call_id)
        stored = self.on_record(report) if self.on_record is not None else None
        if reply is None:
            return
        tx, response = reply
        if stored is None:
            self.respond(tx, response)
            return
        # The call is over whether or not its record could be stored: the BYE is answered either way.
        stored.add_done_callback(lambda _: self.respond(tx, response))

    def _schedule(self) -> None:
        deadline = self.layer.next_deadline()
        calls_deadline = self.calls.next_deadline()
        if deadline is None or (calls_deadline is not None and calls_deadline < deadline):
            deadline = calls_deadline
        presence_deadline = self.presence.next_deadline()
        if deadline is None or (presence_deadline is not None and presence_deadline < deadline):
            deadline = presence_deadline
        if self.trunks.configured:
            trunks_deadline = self.trunks.next_deadline()
            if deadline is None or (trunks_deadline is not None and trunks_deadline < deadline):
                deadline = trunks_deadline
        if deadline is None:
            return
        # The end of the tick the deadline falls in (see the module docstring).
        deadline = max(deadline, math.ceil(deadline * _TICKS_PER_SECOND) / _TICKS_PER_SECOND)
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        loop = self._loop
        if loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        delay = max(0.0, deadline - time.monotonic())
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = time.monotonic()
        self._run(self.layer.on_timer(now), None)
        self.calls.on_timer(now)
        self.presence.on_timer(now)
        if self.trunks.configured:
            self.trunks.on_timer(now)
        self._schedule()

    # -- stateless answers ----------------------------------------------------------------------

    def _reject_unparsed(self, error: SipError, fields: list[Field] | None, origin: Origin) -> None:
        """Answer a request that cannot enter a transaction, if it says where to answer."""
        log.info("bad_request", peer=origin.host, status=error.status, reason=error.reason)
        if not fields:
            return
        kept = error_response_fields(fields)
        if not any(k == "via" for k, _, _ in kept):
            return
        response = Response(error.status, error.reason, kept)
        for name, value in error.headers:
            response.fields.append((name.lower(), name, value))
        try:
            via = response.top_via
        except SipError:
            return
        self._send_stateless(response, via, origin)

    def _send_stateless(self, response: Response, via: Via, origin: Origin) -> None:
        """Send a response outside any transaction where ``via`` and ``origin`` say (RFC 3261
        §18.2.2, RFC 3581), through the listener or connection the request came on."""
        host, port = response_destination(via, _peer(origin), origin.reliable)
        self.transports.send(response.to_bytes(), Target(origin.transport, host, port, origin.local, origin.conn_id))


def _log_auth_failed(origin: Origin, method: str, user: str | None, reason: str | None) -> None:
    """A phone failed its digest challenge: a warning in the main log (and fail2ban's line)."""
    security_log.warning(
        "auth_failed",
        remote=origin.host,
        port=origin.port,
        transport=origin.transport,
        method=method,
        user=user,
        reason=reason,
    )


def _source_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _binding_fields(row: BindingRow) -> dict[str, object]:
    """What the log says of a binding: whose it is, where the phone is and what it is."""
    return {
        "extension": row.extension,
        "domain": row.domain,
        "transport": row.transport,
        "source": _source_text(row.source_host, row.source_port),
        "contact": row.contact,
        "user_agent": row.user_agent,
    }


def _log_binding_changes(result: RegisterResult) -> None:
    """One line per binding a REGISTER changed: new, moved and removed ones at INFO, a refresh
    that changed nothing but the expiry at DEBUG (phones refresh often, thousands of them)."""
    previous = result.previous
    for row in result.upserts:
        expires = max(0, round(row.expires_at - row.updated_at))
        before = previous.get(row.key)
        if before is None:
            log.info("registered", expires=expires, **_binding_fields(row))
        elif (before.transport, before.source_host, before.source_port, before.contact, before.local_listen) != (
            row.transport, row.source_host, row.source_port, row.contact, row.local_listen
        ):  # fmt: skip
            log.info(
                "registration_moved",
                expires=expires,
                previous_transport=before.transport,
                previous_source=_source_text(before.source_host, before.source_port),
                **_binding_fields(row),
            )
        else:
            log.debug("registration_refreshed", expires=expires, **_binding_fields(row))
    for domain, extension, key in result.deletes:
        before = previous.get(key)
        if before is not None:
            log.info("unregistered", **_binding_fields(before))
        else:
            log.info("unregistered", extension=extension, domain=domain, contact=key)


def _party(directory: Directory, domain: str, number: str) -> str:
    """``number`` as the INFO log may show it: a number of the clinic's own (a member of staff, a
    group, function or role, a park slot) in full, any other (a patient's, from outside) masked
    but its last two digits."""
    if directory.staff_for(domain, number) is not None or (domain.lower(), number) in directory.numbers:
        return number
    return "x" * (len(number) - 2) + number[-2:] if len(number) > 2 else "x" * len(number)


def _peer(origin: Origin) -> tuple[str, int]:
    return (origin.host, origin.port)


def _source_address(peer: str) -> str:
    """The local address the kernel would send from towards ``peer`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in peer else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((peer, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1" if family == socket.AF_INET else "::1"


def _text(data: bytes) -> str:
    """A message as the SIP trace shows it (digest responses hidden)."""
    return sip_trace_text(data)

"""Trunks to carriers: registration with digest, OPTIONS keepalive and health.

Theory of operation
-------------------
Each trunk of the directory is a ``TrunkLine``. A trunk that registers sends REGISTER to its
carrier (To and From ``sip:USERNAME@HOST``, a Contact at our address, Expires 3600 asked) and
answers the carrier's digest challenge, 401 with WWW-Authenticate or 407 with Proxy-Authenticate,
with the strongest algorithm offered (``sentral.pbx.sip.auth``). A second challenge with a nonce
already answered, and not marked ``stale=true``, means the carrier refused the password: the
registration has failed, and the trunk shows FAILED with the carrier's status. A registration
is refreshed at half the time the carrier granted; a failure (a final error, no answer, a
challenge that cannot be answered) is retried after 30 s, then 60 s, doubling up to 10 minutes.

Every trunk, registering or trusted by address, is sent OPTIONS every 30 s. Three failures in
a row (no answer, 408 or 5xx), counting those of calls sent to it (``call_failed``), mark it
DOWN, and routing skips it; any other answer brings it back. A removed or disabled trunk, and
every trunk when the server stops, is deregistered with Expires 0.

Requests only ever go to addresses: a trunk whose host is a name waits until the name is
resolved, which the server does off the event loop (``names_to_resolve`` and ``resolved``), so
a carrier whose name does not resolve only leaves its trunk FAILED, never the loop waiting. The
resolved addresses, and the trunk's extra ``addresses`` (IPs or networks), are what
``for_source`` recognises an inbound request by.

``Trunks`` is IO-free like call control: it acts through a ``TrunksPort`` (the endpoint), is
handed the responses and timeouts of the requests it sent and the clock (``next_deadline`` and
``on_timer``), and is told when the directory changed (``reconfigure``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import structlog

from sentral.config.directory import Directory, TrunkEntry
from sentral.config.store import TrunkState
from sentral.pbx.sip import entropy
from sentral.pbx.sip.auth import Challenge, authorization, choose_challenge, parse_challenge
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, Response
from sentral.pbx.sip.transaction import ClientTransaction, ServerTransaction, hostport, local_via
from sentral.pbx.transport import Target

log = structlog.get_logger("sentral.trunks")

REGISTER_EXPIRES = 3600  # asked for; the carrier grants what it will
KEEPALIVE = 30.0  # seconds between OPTIONS to a trunk
DOWN_AFTER = 3  # failures in a row that mark a trunk down
FIRST_BACKOFF = 30.0
MAX_BACKOFF = 600.0
MIN_REFRESH = 1.0  # never refresh sooner than this, whatever a carrier grants
MAX_CHALLENGES = 3  # challenges answered in one registration attempt before it counts as failed
RESOLVE_EVERY = 300.0  # how long a resolved host name is trusted
RESOLVE_RETRY = 30.0  # when a name that did not resolve is tried again
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
# Sources already asked about (``Trunks.for_source``), kept until the trunks change or this many:
# every request a phone sends asks, and parsing its address each time costs more than the rest.
SOURCE_MEMO = 4096


class LineState(Enum):
    """What a trunk is doing, as ``sentral trunk list`` shows it."""

    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    UP = "up"
    DOWN = "down"
    UNREGISTERED = "unregistered"


class TrunksPort(Protocol):
    """The IO trunks need; the endpoint implements it, protocol tests fake it."""

    def send_request(self, request: Request, target: Target) -> ClientTransaction:
        """Start a client transaction for ``request`` towards ``target``."""

    def local_address(self, target: Target) -> tuple[str, int]:
        """The host and port we are reached at by ``target`` (for Via and Contact)."""


class _Kind(Enum):
    REGISTER = "register"
    UNREGISTER = "unregister"
    OPTIONS = "options"


@dataclass(slots=True)
class _Pending:
    line: TrunkLine
    kind: _Kind
    request: Request
    target: Target
    sent: float = 0.0  # when an OPTIONS went: an answer to one sent before the trunk went down
    # says nothing of whether it is back


def _is_failure(status: int | None) -> bool:
    """What counts against a trunk's health: no answer, 408 or a server error."""
    return status is None or status == 408 or status >= 500



def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _same_host(a: str, b: str) -> bool:
    return (_address(a) or a.lower()) == (_address(b) or b.lower())


def _address(text: str) -> str | None:
    """``text`` as a normalised IP address, or None when it is a name."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


class TrunkLine:
    """One trunk: its registration and its health."""

    def __init__(self, entry: TrunkEntry, now: float) -> None:
        self.entry = entry
        self.last_status: int | None = None
        self.detail: str | None = None
        self.calls = 0  # calls in progress on this trunk
        # The host's addresses: the host itself when it is an address, else once resolved.
        address = _address(entry.host)
        self.addresses: tuple[str, ...] = (address,) if address is not None else ()
        self._registration = LineState.REGISTERING if entry.register else LineState.UP
        self._down = False
        self._down_at = 0.0
        self._failures = 0  # failures in a row (keepalive and calls)
        self._registered_until = 0.0
        self._backoff = FIRST_BACKOFF
        self._call_id = f"{entropy.token_hex(12)}@sentral"
        self._from_tag = entropy.token_hex(6)
        self._cseq = 0
        self._answered: set[str] = set()  # nonces answered in this registration attempt
        self._challenges: dict[str, Challenge] = {}  # header name -> challenge to answer
        self._nc: dict[str, int] = {}  # header name -> nonce count used with its challenge
        # Deadlines: the next REGISTER and the next OPTIONS (None: none due, or one in flight).
        self._register_at: float | None = now if entry.register and entry.enabled else None
        self._options_at: float | None = now if entry.enabled else None
        self._expires = REGISTER_EXPIRES

    @property
    def key(self) -> tuple[str, str]:
        """The trunk's (clinic domain, name)."""
        return (self.entry.domain, self.entry.name)

    @property
    def state(self) -> LineState:
        """Registered, registering, failed, up, down, or unregistered (disabled or removed)."""
        if not self.entry.enabled:
            return LineState.UNREGISTERED
        if self._down:
            return LineState.DOWN
        return self._registration

    def usable(self, now: float) -> bool:
        """True when calls may go out on this trunk: not down, its address known, and registered
        if it registers."""
        if not self.entry.enabled or self._down or not self.addresses:
            return False
        if self.entry.register:
            return self._registration is LineState.REGISTERED and now < self._registered_until
        return True

    # -- health -----------------------------------------------------------------------------------

    def call_failed(self, status: int | None, now: float) -> None:
        """A call sent to this trunk failed with ``status`` (None: no answer at all)."""
        if _is_failure(status):
            self._failed_once(status, "calls fail", now)
        else:
            # Busy, not found and the like: the carrier is there, and answering.
            self._answered_once()

    def call_answered(self, now: float) -> None:
        """A call sent to this trunk was answered: it works."""
        self._answered_once()

    def _failed_once(self, status: int | None, why: str, now: float = 0.0) -> None:
        self._failures += 1
        if self._failures >= DOWN_AFTER and not self._down:
            self._down = True
            self._down_at = now
            log.warning("trunk_down", clinic=self.entry.domain, trunk=self.entry.name, status=status, why=why)

    def _answered_once(self) -> None:
        self._failures = 0
        if self._down:
            self._down = False
            log.info("trunk_up", clinic=self.entry.domain, trunk=self.entry.name)

    # -- timers -----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When this trunk next has something to send, or None."""
        if not self.addresses:
            return None
        due = [at for at in (self._register_at, self._options_at) if at is not None]
        return min(due) if due else None

    def state_row(self) -> TrunkState:
        """This trunk as the server publishes it."""
        return TrunkState(
            self.entry.domain, self.entry.name, self.state.value, self.last_status, self.detail, self.calls
        )

    # -- registration -----------------------------------------------------------------------------

    def _registered(self, response: Response, contact_user: str, local: tuple[str, int], now: float) -> None:
        granted = self._granted(response, contact_user, local)
        if granted <= 0:
            self._registration_failed(response.status, "the carrier granted no time", now)
            return
        was = self._registration
        self._registration = LineState.REGISTERED
        self.last_status = response.status
        self.detail = None
        self._registered_until = now + granted
        self._backoff = FIRST_BACKOFF
        # Half the time: a lost refresh still leaves time for the retransmissions of another.
        self._register_at = now + max(MIN_REFRESH, granted / 2)
        if was is not LineState.REGISTERED:
            log.info("trunk_registered", clinic=self.entry.domain, trunk=self.entry.name, expires=granted)
        else:
            log.debug("trunk_refreshed", clinic=self.entry.domain, trunk=self.entry.name, expires=granted)

    def _granted(self, response: Response, contact_user: str, local: tuple[str, int]) -> int:
        """The registration time the carrier granted to our Contact (RFC 3261 §10.2.4)."""
        try:
            contacts = response.contacts
        except SipError:
            contacts = []
        host, port = local
        for contact in contacts:
            uri = contact.uri
            if uri.user == contact_user and _same_host(uri.host, host) and (uri.port or 5060) == port:
                value = contact.param("expires")
                if value is not None and value.isdigit():
                    return int(value)
        try:
            expires = response.expires
        except SipError:
            expires = None
        return self._expires if expires is None else expires

    def _registration_failed(self, status: int | None, detail: str, now: float) -> None:
        self._registration = LineState.FAILED
        self.last_status = status
        self.detail = detail
        self._registered_until = 0.0
        self._register_at = now + self._backoff
        log.warning(
            "trunk_registration_failed",
            clinic=self.entry.domain,
            trunk=self.entry.name,
            status=status,
            detail=detail,
            retry_in=self._backoff,
        )
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)


class Trunks:
    """Every trunk of the server, driven by the endpoint."""

    def __init__(self, port: TrunksPort, directory: Callable[[], Directory]) -> None:
        self.port = port
        self.directory = directory
        self._lines: dict[tuple[str, str], TrunkLine] = {}
        self._by_domain: dict[str, list[TrunkLine]] = {}
        self._pending: dict[ClientTransaction, _Pending] = {}
        self._sources: dict[str, TrunkLine] = {}
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, TrunkLine]] = []
        self._asked: dict[str, TrunkLine | None] = {}
        # Host names: their addresses, when they were resolved (or last failed), and whether a
        # resolution is under way.
        self._names: dict[str, tuple[tuple[str, ...], float]] = {}
        self._resolving: set[str] = set()
        # Whether a trunk has been configured since the start: until then the endpoint does not
        # ask the trunks about each message, response and timer, so that a clinic without trunks
        # pays no call for the answer. It stays set once a trunk was there, since a removed
        # trunk's deregistration may still be under way.
        self.configured = False

    # -- configuration ----------------------------------------------------------------------------

    def reconfigure(self, now: float) -> None:
        """The directory changed: add new trunks, drop (and deregister) removed ones, update the rest."""
        wanted = {
            (entry.domain, entry.name): entry
            for entries in self.directory().trunks.values()
            for entry in entries
        }
        for key, line in list(self._lines.items()):
            entry = wanted.get(key)
            if entry is None:
                del self._lines[key]
                self._unregister(line, now)
            elif entry != line.entry:
                if _same_registration(line.entry, entry):
                    line.entry = entry  # priority, number format, source addresses: no new registration
                else:
                    self._unregister(line, now)
                    self._lines[key] = self._new_line(entry, now)
        for key, entry in wanted.items():
            if key not in self._lines:
                self._lines[key] = self._new_line(entry, now)
        if self._lines:
            self.configured = True
        self._index()

    def _new_line(self, entry: TrunkEntry, now: float) -> TrunkLine:
        line = TrunkLine(entry, now)
        known = self._names.get(entry.host)
        if not line.addresses and known is not None and known[0]:
            line.addresses = known[0]
        return line

    def _index(self) -> None:
        by_domain: dict[str, list[TrunkLine]] = {}
        for line in self._lines.values():
            by_domain.setdefault(line.entry.domain, []).append(line)
        for lines in by_domain.values():
            lines.sort(key=lambda line: (line.entry.priority, line.entry.name))
        self._by_domain = by_domain
        sources: dict[str, TrunkLine] = {}
        networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, TrunkLine]] = []
        for domain in sorted(by_domain):
            for line in by_domain[domain]:
                if not line.entry.enabled:
                    continue
                for address in line.addresses:
                    sources.setdefault(address, line)
                for text in line.entry.addresses:
                    try:
                        network = ipaddress.ip_network(text, strict=False)
                    except ValueError:
                        continue  # the store validates these; a bad one must not stop the others
                    if network.num_addresses == 1:
                        sources.setdefault(str(network.network_address), line)
                    else:
                        networks.append((network, line))
        self._sources = sources
        self._networks = networks
        self._asked = {}

    def lines(self, domain: str) -> list[TrunkLine]:
        """The trunks of clinic ``domain`` in (priority, name) order."""
        return list(self._by_domain.get(domain.lower(), ()))

    def line(self, domain: str, name: str) -> TrunkLine | None:
        """The trunk called ``name`` of clinic ``domain``, if any."""
        return self._lines.get((domain.lower(), name))

    def for_source(self, host: str) -> TrunkLine | None:
        """The trunk a request from address ``host`` came from, if it came from one."""
        found = self._sources.get(host)  # an address as the transports write it: the usual case
        if found is not None or not (self._sources or self._networks):
            return found
        asked = self._asked
        if host in asked:
            return asked[host]
        if len(asked) >= SOURCE_MEMO:
            asked.clear()
        found = asked[host] = self._match(host)
        return found

    def _match(self, host: str) -> TrunkLine | None:
        """The trunk whose addresses or networks hold ``host`` written in any form."""
        address = _address(host)
        if address is None:
            return None
        found = self._sources.get(address)
        if found is not None or not self._networks:
            return found
        ip = ipaddress.ip_address(address)
        for network, line in self._networks:
            if ip.version == network.version and ip in network:
                return line
        return None

    def target(self, line: TrunkLine) -> Target:
        """Where requests to ``line`` go: its (first) address and port, over its transport."""
        host = line.addresses[0] if line.addresses else line.entry.host
        return Target(line.entry.transport, host, line.entry.port)

    def states(self) -> list[TrunkState]:
        """Every trunk's state, by clinic and then (priority, name), for publishing."""
        return [line.state_row() for domain in sorted(self._by_domain) for line in self._by_domain[domain]]

    # -- host names -------------------------------------------------------------------------------

    def names_to_resolve(self, now: float) -> list[str]:
        """Host names of trunks that need resolving now; they count as under way until ``resolved``."""
        due = []
        for line in self._lines.values():
            name = line.entry.host
            if not line.entry.enabled or _address(name) is not None or name in self._resolving or name in due:
                continue
            known = self._names.get(name)
            if known is None or now - known[1] >= (RESOLVE_EVERY if known[0] else RESOLVE_RETRY):
                due.append(name)
        self._resolving.update(due)
        return due

    def resolved(self, name: str, addresses: Sequence[str] | None, now: float) -> None:
        """``name`` resolved to ``addresses`` (None or empty: it did not resolve)."""
        self._resolving.discard(name)
        found = tuple(dict.fromkeys(a for a in (_address(text) for text in addresses or ()) if a is not None))
        known = self._names.get(name)
        if not found and known is not None and known[0]:
            # Keep the last good addresses through a passing DNS failure; ask again soon.
            self._names[name] = (known[0], now - RESOLVE_EVERY + RESOLVE_RETRY)
            return
        self._names[name] = (found, now)
        for line in self._lines.values():
            if line.entry.host != name:
                continue
            if found:
                had = bool(line.addresses)
                line.addresses = found
                if not had and line.detail == "host name does not resolve":
                    line.detail = None
            elif line.entry.enabled and not line.addresses:
                line.detail = "host name does not resolve"
                log.warning(
                    "trunk_host_unresolved", clinic=line.entry.domain, trunk=line.entry.name, host=name
                )
                if line.entry.register:
                    line._registration = LineState.FAILED
                elif not line._down:
                    # Nothing can reach it: down until its name resolves and it answers OPTIONS.
                    line._down = True
                    log.warning(
                        "trunk_down", clinic=line.entry.domain, trunk=line.entry.name, why=line.detail
                    )
        self._index()

    # -- timers -----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``on_timer`` next has work, or None."""
        if not self._lines:
            return None  # asked after every message: a clinic without trunks pays nothing
        deadlines = [at for at in (line.next_deadline() for line in self._lines.values()) if at is not None]
        return min(deadlines) if deadlines else None

    def on_timer(self, now: float) -> None:
        """Send the REGISTERs and OPTIONS that are due."""
        for line in list(self._lines.values()):
            if not line.addresses or not line.entry.enabled:
                continue
            if line._register_at is not None and line._register_at <= now:
                line._register_at = None
                line._answered.clear()
                line._challenges.clear()
                self._send_register(line, _Kind.REGISTER)
            if line._options_at is not None and line._options_at <= now:
                line._options_at = None
                self._send_options(line, now)

    # -- requests ---------------------------------------------------------------------------------

    def _send_register(self, line: TrunkLine, kind: _Kind) -> None:
        entry = line.entry
        target = self.target(line)
        local = self.port.local_address(target)
        user = entry.username or ""
        line._cseq += 1
        expires = 0 if kind is _Kind.UNREGISTER else line._expires
        transport_param = "" if entry.transport == "udp" else f";transport={entry.transport}"
        default = DEFAULT_PORTS.get(entry.transport, 5060)
        port = "" if entry.port == default else f":{entry.port}"
        uri = f"sip:{_host(entry.host)}{port}{transport_param}"
        aor = f"<sip:{user}@{_host(entry.host)}>"
        headers = [
            ("Via", local_via(entry.transport, local)),
            ("Max-Forwards", "70"),
            ("From", f"{aor};tag={line._from_tag}"),
            ("To", aor),
            ("Call-ID", line._call_id),
            ("CSeq", f"{line._cseq} REGISTER"),
            ("Contact", f"<sip:{user}@{hostport(*local)}{transport_param}>"),
            ("Expires", str(expires)),
            ("User-Agent", "Sentral"),
        ]
        for name, challenge in line._challenges.items():
            nc = line._nc[name] = line._nc.get(name, 0) + 1
            value = authorization(
                challenge, "REGISTER", uri, user, entry.password or "", cnonce=entropy.token_hex(8), nc=nc
            )
            headers.append((name, value))
        request = Request.build("REGISTER", uri, headers)
        tx = self.port.send_request(request, target)
        self._pending[tx] = _Pending(line, kind, request, target)

    def _send_options(self, line: TrunkLine, now: float) -> None:
        entry = line.entry
        target = self.target(line)
        local = self.port.local_address(target)
        uri = f"sip:{hostport(entry.host, entry.port)}"
        request = Request.build(
            "OPTIONS",
            uri,
            [
                ("Via", local_via(entry.transport, local)),
                ("Max-Forwards", "70"),
                ("From", f"<sip:sentral@{hostport(*local)}>;tag={entropy.token_hex(6)}"),
                ("To", f"<{uri}>"),
                ("Call-ID", f"{entropy.token_hex(12)}@sentral"),
                ("CSeq", "1 OPTIONS"),
                ("User-Agent", "Sentral"),
            ],
        )
        tx = self.port.send_request(request, target)
        self._pending[tx] = _Pending(line, _Kind.OPTIONS, request, target, now)

    def _unregister(self, line: TrunkLine, now: float) -> None:
        """Deregister ``line`` if it is registered; it then takes no more part in anything else."""
        line._register_at = None
        line._options_at = None
        if line.entry.register and line._registration is LineState.REGISTERED and line.addresses:
            line._answered.clear()
            self._send_register(line, _Kind.UNREGISTER)
        line._registration = LineState.UNREGISTERED
        line._down = False

    def stop(self, now: float) -> None:
        """The server stops: deregister every registered trunk and send nothing more."""
        for line in self._lines.values():
            self._unregister(line, now)
        self._lines.clear()
        self._index()

    @property
    def leaving(self) -> int:
        """Deregistrations still waiting for the carrier's answer."""
        return sum(1 for pending in self._pending.values() if pending.kind is _Kind.UNREGISTER)

    # -- answers ----------------------------------------------------------------------------------

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> bool:
        """A response to a request we may have sent; False when it is not one of ours."""
        pending = self._pending.get(tx)
        if pending is None:
            return False
        if response.status < 200:
            return True
        del self._pending[tx]
        line = pending.line
        match pending.kind:
            case _Kind.OPTIONS:
                if self._current(line):
                    self._keepalive_answered(line, response.status, now, pending.sent)
            case _Kind.REGISTER:
                if self._current(line):
                    self._register_answered(pending, response, now)
            case _Kind.UNREGISTER:
                if (
                    response.status in (401, 407)
                    and len(line._answered) < MAX_CHALLENGES
                    and self._challenged(line, response)
                ):
                    self._send_register(line, _Kind.UNREGISTER)
        return True

    def on_timeout(self, tx: ClientTransaction | ServerTransaction, now: float) -> bool:
        """Timer F fired, or the transport failed, for a transaction; False when not ours."""
        if isinstance(tx, ServerTransaction):
            return False
        pending = self._pending.pop(tx, None)
        if pending is None:
            return False
        line = pending.line
        if not self._current(line):
            return True
        match pending.kind:
            case _Kind.OPTIONS:
                self._keepalive_answered(line, None, now, pending.sent)
            case _Kind.REGISTER:
                line._registration_failed(None, "no answer from the carrier", now)
            case _Kind.UNREGISTER:
                pass
        return True

    def _current(self, line: TrunkLine) -> bool:
        """True while ``line`` is still one of the server's trunks (not removed or replaced)."""
        return self._lines.get(line.key) is line and line.entry.enabled

    def _keepalive_answered(self, line: TrunkLine, status: int | None, now: float, sent: float) -> None:
        line._options_at = now + KEEPALIVE
        if _is_failure(status):
            line._failed_once(
                status, "no answer to OPTIONS" if status is None else f"OPTIONS answered {status}", now
            )
        elif not line._down or sent >= line._down_at:
            line._answered_once()

    def _register_answered(self, pending: _Pending, response: Response, now: float) -> None:
        line = pending.line
        status = response.status
        if 200 <= status < 300:
            local = self.port.local_address(pending.target)
            line._registered(response, line.entry.username or "", local, now)
            line._answered.clear()
            return
        if status in (401, 407):
            if not line.entry.username or line.entry.password is None:
                line._registration_failed(
                    status, "the carrier asks for a password and the trunk has none", now
                )
            elif len(line._answered) >= MAX_CHALLENGES:
                line._registration_failed(status, "the carrier keeps challenging", now)
            elif not self._challenged(line, response):
                line._registration_failed(status, "the carrier's password was refused", now)
            else:
                self._send_register(line, _Kind.REGISTER)
            return
        if status == 423:
            try:
                minimum = response.int_header("Min-Expires")
            except SipError:
                minimum = None
            if minimum is not None and line._expires < minimum <= 86400:
                line._expires = minimum
                self._send_register(line, _Kind.REGISTER)
                return
        line._registration_failed(status, response.reason or "refused", now)

    def _challenged(self, line: TrunkLine, response: Response) -> bool:
        """Take the challenge of ``response`` for the next attempt; False when it cannot or
        must not be answered (nothing we support, or a nonce we answered already and not stale)."""
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        credentials = "Authorization" if response.status == 401 else "Proxy-Authorization"
        values = response.header_lines(header)
        realm = line.entry.realm
        if realm is not None:
            values = [value for value in values if _realm_of(value) == realm]
        challenge = choose_challenge(values)
        if challenge is None:
            return False
        if challenge.nonce in line._answered and not challenge.stale:
            return False
        line._answered.add(challenge.nonce)
        line._challenges[credentials] = challenge
        line._nc[credentials] = 0
        return True


def _realm_of(value: str) -> str | None:
    try:
        return parse_challenge(value).realm
    except SipError:
        return None


def _same_registration(old: TrunkEntry, new: TrunkEntry) -> bool:
    """True when ``new`` keeps what a registration depends on, so it need not start over."""
    return (
        old.host,
        old.port,
        old.transport,
        old.register,
        old.username,
        old.password,
        old.realm,
        old.enabled,
    ) == (
        new.host,
        new.port,
        new.transport,
        new.register,
        new.username,
        new.password,
        new.realm,
        new.enabled,
    )



__all__ = ["KEEPALIVE", "REGISTER_EXPIRES", "LineState", "TrunkLine", "Trunks", "TrunksPort"]

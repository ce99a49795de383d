"""Transports: the UDP, TCP and TLS sockets Sentral listens on (RFC 3261 §18).

Theory of operation: ``Transports`` owns every listening socket and stream connection. Each
complete message is handed, as bytes with an ``Origin``, to one callback; what is sent goes out
through ``send`` with a ``Target``. Nothing here parses SIP beyond stream framing.

UDP reads with ``recvfrom_into`` into one preallocated buffer and drains the socket in a loop
on each wake-up. CPython's datagram transport instead allocates a fresh 256 KiB buffer for every
datagram, which costs more than parsing the SIP message in it; the reader here copies only the
bytes received. Sends go straight to ``sendto`` on the socket the peer knows us by, so a phone
behind NAT sees responses from the address and port it sent to.

TCP and TLS use asyncio protocols. Each connection has a ``StreamFramer``; broken framing closes
the connection (the stream can no longer be trusted to be in step). A double CRLF keep-alive is
answered with a single CRLF (RFC 5626 §4.4.1). Connections idle longer than ``idle_timeout`` are
closed. Responses to a request that came over a stream go back over the same connection
(RFC 3261 §18.2.2); a connection is found by its id or by the peer's address.

Overload shows first as a queue in the UDP sockets: once answers wait in it for as long as T1,
phones and trunks retransmit, and the retransmissions deepen the queue until hardly any call
completes. So each listener reads its receive queue's size from the kernel now and
then, and ``Transports.overloaded`` (with ``on_backlog`` told of every change) says whether one of
them is too deep; the endpoint then refuses new calls so that those in progress complete. Streams
need no such reading: TCP's own flow control holds the sender back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol, cast

import structlog

from sentral.config.settings import Listen
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import StreamFramer

log = structlog.get_logger("sentral.transport")

UDP_BUFFER = 65_535
UDP_DRAIN_BATCH = 256
CONNECT_TIMEOUT = 5.0  # how long a connection Sentral opens (to a carrier) may take to come up
SOCKET_BUFFER = 4 * 1024 * 1024

# Overload. What waits in a UDP socket's receive queue is read from the kernel (SO_MEMINFO, in its
# own accounting: about 1,280 bytes per datagram of a SIP message's size) at most every
# BACKLOG_CHECK seconds, before the next datagram is taken from it. Past BACKLOG_HIGH of the receive
# buffer (3 MiB of the usual 8: some 2,400 messages, about 200 ms of work at full load, well
# before T1 makes phones retransmit) the socket is too deep until it is back under BACKLOG_LOW.
BACKLOG_HIGH = 3 / 8
BACKLOG_LOW = 1 / 16
BACKLOG_CHECK = 0.01
_SO_MEMINFO = 55 if sys.platform.startswith("linux") else 0  # Linux 4.6 and later
_MEMINFO_SIZE = 36  # nine 32-bit counters; the first is the receive queue's


@dataclass(slots=True, init=False, unsafe_hash=True)
class Origin:
    """Where a message came from: transport, the peer's address, the listener, the connection."""

    transport: str
    host: str
    port: int
    local: Listen
    conn_id: int = 0

    def __init__(self, transport: str, host: str, port: int, local: Listen, conn_id: int = 0) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.local = local
        self.conn_id = conn_id

    @property
    def reliable(self) -> bool:
        """True for stream transports, where SIP does not retransmit."""
        return self.transport != "udp"


@dataclass(slots=True, init=False, unsafe_hash=True)
class Target:
    """Where to send: transport and address, and the listener or connection to send through."""

    transport: str
    host: str
    port: int
    local: Listen | None = None
    conn_id: int = 0

    def __init__(
        self, transport: str, host: str, port: int, local: Listen | None = None, conn_id: int = 0
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.local = local
        self.conn_id = conn_id


MessageHandler = Callable[[bytes, Origin], None]
BacklogHandler = Callable[[bool, int], None]


class ListenError(Exception):
    """A listener that could not be bound; the message is one sentence saying why."""

    def __init__(self, listen: Listen, cause: OSError) -> None:
        super().__init__(f"cannot listen on {listen}: {_listen_failure(listen, cause)}")
        self.listen = listen
        self.in_use = cause.errno == errno.EADDRINUSE


def _listen_failure(listen: Listen, cause: OSError) -> str:
    """Why ``listen`` could not be bound, in words an operator acts on."""
    if isinstance(cause, socket.gaierror):
        return f"the host {listen.host} does not resolve; give an address or a name of this host"
    match cause.errno:
        case errno.EADDRINUSE:
            return f"the {listen.transport.upper()} port {listen.port} on {listen.host} is in use"
        case errno.EADDRNOTAVAIL:
            return f"{listen.host} is not an address of this host"
        case errno.EACCES:
            return f"no permission to use port {listen.port} (ports below 1024 need privileges)"
        case _:
            return cause.strerror or str(cause)


class Outbound(Protocol):
    """What the endpoint needs of the transports: the listeners bound, and a way to send."""

    @property
    def bound(self) -> Sequence[Listen]: ...

    def send(self, data: bytes, target: Target) -> bool: ...


class _UdpListener:
    """One bound UDP socket, read by draining it on every readable event."""

    def __init__(
        self, listen: Listen, sock: socket.socket, handler: MessageHandler, on_change: Callable[[], None]
    ) -> None:
        self.listen = listen
        self.sock = sock
        self.handler = handler
        self._buf = bytearray(UDP_BUFFER)
        self._view = memoryview(self._buf)
        self._origins: dict[tuple[str, int], Origin] = {}
        self.queued = 0  # bytes in the receive queue at the last reading
        buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.high = int(buffer * BACKLOG_HIGH)
        self.low = int(buffer * BACKLOG_LOW)
        self.deep = False  # past high at a reading, and not under low since
        self._metered = bool(_SO_MEMINFO)
        self._read_at = 0.0
        self._on_change = on_change

    def read_queue(self) -> None:
        """Read how much waits in the receive queue; tell the owner when it becomes too deep or
        short again."""
        try:
            raw = self.sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO_SIZE)
        except OSError:
            self._metered = False  # a kernel without SO_MEMINFO: no overload detection on UDP
            return
        queued = self.queued = int.from_bytes(raw[:4], sys.byteorder)
        deep = queued > self.low if self.deep else queued >= self.high
        if deep != self.deep:
            self.deep = deep
            self._on_change()

    def on_readable(self) -> None:
        sock = self.sock
        view = self._view
        recv = sock.recvfrom_into
        buf = self._buf
        origins = self._origins
        monotonic = time.monotonic
        for _ in range(UDP_DRAIN_BATCH):
            # Read before each datagram, not only on waking: a pause in the middle of a drain (a
            # long handler, the process stopped or starved) is measured before the next message.
            if self._metered:
                now = monotonic()
                if now - self._read_at >= BACKLOG_CHECK:
                    self._read_at = now
                    self.read_queue()
            try:
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                if self.deep and self._metered:
                    self.read_queue()  # drained after a deep reading: the overload may be over
                return
            except OSError:
                # ICMP port unreachable from an earlier send surfaces here on Linux: not fatal.
                continue
            if n <= 4 and not bytes(view[:n]).strip():
                continue  # CRLF keep-alive datagram
            key = (addr[0], addr[1])
            origin = origins.get(key)
            if origin is None:
                if len(origins) > 100_000:
                    origins.clear()
                origin = origins[key] = Origin("udp", addr[0], addr[1], self.listen)
            try:
                self.handler(bytes(view[:n]), origin)
            except Exception:
                log.exception("udp_handler_failed", peer=f"{addr[0]}:{addr[1]}")

    def send(self, data: bytes, host: str, port: int) -> bool:
        try:
            self.sock.sendto(data, (host, port))
        except (BlockingIOError, InterruptedError):
            return False  # send buffer full: UDP retransmission will cover it
        except OSError as exc:
            log.info("udp_send_failed", peer=f"{host}:{port}", error=str(exc))
            return False
        return True


class _StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, framed by Content-Length."""

    def __init__(self, owner: Transports, listen: Listen, transport_name: str) -> None:
        self.owner = owner
        self.listen = listen
        self.transport_name = transport_name
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.conn_id = 0
        self.peer: tuple[str, int] = ("", 0)
        self.origin: Origin | None = None
        self.last_activity = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's stream transports do not derive from asyncio.Transport but offer its methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else ("", 0)
        self.conn_id = self.owner._register(self)
        self.origin = Origin(self.transport_name, self.peer[0], self.peer[1], self.listen, self.conn_id)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        framer = self.framer
        try:
            messages = framer.feed(data)
        except SipError as exc:
            log.info("stream_framing_error", peer=f"{self.peer[0]}:{self.peer[1]}", reason=exc.reason)
            self.close()
            return
        if framer.pings:
            assert self.transport is not None
            self.transport.write(b"\r\n" * framer.pings)
            framer.pings = 0
        origin = self.origin
        assert origin is not None
        for message in messages:
            try:
                self.owner.handler(message, origin)
            except Exception:
                log.exception("stream_handler_failed", peer=f"{self.peer[0]}:{self.peer[1]}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._unregister(self)

    def send(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        self.last_activity = time.monotonic()
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Transports:
    """Every socket Sentral listens on, and the stream connections it holds."""

    def __init__(
        self,
        handler: MessageHandler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 900.0,
        on_backlog: BacklogHandler | None = None,
    ) -> None:
        self.handler = handler
        self.on_backlog = on_backlog
        self.overloaded = False
        self.ssl_context = ssl_context
        self._client_context: ssl.SSLContext | None = None
        self.idle_timeout = idle_timeout
        self._udp: dict[Listen, _UdpListener] = {}
        self._udp_by_family: dict[int, _UdpListener] = {}
        self._udp_listeners: tuple[_UdpListener, ...] = ()
        self._servers: list[asyncio.Server] = []
        self._conns: dict[int, _StreamConnection] = {}
        self._conns_by_peer: dict[tuple[str, str, int], _StreamConnection] = {}
        self._next_conn = 1
        self._sweeper: asyncio.Task[None] | None = None
        self.bound: list[Listen] = []
        # Connections Sentral opens itself (to a trunk's carrier over TCP or TLS): what waits to
        # be sent on each while it connects, and the tasks connecting.
        self._connecting: dict[tuple[str, str, int], list[bytes]] = {}
        self._connects: set[asyncio.Task[None]] = set()
        # The name a TLS peer's certificate is checked against, by address (a trunk's host name
        # for the addresses it resolved to); an address not here is checked as itself.
        self.server_names: dict[str, str] = {}
        self.connect_timeout = CONNECT_TIMEOUT

    async def start(self, listens: tuple[Listen, ...]) -> None:
        """Bind every listener; raise ListenError, which says why, if one cannot be bound."""
        loop = asyncio.get_running_loop()
        for listen in listens:
            try:
                await self._listen(loop, listen)
            except OSError as exc:
                raise ListenError(listen, exc) from exc
        # UDP is read only once every listener is bound: create_server lets the loop run, and a
        # peer that got an answer over UDP may go straight on to a TLS port not yet listening.
        for listener in self._udp_listeners:
            loop.add_reader(listener.sock.fileno(), listener.on_readable)
        self._sweeper = asyncio.create_task(self._sweep_idle(), name="transport-idle-sweeper")

    async def _listen(self, loop: asyncio.AbstractEventLoop, listen: Listen) -> None:
        if listen.transport == "udp":
            sock = _bind_udp(listen)
            listener = _UdpListener(listen, sock, self.handler, self._queue_changed)
            self._udp[listen] = listener
            self._udp_listeners = (*self._udp_listeners, listener)
            self._udp_by_family.setdefault(sock.family, listener)
            self.bound.append(listen)
            return
        tls = listen.transport == "tls"
        if tls and self.ssl_context is None:
            raise OSError(errno.EINVAL, "it needs a certificate and key")
        server = await loop.create_server(
            lambda lst=listen: _StreamConnection(self, lst, lst.transport),
            host=listen.host,
            port=listen.port,
            ssl=self.ssl_context if tls else None,
            # Only skips TIME_WAIT after a restart: a TCP port another process listens on
            # still refuses to bind.
            reuse_address=True,
            backlog=1024,
        )
        self._servers.append(server)
        self.bound.append(listen)

    def _queue_changed(self) -> None:
        """A UDP listener's queue became too deep, or short again: overloaded while any is deep."""
        overloaded = any(listener.deep for listener in self._udp.values())
        if overloaded != self.overloaded:
            self.overloaded = overloaded
            if self.on_backlog is not None:
                self.on_backlog(overloaded, max(listener.queued for listener in self._udp.values()))

    def backlog_marks(self) -> dict[Listen, tuple[int, int]]:
        """Each UDP listener's marks, in bytes of receive queue: too deep from the first, short
        again under the second."""
        return {listen: (listener.high, listener.low) for listen, listener in self._udp.items()}

    def _register(self, conn: _StreamConnection) -> int:
        conn_id = self._next_conn
        self._next_conn += 1
        self._conns[conn_id] = conn
        self._conns_by_peer[(conn.transport_name, conn.peer[0], conn.peer[1])] = conn
        return conn_id

    def _unregister(self, conn: _StreamConnection) -> None:
        self._conns.pop(conn.conn_id, None)
        key = (conn.transport_name, conn.peer[0], conn.peer[1])
        if self._conns_by_peer.get(key) is conn:
            del self._conns_by_peer[key]

    def send(self, data: bytes, target: Target) -> bool:
        """Send one message; False if it could not be handed to the network."""
        if target.transport == "udp":
            local = target.local
            listener = None
            if local is not None:
                # The target's listener is nearly always the very object a listener was bound
                # for (it came with the request): found by identity, without hashing a Listen.
                for candidate in self._udp_listeners:
                    if candidate.listen is local:
                        listener = candidate
                        break
                else:
                    listener = self._udp.get(local)
            if listener is None:
                family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
                listener = self._udp_by_family.get(family)
                if listener is None:
                    return False
            return listener.send(data, target.host, target.port)
        conn = self._conns.get(target.conn_id) if target.conn_id else None
        if conn is None:
            conn = self._conns_by_peer.get((target.transport, target.host, target.port))
        if conn is None:
            if target.conn_id:
                # A phone's flow that has closed: only the phone can open it again (RFC 5626).
                log.info("no_connection", transport=target.transport, peer=f"{target.host}:{target.port}")
                return False
            return self._connect(data, target)
        return conn.send(data)

    def _connect(self, data: bytes, target: Target) -> bool:
        """Open a connection to ``target`` (a carrier: nobody else is sent to first over a stream)
        and send ``data`` on it once it is up. What cannot be sent is lost, as a datagram would be:
        the transactions' own timers take it from there."""
        key = (target.transport, target.host, target.port)
        waiting = self._connecting.get(key)
        if waiting is not None:
            waiting.append(data)
            return True
        if target.transport == "tls" and self._client_context is None:
            self._client_context = ssl.create_default_context()
        listen = next((b for b in self.bound if b.transport == target.transport), None)
        if listen is None:
            listen = Listen(target.transport, "0.0.0.0", 0)
        self._connecting[key] = [data]
        task = asyncio.get_running_loop().create_task(self._open(key, listen), name=f"connect-{target.host}")
        self._connects.add(task)
        task.add_done_callback(self._connects.discard)
        return True

    async def _open(self, key: tuple[str, str, int], listen: Listen) -> None:
        transport, host, port = key
        loop = asyncio.get_running_loop()
        tls = transport == "tls"
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: _StreamConnection(self, listen, transport),
                    host,
                    port,
                    ssl=self._client_context if tls else None,
                    server_hostname=self.server_names.get(host, host) if tls else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            log.info("connect_failed", transport=transport, peer=f"{host}:{port}", error=str(exc) or type(exc).__name__)
            self._connecting.pop(key, None)
            return
        waiting = self._connecting.pop(key, [])
        conn = self._conns_by_peer.get(key)
        if conn is None:
            return
        for data in waiting:
            conn.send(data)

    def connection_open(self, conn_id: int) -> bool:
        """True while stream connection ``conn_id`` is open (a flow of RFC 5626)."""
        return conn_id in self._conns

    @property
    def connection_count(self) -> int:
        """How many stream connections are open."""
        return len(self._conns)

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.idle_timeout / 2))
            limit = time.monotonic() - self.idle_timeout
            for conn in [c for c in self._conns.values() if c.last_activity < limit]:
                log.info("stream_idle_closed", peer=f"{conn.peer[0]}:{conn.peer[1]}")
                conn.close()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        loop = asyncio.get_running_loop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self._connects):
            task.cancel()
        for listener in self._udp.values():
            loop.remove_reader(listener.sock.fileno())
            listener.sock.close()
        self._udp.clear()
        self._udp_by_family.clear()
        self._udp_listeners = ()
        for server in self._servers:
            server.close()
        for conn in list(self._conns.values()):
            conn.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()


def _bind_udp(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # No SO_REUSEADDR: on UDP it lets a second server bind the very same address and port,
        # and the kernel then hands each datagram to one of them. UDP has no TIME_WAIT to skip.
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
                break
            except OSError:
                continue
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((listen.host, listen.port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class TlsFileError(ValueError):
    """A TLS certificate or key file that cannot be used; the message names the file and why."""

    def __init__(self, path: str, sentence: str) -> None:
        super().__init__(sentence)
        self.path = path


class _Encrypted(Exception):
    """The private key asked for a passphrase."""


def _refuse_passphrase() -> NoReturn:
    # Without a callback OpenSSL would prompt on the terminal and hang a server started by systemd.
    raise _Encrypted


def make_server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """A TLS server context for SIP over TLS (TLS 1.2 and newer); TlsFileError if ``cert`` or ``key``
    is missing, not PEM, protected by a passphrase, or the key is not the certificate's."""
    for path, what in ((cert, "certificate"), (key, "private key")):
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as unreadable:
            reason = unreadable.strerror or unreadable
            raise TlsFileError(path, f"cannot read the TLS {what} {path}: {reason}") from unreadable
    # OpenSSL reports a certificate that is not PEM and a key that is not PEM with the same
    # "PEM lib" error; loading the certificate alone first tells which of the two files it is.
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_verify_locations(cafile=cert)
    except ssl.SSLError as not_pem:
        raise TlsFileError(cert, f"the TLS certificate {cert} holds no PEM certificate") from not_pem
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_refuse_passphrase)
    except _Encrypted as encrypted:
        raise TlsFileError(
            key, f"the TLS private key {key} is protected by a passphrase; give it without one"
        ) from encrypted
    except ssl.SSLError as refused:
        # ``reason`` is None for some errors although typeshed says str; compiled code checks types.
        openssl_reason: object = getattr(refused, "reason", None)
        if openssl_reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(
                key, f"the TLS private key {key} does not belong to the certificate {cert}"
            ) from refused
        raise TlsFileError(key, f"the TLS private key {key} holds no PEM private key") from refused
    return context

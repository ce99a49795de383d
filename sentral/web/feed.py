"""The event feed: ``/api/events``, a WebSocket streaming what changes in the caller's clinic.

Theory of operation
-------------------
The engine's changes become numbered events in ``sentral.web.events.EventSource``, which the SIP
engine calls synchronously and which only appends to a bounded history. ``Feed`` is the other
half: its own task wakes when there is something new, works out presence (``flush``) and hands
each new event to every client of its clinic. The engine never waits for a client.

Fan-out is the costly part with many clients, so it is done once per event and once per client,
not once per pair: each event is serialised and framed as a WebSocket text message once
(``text_frame``), the frames of one round are joined per clinic, and each client's connection
gets that one buffer in one write. Rounds are at least ``ROUND_PER_CLIENT`` seconds per client
apart (at most ``MAX_ROUND``), so under load with many clients events are gathered into fewer,
larger writes, and with a few clients they go out at once.

A client's backlog is what its connection has not yet been able to send: at most
``MAX_PENDING`` bytes. A client over it (it reads too slowly, or not at all) is dropped: its
socket is closed with code 1008 and the reason, and if even the close cannot get through within
``CLOSE_WAIT`` seconds the connection is cut. The others never wait for it. The kernel's send
buffer of a feed socket is kept small (``SEND_BUFFER``), so a client that stops reading is found
out after a bounded number of bytes rather than after megabytes.

A client connecting with ``?since=N`` (the last ``seq`` it saw) is first sent what it missed, or
``{"type": "reload"}`` when that is no longer known (too old, or from before a restart): it then
reads the state again from the REST API. Without ``since`` it gets only what happens from then.

While no client is connected the source stays attached for ``LINGER`` seconds, so that a page
reloading or a network blip can still resume; after that it is detached and the engine pays one
test per change for the feed.

Authentication is the web service's (``principal_of``): a session cookie (what the switchboard
page has) or ``Authorization: Bearer TOKEN`` (the clinic platform). Events are scoped to the
principal's clinic.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from sentral.web.auth import principal_of
from sentral.web.events import Event, EventSource
from sentral.web.service import ApiError, documented

if TYPE_CHECKING:
    from sentral.app import Server
    from sentral.web.service import WebService

log = structlog.get_logger("sentral.web")

MAX_PENDING = 256 * 1024
"""Bytes a client's connection may hold unsent; past it the client is dropped as too slow."""
ROUND_PER_CLIENT = 20e-6
"""Seconds between fan-out rounds per connected client: 1,000 clients, a round every 20 ms."""
MAX_ROUND = 0.05
"""The longest gap between fan-out rounds, however many clients."""
LINGER = 60.0
"""How long the source stays attached after the last client left, so that clients can resume."""
CLOSE_WAIT = 2.0
"""How long a dropped client's close may take before its connection is cut."""
SEND_BUFFER = 32 * 1024
"""The kernel's send buffer of a feed socket (Linux doubles it): bounds what a stalled client holds."""
HEARTBEAT = 30.0
"""Seconds between pings, so that a vanished client is found and cleaned up."""
TOO_SLOW = "too slow: events were not read in time"
RELOAD = '{"type":"reload"}'


def text_frame(text: str) -> bytes:
    """``text`` as one unmasked WebSocket text message (RFC 6455 §5.2), as a server sends it."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class Client:
    """One WebSocket client of the feed: its clinic and its connection."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, domain: str) -> None:
        self.ws = ws
        self.transport = transport
        self.domain = domain
        self.dropped: str | None = None
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def send(self, frames: bytes) -> bool:
        """Write ``frames`` (whole WebSocket messages); False when the client is too far behind."""
        transport = self.transport
        if transport.is_closing():
            return True  # the reader sees the close and cleans up
        if transport.get_write_buffer_size() > MAX_PENDING:
            return False
        transport.write(frames)
        return True

    def drop(self, reason: str) -> None:
        """Stop sending to this client; its handler closes the socket with ``reason``."""
        if self.dropped is None:
            self.dropped = reason
            if not self.gone.done():
                self.gone.set_result(None)


class Feed:
    """``/api/events``: every connected client, and the task that hands them events."""

    def __init__(self, server: Server, *, linger: float = LINGER) -> None:
        self.server = server
        self.linger = linger
        self.clients: set[Client] = set()
        self._wake = asyncio.Event()
        self._source: EventSource | None = None
        self._sent = 0  # the last seq handed to the clients
        self._idle_since = time.monotonic()

    @property
    def source(self) -> EventSource:
        """The engine's events (made once the engine runs)."""
        if self._source is None:
            endpoint = self.server.endpoint
            assert endpoint is not None, "the feed needs the SIP engine running"
            self._source = EventSource(
                endpoint.calls, endpoint.presence, self.server.directory, on_event=self._on_event
            )
            self._sent = self._source.seq
        return self._source

    def _on_event(self) -> None:
        # Called from inside the engine: as little as possible.
        if not self._wake.is_set():
            self._wake.set()

    def routes(self) -> list[web.RouteDef]:
        """The feed's route."""
        return [web.get("/api/events", self.handle)]

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """The feed's task, for the application's ``cleanup_ctx``."""
        task = asyncio.create_task(self.run(), name="event-feed")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def shutdown(self, app: web.Application) -> None:
        """Close every client (going away) so that the server can stop at once."""
        for client in list(self.clients):
            client.drop("server shutting down")

    # -- the fan-out -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Hand new events to the clients of their clinic; detach from the engine when idle."""
        while True:
            if self.clients or self._source is None or not self._source.attached:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, self._idle_since + self.linger - time.monotonic())):
                        await self._wake.wait()
                if not self.clients and time.monotonic() - self._idle_since >= self.linger:
                    self.source.detach()
                    continue
            self._wake.clear()
            started = time.monotonic()
            self.fan_out()
            # Many clients: let events gather, so each connection gets fewer, larger writes.
            gap = min(MAX_ROUND, ROUND_PER_CLIENT * len(self.clients)) - (time.monotonic() - started)
            if gap > 0:
                await asyncio.sleep(gap)

    def fan_out(self) -> None:
        """Give every client the events it has not had yet."""
        source = self._source
        if source is None or not source.attached:
            return
        source.flush()
        history = source.history
        if not history or history[-1].seq <= self._sent:
            return
        if history[0].seq > self._sent + 1:
            # More events came at once than the history holds: nobody can have them all.
            new: list[Event] = []
            for client in list(self.clients):
                if not client.send(text_frame(RELOAD)):
                    self._drop(client, TOO_SLOW)
        else:
            new = [event for event in history if event.seq > self._sent]
        self._sent = history[-1].seq
        if not self.clients or not new:
            return
        by_domain: dict[str, list[bytes]] = {}
        for event in new:
            by_domain.setdefault(event.domain, []).append(text_frame(event.text))
        joined = {domain: b"".join(frames) for domain, frames in by_domain.items()}
        for client in list(self.clients):
            frames = joined.get(client.domain)
            if frames is not None and not client.send(frames):
                self._drop(client, TOO_SLOW)

    def _drop(self, client: Client, reason: str) -> None:
        log.warning("feed_client_dropped", domain=client.domain, reason=reason)
        self.clients.discard(client)
        client.drop(reason)
        self._client_left()

    def _client_left(self) -> None:
        if not self.clients:
            self._idle_since = time.monotonic()
            self._wake.set()  # the task starts counting the linger

    # -- one client --------------------------------------------------------------------------------

    @documented(
        {
            "summary": "The event feed (WebSocket): calls, presence, queues, parked calls, as they change",
            "parameters": [
                {
                    "name": "since",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer"},
                    "description": 'the last seq seen: what came after it is sent first, or {"type": "reload"}',
                }
            ],
            "responses": {
                "101": {"description": 'WebSocket; each text message is one event {"seq": N, "type": ...}'},
                "401": {"description": "not signed in and no API token"},
            },
        }
    )
    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The event feed (WebSocket)."""
        principal = principal_of(request)
        since_text = request.query.get("since")
        since: int | None = None
        if since_text is not None:
            try:
                since = int(since_text)
            except ValueError:
                raise ApiError(400, "since must be the seq of the last event seen, a whole number") from None
        # Uncompressed: every client is sent the same frames, made once (``text_frame``).
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT, timeout=CLOSE_WAIT, max_msg_size=4096, compress=False)
        if not ws.can_prepare(request).ok:
            raise ApiError(400, "this is a WebSocket: connect with a WebSocket client (Upgrade: websocket)")
        await ws.prepare(request)
        transport = request.transport
        if transport is None:
            return ws  # gone during the handshake
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
                # Events go out as they come: no waiting for the last segment's ACK (Nagle).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        source = self.source
        if not source.attached:
            source.attach()
            self._sent = source.seq
        # Events not yet handed out are the task's to send; what came before goes now.
        self.fan_out()
        client = Client(ws, transport, principal.domain)
        if since is not None:
            missed = source.since(since)
            if missed is None:
                client.send(text_frame(RELOAD))
            else:
                backlog = [
                    text_frame(e.text) for e in missed if e.domain == client.domain and e.seq <= self._sent
                ]
                if backlog:
                    client.send(b"".join(backlog))
        self.clients.add(client)
        reader = asyncio.create_task(self._read(ws), name="feed-client")
        try:
            await asyncio.wait({reader, client.gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if client in self.clients:
                self.clients.discard(client)
                self._client_left()
            client.drop(client.dropped or "closed")
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if not ws.closed:
                code = WSCloseCode.POLICY_VIOLATION if client.dropped == TOO_SLOW else WSCloseCode.GOING_AWAY
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_WAIT):
                        # A client that does not take the close within CLOSE_WAIT is cut off.
                        await ws.close(code=code, message=(client.dropped or "").encode())
        return ws

    @staticmethod
    async def _read(ws: web.WebSocketResponse) -> None:
        """Read until the client closes; what a client sends is not used."""
        async for message in ws:
            if message.type is WSMsgType.ERROR:
                break


def mount_feed(service: WebService) -> Feed:
    """Make the feed of ``service``'s server and mount it: its route, its task, its shutdown."""
    feed = Feed(service.server)
    service.app.cleanup_ctx.append(feed.context)
    service.app.on_shutdown.append(feed.shutdown)
    service.add_routes(feed.routes())
    return feed


__all__ = ["CLOSE_WAIT", "LINGER", "MAX_PENDING", "SEND_BUFFER", "Client", "Feed", "mount_feed", "text_frame"]

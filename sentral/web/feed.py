"""The event feed: ``/api/events``, a WebSocket streaming what changes in the caller's clinic.

Theory of operation
-------------------
The engine's changes become numbered events in ``sentral.web.events.EventSource``, which the SIP
engine calls synchronously and which only appends to a bounded history. ``Feed`` is the other
half: its own task wakes when there is something new, works out presence (``flush``) and hands
each new event to every client of its clinic. The engine never waits for a client.

Each client has a send queue of at most ``queue_size`` events, emptied by the client's own
writer task. A client whose queue is full (it reads too slowly, or not at all) is dropped: its
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
import time
from collections import deque
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

QUEUE_SIZE = 512
"""Events waiting to be sent to one client; one more and the client is dropped as too slow."""
LINGER = 60.0
"""How long the source stays attached after the last client left, so that clients can resume."""
CLOSE_WAIT = 2.0
"""How long a dropped client's close may take before its connection is cut."""
SEND_BUFFER = 32 * 1024
"""The kernel's send buffer of a feed socket (Linux doubles it): bounds what a stalled client holds."""
HEARTBEAT = 30.0
"""Seconds between pings, so that a vanished client is found and cleaned up."""
TOO_SLOW = "too slow: events were not read in time"


class Client:
    """One WebSocket client of the feed: its clinic, its send queue and its writer."""

    def __init__(self, ws: web.WebSocketResponse, domain: str, queue_size: int) -> None:
        self.ws = ws
        self.domain = domain
        self.queue_size = queue_size
        self.queue: deque[str] = deque()
        self.ready = asyncio.Event()
        self.dropped: str | None = None
        self.writer: asyncio.Task[None] | None = None

    def send(self, text: str) -> bool:
        """Queue ``text``; False when the queue is full (the client is too slow)."""
        if len(self.queue) >= self.queue_size:
            return False
        self.queue.append(text)
        self.ready.set()
        return True

    def drop(self, reason: str) -> None:
        """Stop sending to this client; its handler closes the socket with ``reason``."""
        if self.dropped is None:
            self.dropped = reason
            self.queue.clear()
            if self.writer is not None:
                self.writer.cancel()

    async def write(self) -> None:
        """Send what is queued, in order, as the client takes it."""
        queue = self.queue
        while True:
            await self.ready.wait()
            self.ready.clear()
            while queue:
                await self.ws.send_str(queue.popleft())


class Feed:
    """``/api/events``: every connected client, and the task that hands them events."""

    def __init__(self, server: Server, *, queue_size: int = QUEUE_SIZE, linger: float = LINGER) -> None:
        self.server = server
        self.queue_size = queue_size
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
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_WAIT):
                    await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

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
            self.fan_out()

    def fan_out(self) -> None:
        """Give every client the events it has not had yet."""
        source = self._source
        if source is None or not source.attached:
            return
        source.flush()
        history = source.history
        if not history or history[-1].seq <= self._sent:
            return
        new: list[Event]
        if history[0].seq > self._sent + 1:
            # More events came at once than the history holds: nobody can have them all.
            new = []
            for client in list(self.clients):
                client.send('{"type":"reload"}')
        else:
            new = [event for event in history if event.seq > self._sent]
        self._sent = history[-1].seq
        if not self.clients:
            return
        by_domain: dict[str, list[Client]] = {}
        for client in self.clients:
            by_domain.setdefault(client.domain, []).append(client)
        for event in new:
            clients = by_domain.get(event.domain)
            if not clients:
                continue
            text = event.text
            for client in clients:
                if client.dropped is None and not client.send(text):
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
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT, timeout=CLOSE_WAIT, max_msg_size=4096, writer_limit=SEND_BUFFER
        )
        if not ws.can_prepare(request).ok:
            raise ApiError(400, "this is a WebSocket: connect with a WebSocket client (Upgrade: websocket)")
        transport = request.transport
        await ws.prepare(request)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        source = self.source
        if not source.attached:
            source.attach()
            self._sent = source.seq
        # Events not yet handed out are the task's to send; what came before goes now.
        self.fan_out()
        client = Client(ws, principal.domain, self.queue_size)
        if since is not None:
            missed = source.since(since)
            if missed is None:
                client.send('{"type":"reload"}')
            else:
                for event in missed:
                    if event.domain == client.domain and event.seq <= self._sent:
                        client.send(event.text)
        self.clients.add(client)
        client.writer = asyncio.create_task(client.write(), name="feed-client")
        reader = asyncio.create_task(self._read(ws), name="feed-client-reader")
        try:
            await asyncio.wait({client.writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if client in self.clients:
                self.clients.discard(client)
                self._client_left()
            client.drop(client.dropped or "closed")
            reader.cancel()
            await asyncio.gather(client.writer, reader, return_exceptions=True)
            if not ws.closed:
                code = WSCloseCode.POLICY_VIOLATION if client.dropped == TOO_SLOW else WSCloseCode.GOING_AWAY
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_WAIT):
                        await ws.close(code=code, message=(client.dropped or "").encode())
            if not ws.closed and transport is not None:
                transport.abort()
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


__all__ = ["CLOSE_WAIT", "LINGER", "QUEUE_SIZE", "SEND_BUFFER", "Client", "Feed", "mount_feed"]

"""Clients of Sentral's web side for system tests: the event feed over a real WebSocket.

``FeedClient`` runs an aiohttp WebSocket client on a thread of its own, so a synchronous test can
drive SIP peers and wait for the events they cause. ``StalledFeedClient`` connects with a raw
socket whose receive buffer is small and then never reads: a client too slow for the feed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.system.server import SentralServer

Event = dict[str, Any]


def add_token(server: SentralServer, name: str, clinic: str) -> str:
    """A new API token for ``clinic``, as `sentral token add` prints it once."""
    out = server.cli("token", "add", name, "--clinic", clinic).stdout
    found = re.search(r"\b(sntl_\S+)", out)
    assert found, f"no token in {out!r}"
    return found.group(1)


class FeedClient:
    """A WebSocket client of ``/api/events`` on a thread; events are kept in the order they came."""

    def __init__(self, url: str, *, token: str | None = None, since: int | None = None) -> None:
        self.url = url + (f"?since={since}" if since is not None else "")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.events: list[Event] = []
        self.close_code: int | None = None
        self.closed = threading.Event()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._run(),), daemon=True
        )
        self._thread.start()
        if not self._opened.wait(10.0) or self._error is not None:
            raise AssertionError(f"the feed at {self.url} did not open: {self._error!r}")

    async def _run(self) -> None:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(self.url, headers=self.headers, heartbeat=None) as ws,
            ):
                self._ws = ws
                self._opened.set()
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        with self._changed:
                            self.events.append(json.loads(message.data))
                            self._changed.notify_all()
                self.close_code = ws.close_code
        except BaseException as exc:
            self._error = exc
            self._opened.set()
        finally:
            self.closed.set()
            with self._changed:
                self._changed.notify_all()

    def wait_for(
        self, condition: Callable[[Event], bool], timeout: float = 10.0, what: str = "", *, after: int = 0
    ) -> Event:
        """The first event from the ``after``-th on (kept so far or still to come) for which
        ``condition`` holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = after
            while True:
                for event in self.events[seen:]:
                    if condition(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0 or self.closed.is_set():
                    raise AssertionError(
                        f"no event {what} within {timeout} s (closed: {self.closed.is_set()}); got {self.events}"
                    )
                self._changed.wait(left)

    def close(self) -> None:
        ws = self._ws
        if ws is not None and not self.closed.is_set():
            asyncio.run_coroutine_threadsafe(ws.close(), self._loop).result(5.0)
        self._thread.join(5.0)


class StalledFeedClient:
    """A WebSocket client that connects and then never reads, with a small receive buffer."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /api/events HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        self.sock.settimeout(5.0)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "the server closed the stalled client before its handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head

    def cut_off(self, timeout: float) -> bool:
        """Whether the server closed the connection within ``timeout`` (reading what is left)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(1 << 20):
                    return True
            except TimeoutError:
                continue
            except ConnectionResetError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()

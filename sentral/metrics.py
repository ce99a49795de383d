"""Metrics and health over HTTP: what Prometheus scrapes and what a monitor asks.

Theory of operation. ``serve --metrics HOST:PORT`` opens a small HTTP/1.1 listener on the server's
own event loop with two pages: ``/metrics`` in Prometheus' text format and ``/health`` as JSON (200
when ready, 503 when not). Nothing is counted on the call path for them beyond a few integer
additions the server keeps anyway: the figures are read from the running system when a scrape
comes (``ServerCollector.collect``), so a scrape every 15 s costs a few milliseconds and a call
nothing. The event loop's lag is the one thing measured on its own: a task sleeps a quarter of a
second at a time and keeps the largest overshoot since the last scrape.

Ready means the SIP listeners are bound and both writers take writes: into the database, or, while
it is down, into the spool (``database`` then says ``spooling``). A spool that cannot be written
either is not ready: acknowledged writes would be lost.

No metric carries a phone number, a name or an address: labels are statuses, clinics and group
names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sentral.config.writer import GroupCommitWriter
    from sentral.media.anchor import MediaAnchor
    from sentral.pbx.endpoint import Endpoint
    from sentral.pbx.guard import Guard
    from sentral.pbx.location import Location
    from sentral.pbx.transport import Transports


class Server(Protocol):
    """What the metrics read of the running server (``sentral.app.Server``)."""

    @property
    def endpoint(self) -> Endpoint | None: ...
    @property
    def location(self) -> Location: ...
    @property
    def guard(self) -> Guard: ...
    @property
    def anchor(self) -> MediaAnchor | None: ...
    @property
    def transports(self) -> Transports: ...
    @property
    def writer(self) -> GroupCommitWriter[Any]: ...
    @property
    def cdr_writer(self) -> GroupCommitWriter[Any]: ...
    @property
    def tally(self) -> CallTally: ...
    @property
    def serving(self) -> bool: ...

LAG_INTERVAL = 0.25
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0


@dataclass(slots=True)
class CallTally:
    """Finished calls by the status their caller got, counted as their records are handed on."""

    ended: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    answer_delay: float = 0.0  # seconds from start to answer, summed over answered calls

    def count(self, status: int | None, started: float, answered: float | None) -> None:
        key = str(status) if status is not None else "none"
        self.ended[key] = self.ended.get(key, 0) + 1
        if answered is not None:
            self.answered += 1
            self.answer_delay += max(0.0, answered - started)

    @property
    def total(self) -> int:
        return sum(self.ended.values())


class LoopLag:
    """The event loop's largest lateness since the last reading, measured by a sleeping task."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            late = loop.time() - before - LAG_INTERVAL
            if late > self.worst:
                self.worst = late

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return max(0.0, worst)


class ServerCollector(Collector):
    """Reads a running ``Server``'s figures at scrape time."""

    def __init__(self, server: Server, lag: LoopLag) -> None:
        self.server = server
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        server = self.server
        endpoint = server.endpoint
        yield GaugeMetricFamily("sentral_registrations", "Registration bindings held", value=len(server.location))
        by_state = GaugeMetricFamily("sentral_calls_in_progress", "Calls in progress by state", labels=["state"])
        queues = GaugeMetricFamily(
            "sentral_queue_waiting", "Callers waiting in a group's or function's queue", labels=["clinic", "group"]
        )
        waits = SummaryMetricFamily(
            "sentral_queue_wait_seconds",
            "How long callers waited in a group's or function's queue before a phone rang for them, "
            "they were sent on, or they hung up",
            labels=["clinic", "group"],
        )
        tally = server.tally
        in_progress = 0
        if endpoint is not None:
            states: dict[str, int] = {}
            for live in endpoint.calls.live():
                state = "parked" if live.parked else live.state
                states[state] = states.get(state, 0) + 1
            in_progress = sum(states.values())
            for state, n in sorted(states.items()):
                by_state.add_metric([state], n)
            for (clinic, group), n in sorted(endpoint.hunting.queue_lengths().items()):
                queues.add_metric([clinic, group], n)
            for (clinic, group), (count, seconds) in sorted(endpoint.hunting.waits.items()):
                waits.add_metric([clinic, group], count, seconds)
        yield by_state
        yield queues
        yield waits
        yield CounterMetricFamily(
            "sentral_calls_started", "Calls set up since the start", value=tally.total + in_progress
        )
        ended = CounterMetricFamily(
            "sentral_calls_ended", "Calls ended since the start, by the final status the caller got", labels=["status"]
        )
        for status, n in sorted(tally.ended.items()):
            ended.add_metric([status], n)
        yield ended
        yield SummaryMetricFamily(
            "sentral_call_answer_delay_seconds",
            "From a call's INVITE to its answer, over answered calls",
            count_value=tally.answered,
            sum_value=tally.answer_delay,
        )
        refused = endpoint.shed if endpoint is not None else 0
        yield CounterMetricFamily(
            "sentral_calls_refused_overload", "New calls answered 503 while overloaded", value=refused
        )
        guard = server.guard
        yield CounterMetricFamily("sentral_auth_failures", "Failed digest authentications", value=guard.auth_failures)
        yield CounterMetricFamily("sentral_sources_blocked", "Source addresses blocked by the guard", value=guard.blocks)
        yield GaugeMetricFamily("sentral_sources_blocked_now", "Source addresses blocked now", value=guard.blocked_sources)
        anchor = server.anchor
        if anchor is not None:
            relay = anchor.relay
            packets_in, packets_out, dropped = relay.totals()
            yield GaugeMetricFamily("sentral_relay_streams", "Relay endpoints open (one per phone in a call)",
                                    value=len(relay.endpoints))  # fmt: skip
            yield GaugeMetricFamily("sentral_relay_ports_resting", "Relay port pairs kept bound for later calls",
                                    value=relay.pool.resting)  # fmt: skip
            packets = CounterMetricFamily(
                "sentral_relay_packets", "RTP and RTCP packets relayed, from and to phones", labels=["direction"]
            )
            packets.add_metric(["in"], packets_in)
            packets.add_metric(["out"], packets_out)
            yield packets
            yield CounterMetricFamily(
                "sentral_relay_packets_dropped", "Packets the relay dropped (strangers, or no peer yet)", value=dropped
            )
        commits = SummaryMetricFamily(
            "sentral_db_commit_seconds", "Time spent in database transactions, by writer", labels=["writer"]
        )
        spool = GaugeMetricFamily("sentral_spool_items", "Writes waiting in the spool for the database",
                                  labels=["writer"])  # fmt: skip
        for name, writer in (("bindings", server.writer), ("call_records", server.cdr_writer)):
            commits.add_metric([name], writer.commits, writer.commit_seconds)
            spool.add_metric([name], writer.spooled)
        yield commits
        yield spool
        yield GaugeMetricFamily(
            "sentral_event_loop_lag_seconds", "The event loop's worst lateness since the last scrape", value=self.lag.take()
        )


def health(server: Server) -> tuple[bool, dict[str, Any]]:
    """Whether the server is ready, and what it says about itself."""
    listening = [str(listen) for listen in server.transports.bound]
    writers = (server.writer, server.cdr_writer)
    writing = all(writer.running and not writer.spool_failing for writer in writers)
    spooled = {"bindings": server.writer.spooled, "call_records": server.cdr_writer.spooled}
    endpoint = server.endpoint
    ready = bool(listening) and writing and server.serving
    return ready, {
        "ready": ready,
        "listening": listening,
        "database": ("spooling" if any(spooled.values()) else "ok") if writing else "failing",
        "spooled": spooled,
        "calls": len(endpoint.calls) if endpoint is not None else 0,
        "registrations": len(server.location),
        "draining": bool(endpoint is not None and endpoint.draining),
    }


class MetricsService:
    """The HTTP listener for ``/metrics`` and ``/health``."""

    def __init__(self, server: Server, host: str, port: int) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.lag = LoopLag()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServerCollector(server, self.lag))
        ProcessCollector(namespace="sentral", registry=self.registry)
        self._listener: asyncio.Server | None = None
        self._lag_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen (``OSError`` if the address cannot be had) and start measuring the loop's lag."""
        self._listener = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self._lag_task = asyncio.create_task(self.lag.run(), name="loop-lag")

    @property
    def bound(self) -> str:
        """HOST:PORT the listener got (the port is chosen when 0 was asked for)."""
        assert self._listener is not None
        host, port = self._listener.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            status, content_type, body = self.respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        try:
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                      503: "Service Unavailable"}[status]  # fmt: skip
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def respond(self, head: bytes) -> tuple[int, str, bytes]:
        """The status, content type and body for a request's head."""
        if len(head) > MAX_REQUEST:
            return 400, "text/plain", b"request too large\n"
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, "text/plain", b"bad request\n"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target not in (b"/metrics", b"/health"):
            return 404, "text/plain", b"not found: try /metrics or /health\n"
        if method not in (b"GET", b"HEAD"):
            return 405, "text/plain", b"GET only\n"
        if target == b"/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.registry)
        ready, details = health(self.server)
        return (200 if ready else 503), "application/json", json.dumps(details).encode() + b"\n"


def parse_metrics_address(spec: str) -> tuple[str, int]:
    """HOST:PORT (``[v6]:PORT`` for IPv6) of the metrics listener; ``ValueError`` with a sentence."""
    host, sep, port_text = spec.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--metrics {spec!r}: give HOST:PORT, e.g. 127.0.0.1:9060")
    return host, int(port_text)


__all__ = ["CallTally", "MetricsService", "ServerCollector", "health", "parse_metrics_address"]

"""The event feed under load: 1,000 WebSocket clients connected while SIPp drives calls through Sentral.

The calls are bench_calls.py's (a SIPp uac authenticating as 1001 calls 1002, a SIPp uas; each call
gives the feed call.started, call.ringing, call.answered, call.ended and presence changes of both
extensions), offered at ``--rate`` calls a second for ``--seconds``. The same step runs twice
against one server: first with no client connected (the feed detached: what the engine pays
when nobody listens), then with ``--clients`` clients of the clinic connected to /api/events
with an API token.

The clients run in a process of their own, as raw sockets after the WebSocket handshake, so that
the client process stays cheaper than what it measures. ``--measured`` of them, spread among the
others, split what they read into messages and note the delivery delay of each call event: the
time it was read less the time the engine made it (``at``, on the same machine's clock). The
others read and throw away. A client the server dropped as too slow is counted.

Figures: the delivery delay p50/p99/max over the measured clients' call events; per run the
calls completed a second, failed calls, and the server's CPU over the step, from which the CPU per
call and the share the feed adds. Beside the delay, the round trip of SIP OPTIONS pings sent to
the server every 10 ms during the same run: a delay is never shorter than the server's event loop
takes to get to anything, which on a shared machine is mostly the scheduler's doing. On two
shared cores the client process, SIPp and the server compete for the same CPU: the figures are an
upper bound of what the feed costs.

    .venv/bin/python bench/bench_feed.py [--clients 1000] [--measured 50] [--rate 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_calls import CALLEE, CALLER, caller_scenario
from loadrun import (
    DOMAIN,
    HEADER,
    Step,
    bench_password,
    call_server,
    print_run,
    register_extension,
    run_step,
)

from tests.system.peers import LOOPBACK, Sipp, free_port, write_users_csv
from tests.system.server import sip_options_ping

HERE = Path(__file__).resolve().parent


# -- the client process ------------------------------------------------------------------------


class _Client(asyncio.Protocol):
    """A raw WebSocket client: reads what it is sent; a timing one also splits it into messages
    and notes, for each call event, how long after the engine made it (``at``) it was read."""

    def __init__(self, delays: list[float] | None) -> None:
        self.delays = delays
        self.received = 0
        self.events = 0
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = False
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport) or hasattr(transport, "write")
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if not self.upgraded.done():
            head, _, data = data.partition(b"\r\n\r\n")
            self.upgraded.set_result(head.startswith(b"HTTP/1.1 101"))
        if self.delays is not None:
            self._messages(time.time(), self.buffer + data)

    def _messages(self, now: float, data: bytes) -> None:
        # Server frames are unmasked text frames (RFC 6455 §5.2); only their lengths are needed.
        at = 0
        while len(data) - at >= 2:
            size, start = data[at + 1] & 0x7F, at + 2
            if size == 126:
                if len(data) - at < 4:
                    break
                size, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
            elif size == 127:
                if len(data) - at < 10:
                    break
                size, start = int.from_bytes(data[at + 2 : at + 10], "big"), at + 10
            if len(data) < start + size:
                break
            payload = data[start : start + size]
            at = start + size
            self.events += 1
            if b'"type":"call.' in payload:
                self.delays.append(now - json.loads(payload)["at"])  # type: ignore[union-attr]
        self.buffer = data[at:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_result(False)


async def _connect(host: str, port: int, token: str, delays: list[float] | None) -> _Client:
    _, client = await asyncio.get_running_loop().create_connection(lambda: _Client(delays), host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    client.transport.write(  # type: ignore[attr-defined]
        (
            f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    if not await client.upgraded:
        raise SystemExit("a client was refused by the feed")
    return client


async def clients_worker(url: str, token: str, count: int, measured: int) -> None:
    """Connect the clients, say "ready", read until told to stop on stdin, print the figures."""
    match = re.match(r"http://([^:/]+):(\d+)/", url)
    assert match, url
    host, port = match.group(1), int(match.group(2))
    delays: list[float] = []
    clients: list[_Client] = []
    # The timing clients are spread among the others, so that they sit anywhere in the fan-out.
    every = max(1, count // max(1, measured))
    for start in range(0, count, 100):
        batch = range(start, min(count, start + 100))
        clients += await asyncio.gather(
            *(
                _connect(host, port, token, delays if i % every == 0 and i // every < measured else None)
                for i in batch
            )
        )
    print("ready", flush=True)
    cpu = time.process_time()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    delays.sort()
    timing = [client for client in clients if client.delays is not None]
    result = {
        "clients": len(clients),
        "timing": len(timing),
        "call_events": len(delays),
        "events": sum(client.events for client in timing),
        "dropped": sum(1 for client in clients if client.closed),
        "bytes": sum(client.received for client in clients),
        "cpu": time.process_time() - cpu,
        "p50": _percentile(delays, 0.50),
        "p99": _percentile(delays, 0.99),
        "max": delays[-1] if delays else None,
    }
    print(json.dumps(result), flush=True)
    os._exit(0)  # the clients go with the process; the server cleans up behind them


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(share * len(values)))]


# -- the benchmark -----------------------------------------------------------------------------


class SipProbe:
    """Pings the server with SIP OPTIONS every 10 ms on a thread: how quickly its event loop
    answers anything, the floor under the feed's delivery delay on a busy machine."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.round_trips: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            if sip_options_ping(LOOPBACK, self.port, timeout=2.0) is not None:
                self.round_trips.append(time.perf_counter() - started)
            self._stop.wait(0.01)

    def stop(self) -> list[float]:
        """The round trips, sorted."""
        self._stop.set()
        self._thread.join()
        return sorted(self.round_trips)


def _token(server: Any) -> str:
    out = server.cli("token", "add", "bench", "--clinic", DOMAIN).stdout
    found = re.search(r"\b(sntl_\S+)", out)
    assert found, out
    return found.group(1)


def _cpu_per_call(step: Step) -> str:
    if not step.server_cpu or not step.successful:
        return "-"
    return f"{step.server_cpu / step.successful * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000, help="WebSocket clients connected")
    parser.add_argument("--measured", type=int, default=50, help="of them, clients that time every event")
    parser.add_argument("--rate", type=float, default=100.0, help="calls offered a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--clients-worker", nargs=2, metavar=("URL", "TOKEN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.clients * 2 + 1000)), hard))
    if args.clients_worker:
        url, token = args.clients_worker
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(clients_worker(url, token, args.clients, min(args.measured, args.clients)))
        return 0

    command = "python bench/bench_feed.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rows = [HEADER]
    count = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory(prefix="sentral-bench-") as tmp:
        work = Path(tmp)
        web_port = free_port()
        server = call_server(work, (CALLER, CALLEE))
        server.extra_args += ["--web", f"{LOOPBACK}:{web_port}"]
        server.start()
        assert server.proc is not None
        token = _token(server)
        sipp = Sipp(work / "sipp")
        uas_port = free_port()
        if register_extension(sipp, server, work, CALLEE, uas_port).successful != 1:
            print("the callee did not register")
            server.stop()
            return 1
        callers = write_users_csv(work / "caller.csv", [(CALLER, bench_password(CALLER), DOMAIN, CALLEE)])
        scenario = caller_scenario(work)
        extra = ("-l", str(int(args.rate * 2) + 100))
        try:
            with sipp.running(None, "uas", local_port=uas_port, timeout=3600) as uas:
                uas.wait_listening()
                quiet = run_step(
                    sipp,
                    server.address,
                    scenario,
                    args.rate,
                    count,
                    server_pid=server.proc.pid,
                    users=callers,
                    extra=extra,
                )
                rows.append(quiet.row("no feed"))
                print(rows[-1], flush=True)
                worker = subprocess.Popen(
                    [sys.executable, __file__, "--clients", str(args.clients), "--measured", str(args.measured),
                     "--clients-worker", f"http://{LOOPBACK}:{web_port}/api/events", token],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                assert worker.stdout is not None and worker.stdin is not None
                connecting = time.monotonic()
                line = worker.stdout.readline().strip()
                if line != "ready":
                    print(f"the clients did not connect: {line!r}")
                    worker.kill()
                    return 1
                connected = time.monotonic() - connecting
                time.sleep(1.0)
                probe = SipProbe(server.port)
                fed = run_step(
                    sipp,
                    server.address,
                    scenario,
                    args.rate,
                    count,
                    server_pid=server.proc.pid,
                    users=callers,
                    extra=extra,
                )
                round_trips = probe.stop()
                rows.append(fed.row("feed"))
                print(rows[-1], flush=True)
                time.sleep(1.0)  # the last events on their way
                worker.stdin.write("stop\n")
                worker.stdin.flush()
                figures: dict[str, Any] = json.loads(worker.stdout.readline())
                worker.wait(10)
        finally:
            server.stop()

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f} ms"

    rows += [
        "",
        f"{figures['clients']} clients connected in {connected:.1f} s; {figures['call_events']} call events timed "
        f"by {figures['timing']} of them ({figures['events']} events in all); the clients read "
        f"{figures['bytes'] / 1e6:.1f} MB, using {figures['cpu']:.1f} s of CPU",
        f"delivery delay: p50 {ms(figures['p50'])}, p99 {ms(figures['p99'])}, max {ms(figures['max'])}",
        f"beside it, SIP OPTIONS round trip to the same server: p50 {ms(_percentile(round_trips, 0.5))}, "
        f"p99 {ms(_percentile(round_trips, 0.99))}, max {ms(round_trips[-1] if round_trips else None)} "
        f"({len(round_trips)} pings)",
        f"clients dropped as too slow: {figures['dropped']}",
        f"no feed: {quiet.completed_per_second:.0f} calls/s, {quiet.failed} failed, server CPU per call "
        f"{_cpu_per_call(quiet)}",
        f"feed:    {fed.completed_per_second:.0f} calls/s, {fed.failed} failed, server CPU per call "
        f"{_cpu_per_call(fed)}",
    ]
    if quiet.server_cpu and fed.server_cpu and quiet.successful and fed.successful:
        per_quiet = quiet.server_cpu / quiet.successful
        per_fed = fed.server_cpu / fed.successful
        rows.append(
            f"the feed's cost: {(per_fed / per_quiet - 1) * 100:+.0f} % server CPU per call; at one core that is "
            f"{1 / per_quiet:.0f} calls/s without clients against {1 / per_fed:.0f} with them"
        )
    print_run(
        f"Event feed: {args.clients} WebSocket clients while SIPp offers {args.rate:g} calls/s", command, rows
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

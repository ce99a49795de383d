"""Concurrent dialogs held through the B2BUA, and the memory each call costs.

Two measures:

1. The real server. A SIPp uac calls, through Sentral, a SIPp uas registered to it, at ``--rate``
   calls a second up to ``--calls`` calls at once (``-l``), and holds each call for as long as it
   takes to set them all up, let their transactions end and watch the server idle
   (tests/system/scenarios/call_auth_uac.xml with a pause: bench/scenarios/dialogs_uac.xml).
   Every call is two dialogs in Sentral (the caller's leg and the callee's). Reported: the most
   calls held at once with no failed call, the server's resident memory before the first call and
   with all of them up, (RSS at N - RSS before) / N, and the CPU of the server and of both SIPp
   processes while the calls sit idle (session timers at their default 1800 s, no retransmission
   due: that should cost next to nothing). The SIPp uas holds the same N dialogs on the other side;
   its memory per call is printed next to Sentral's as the reference.

   The RSS is read once the transactions of the last calls have ended (``--settle``, 35 s:
   Timers L, M and J are 32 s), so the figure is what a held call costs, not the burst of setting
   it up. Over UDP one socket serves every call on each side: no file descriptors per call. The
   sockets' receive buffers are raised to 4 MiB (Sentral does so itself; SIPp with -buff_size).

2. In process. The same call, message by message, through the real Endpoint with the network and
   the database taken out (as bench_call_path.py does), ``--in-process`` calls kept up, every
   transaction run to its end; the memory still allocated (tracemalloc) divided by the number of
   calls, and where it lives, by source file. Per-call state outside the calls (the nonce-count
   table of the digest authority, the abuse guard's per-source state) is counted in as it is held
   at that moment.

    .venv/bin/python bench/bench_dialogs.py [--calls 20000] [--rate 250] [--in-process 20000]
        [--settle 35] [--window 15] [--skip-server] [--skip-in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shlex
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_call_path import (  # noqa: E402
    CALLEE,
    CALLEE_PORT,
    CALLER,
    DOMAIN,
    LISTEN,
    SDP_A,
    SDP_B,
    InstantWriter,
    bench_world,
    callee_response,
    caller_request,
    only,
    proxy_authorization,
    to_tag,
)
from loadrun import (  # noqa: E402
    add_mode_argument,
    bench_password,
    call_server,
    mode_name,
    process_cpu,
    process_rss,
    register_extension,
)

from sentral.pbx.endpoint import Endpoint  # noqa: E402
from sentral.pbx.guard import Guard  # noqa: E402
from sentral.pbx.registrar import Registrar, RegistrarPolicy  # noqa: E402
from sentral.pbx.sip.auth import DigestAuthority  # noqa: E402
from sentral.pbx.sip.transaction import TransactionLayer  # noqa: E402
from sentral.pbx.transport import Origin  # noqa: E402
from tests.system.peers import Sipp, SippProcess, free_port, read_last_stats_row, write_users_csv  # noqa: E402

SCENARIOS = HERE.parent / "tests" / "system" / "scenarios"
CALLER_SCENARIO = HERE / "scenarios" / "dialogs_uac.xml"
TARGET_CALLS = 20_000
TARGET_BYTES = 20 * 1024
SOCKET_BUFFER = str(4 * 1024 * 1024)
MIB = 2**20


# -- 1. the real server ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """What SIPp's statistics and /proc said at one moment of the ramp."""

    at: float
    up: int  # SIPp's CurrentCall: calls in progress
    created: int
    failed: int
    retransmissions: int
    server_rss: int
    callee_rss: int


def counter(stats: dict[str, str], column: str) -> int:
    value = stats.get(column, "")
    return int(value) if value.isdigit() else 0


def sample(uac: SippProcess, server_pid: int, callee_pid: int, started: float) -> Sample:
    stats = read_last_stats_row(uac.stat_file)
    return Sample(
        at=time.monotonic() - started,
        up=counter(stats, "CurrentCall"),
        created=counter(stats, "OutgoingCall(C)"),
        failed=counter(stats, "FailedCall(C)"),
        retransmissions=counter(stats, "Retransmissions(C)"),
        server_rss=process_rss(server_pid),
        callee_rss=process_rss(callee_pid),
    )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def through_server(
    calls: int, rate: float, settle: float, window: float, milestone: int, *, tuned: bool = False
) -> list[str]:
    """Hold ``calls`` calls up through a real server; the report's lines."""
    ramp = calls / rate
    hold = ramp + settle + window + 10.0
    lines: list[str] = []

    def emit(*new: str) -> None:
        lines.extend(new)
        print("\n".join(new), flush=True)

    emit(f"before: {load()}")
    with tempfile.TemporaryDirectory(prefix="sentral-dialogs-") as tmp:
        work = Path(tmp)
        sipp = Sipp(work / "sipp")
        server = call_server(work, (CALLER, CALLEE), tuned=tuned)
        server.start()
        assert server.proc is not None
        server_pid = server.proc.pid
        emit(f"server: {shlex.join(server.serve_command())}")
        try:
            uas_port = free_port()
            registered = register_extension(sipp, server, work, CALLEE, uas_port)
            if registered.successful != 1:
                emit(f"the callee did not register:\n{registered}")
                return lines
            callers = write_users_csv(work / "caller.csv", [(CALLER, bench_password(CALLER), DOMAIN, CALLEE)])
            buffers = ("-buff_size", SOCKET_BUFFER)
            with sipp.running(None, "uas", local_port=uas_port, timeout=2 * hold + 120, extra=buffers) as uas:
                uas.wait_listening()
                time.sleep(1.0)
                callee_pid = uas.proc.pid
                server_before, callee_before = process_rss(server_pid), process_rss(callee_pid)
                emit(f"callee: {shlex.join(uas.command)}")
                cpu_before = process_cpu(server_pid)
                started = time.monotonic()
                with sipp.running(
                    server.address, CALLER_SCENARIO, users=callers, calls=calls, rate=rate, limit=calls,
                    timeout=2 * hold + 60, auth_uri=DOMAIN, extra=(*buffers, "-d", str(int(hold * 1000))),
                ) as uac:  # fmt: skip
                    emit(f"caller: {shlex.join(uac.command)}")
                    samples: list[Sample] = []
                    next_mark = milestone
                    emit(f"{'t (s)':>7} {'calls up':>9} {'failed':>7} {'retrans':>8} "
                         f"{'server RSS':>11} {'per call':>9} {'callee RSS':>11}")  # fmt: skip

                    def row(s: Sample) -> str:
                        per_call = (s.server_rss - server_before) / s.up if s.up else 0.0
                        return (
                            f"{s.at:7.1f} {s.up:>9,} {s.failed:>7} {s.retransmissions:>8} "
                            f"{s.server_rss / MIB:>8.1f} MiB {per_call:>7,.0f} B {s.callee_rss / MIB:>7.1f} MiB"
                        )

                    # The ramp: until every call is created and up, or one fails, or it stalls.
                    deadline = started + ramp * 3 + 30
                    while time.monotonic() < deadline and uac.proc.poll() is None:
                        time.sleep(0.5)
                        s = sample(uac, server_pid, callee_pid, started)
                        samples.append(s)
                        if s.up >= next_mark:
                            emit(row(s))
                            next_mark = (s.up // milestone + 1) * milestone
                        if s.failed or (s.created >= calls and s.up >= calls):
                            break
                    ramp_wall = time.monotonic() - started
                    ramp_cpu = process_cpu(server_pid) - cpu_before
                    last = samples[-1] if samples else None
                    clean = [s.up for s in samples if s.failed == 0]
                    held = max(clean, default=0)
                    if last is None or last.failed or last.up < calls:
                        emit(row(last) if last else "no statistics from SIPp")
                        emit(
                            f"stopped: {last.failed if last else '?'} failed calls; the most held with none "
                            f"failed: {held:,}; server CPU {ramp_cpu / ramp_wall * 100:.0f} % of one core "
                            f"over the {ramp_wall:.0f} s ramp; {load()}"
                        )
                        return lines
                    emit(
                        f"ramp: {calls:,} calls up in {ramp_wall:.0f} s at {rate:.0f}/s offered; server CPU "
                        f"{ramp_cpu / ramp_wall * 100:.0f} % of one core while setting them up"
                    )
                    # Idle: let the last transactions end, then measure memory and CPU.
                    time.sleep(settle)
                    s = sample(uac, server_pid, callee_pid, started)
                    emit(row(s))
                    listed = [c for c in server.cli_json("calls") if c.get("state") == "answered"]
                    server_cpu, uac_cpu, uas_cpu = (
                        process_cpu(p) for p in (server_pid, uac.proc.pid, callee_pid)
                    )
                    time.sleep(window)
                    idle = [
                        (process_cpu(p) - before) / window * 100
                        for p, before in (
                            (server_pid, server_cpu),
                            (uac.proc.pid, uac_cpu),
                            (callee_pid, uas_cpu),
                        )
                    ]
                    at_n = sample(uac, server_pid, callee_pid, started)
                    if at_n.failed:
                        emit(f"{at_n.failed} calls failed while held")
                    per_call = (at_n.server_rss - server_before) / at_n.up
                    callee_per_call = (at_n.callee_rss - callee_before) / at_n.up
                    emit(
                        "",
                        f"held: {at_n.up:,} calls at once ({2 * at_n.up:,} dialogs in Sentral), "
                        f"{at_n.failed} failed, {at_n.retransmissions} retransmissions; "
                        f"`sentral calls` lists {len(listed):,} answered",
                        f"server RSS: {server_before / MIB:.1f} MiB before the first call, "
                        f"{at_n.server_rss / MIB:.1f} MiB with {at_n.up:,} up: {per_call:,.0f} bytes per call "
                        f"(target at most {TARGET_BYTES:,})",
                        f"reference, the SIPp uas holding the callee's side of the same calls: "
                        f"{callee_per_call:,.0f} bytes per call",
                        f"CPU while the calls sit idle ({window:.0f} s): server {idle[0]:.1f} %, SIPp uac "
                        f"{idle[1]:.1f} %, SIPp uas {idle[2]:.1f} % of one core",
                    )
                    # The calls end by themselves: every caller hangs up once its hold is over.
                    result = uac.wait()
                emit(
                    f"teardown: {result.successful:,} calls completed, {result.failed} failed "
                    f"(SIPp exit {result.returncode})"
                )
                time.sleep(2.0)
                emit(f"server RSS after every call ended: {process_rss(server_pid) / MIB:.1f} MiB")
        finally:
            server.stop(timeout=60)
    emit(f"after: {load()}")
    return lines


# -- 2. in process --------------------------------------------------------------------------------


async def in_process(n: int) -> list[str]:
    """Set up ``n`` calls through the Endpoint, keep them up, and weigh what they hold."""
    loop = asyncio.get_running_loop()
    directory, transports, location = bench_world()
    layer = TransactionLayer()
    endpoint = Endpoint(
        transports,  # type: ignore[arg-type]
        layer,
        Registrar(DigestAuthority(b"b" * 32), location, RegistrarPolicy()),
        location,
        InstantWriter(loop),  # type: ignore[arg-type]
        Guard(),
        lambda: directory,
    )
    endpoint.attach(loop)
    callee = Origin("udp", "127.0.0.1", CALLEE_PORT, LISTEN)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        port = 20000 + i % 40000
        caller = Origin("udp", "127.0.0.1", port, LISTEN)
        endpoint.on_message(caller_request("INVITE", i, port, 1, sdp=SDP_A), caller)
        challenge = only(transports.take(), b"SIP/2.0 407")
        ack = caller_request("ACK", i, port, 1, to_tag=to_tag(challenge), branch=f"z9hG4bK-{i}-1-INVITE")
        endpoint.on_message(ack, caller)
        endpoint.on_message(
            caller_request("INVITE", i, port, 2, auth=proxy_authorization(challenge), sdp=SDP_A), caller
        )
        b_invite = only(transports.take(), b"INVITE ")
        endpoint.on_message(callee_response(b_invite, 180, "Ringing", f"b{i}"), callee)
        transports.take()
        endpoint.on_message(callee_response(b_invite, 200, "OK", f"b{i}", SDP_B), callee)
        ok = only(transports.take(), b"SIP/2.0 200")
        contact = ok.split(b"\r\nContact: <", 1)[1].split(b">", 1)[0].decode()
        endpoint.on_message(caller_request("ACK", i, port, 2, to_tag=to_tag(ok), ruri=contact), caller)
        transports.take()
        if i % 512 == 0:
            await asyncio.sleep(0)
    # Run every transaction to its end (Timers L, M, J: 32 s), and the calls' own timers due by
    # then (the fork state they keep for 64*T1 after the answer), as a server holding calls for
    # longer than that would have; the session refresh at 900 s stays due later.
    later = time.monotonic() + 60
    endpoint._run(layer.on_timer(later), None)
    endpoint.calls.on_timer(later)
    transports.take()
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    live = len(endpoint.calls)
    if live != n:
        raise SystemExit(f"{live} calls up in process, expected {n}")
    root = str(HERE.parent) + os.sep
    lines = [
        f"in process, {n:,} calls up through the endpoint (every transaction ended, forks settled): "
        f"{held / n:,.0f} bytes per call (tracemalloc; target at most {TARGET_BYTES:,})",
        "  where it lives (bytes per call, by the file that allocated it):",
    ]
    for stat in snapshot.statistics("filename")[:8]:
        name = stat.traceback[0].filename.removeprefix(root)
        lines.append(f"  {stat.size / n:>8,.0f}  {name}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls", type=int, default=TARGET_CALLS, help="calls to hold at once through the server"
    )
    parser.add_argument("--rate", type=float, default=250.0, help="new calls a second while ramping up")
    parser.add_argument(
        "--settle", type=float, default=35.0, help="seconds between the last call up and the RSS"
    )
    parser.add_argument("--window", type=float, default=15.0, help="seconds over which idle CPU is measured")
    parser.add_argument("--milestone", type=int, default=2500, help="print a row every this many calls up")
    parser.add_argument(
        "--in-process", type=int, default=TARGET_CALLS, help="calls held in the in-process measure"
    )
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    add_mode_argument(parser)
    args = parser.parse_args()
    if min(args.calls, args.in_process, args.milestone) < 1 or args.rate <= 0:
        parser.error("--calls, --in-process, --milestone and --rate must be positive")
    print("command: python bench/bench_dialogs.py " + shlex.join(sys.argv[1:]), flush=True)
    report: list[str] = []
    if not args.skip_in_process:
        report += asyncio.run(in_process(args.in_process))
        print("\n".join(report), flush=True)
    if not args.skip_server:
        title = (
            f"{args.calls:,} calls held through the B2BUA over UDP (SIPp uac -> Sentral -> SIPp uas), "
            f"{mode_name(args.tuned)}"
        )
        print(f"\n{title}\n{'=' * len(title)}", flush=True)
        report += through_server(
            args.calls, args.rate, args.settle, args.window, args.milestone, tuned=args.tuned
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

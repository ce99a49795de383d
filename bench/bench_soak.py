"""A long soak: steady calls and phones re-registering, with the server's memory sampled over time.

SIPp places calls through Sentral at ``--rate`` a second (INVITE with digest auth, 180, 200, ACK,
200 ms of talk, BYE) to a SIPp uas registered as 1002, while ``--phones`` extensions re-register
every ``--refresh`` seconds from their own SIPp. Every ``--sample`` seconds a row gives the time,
the calls completed and failed so far, the registrations completed and failed, the server's
resident memory and its open file descriptors; at the end, the growth of the resident memory from the first minute's sample to
the last. The server runs in the configuration a clinic runs (media anchored, calls logged at
info) unless ``--tuned``.

``--tracemalloc DIR`` runs the server under tracemalloc and writes a snapshot into DIR at every
sample (the server is started through a small launcher that dumps one on SIGUSR2), then prints the
allocation sites whose memory grew most between the first minute's snapshot and the last. It
slows the server several times over, so run it at a lower rate, for finding where memory goes
rather than for the figure.

    .venv/bin/python bench/bench_soak.py --minutes 60 --rate 200
    .venv/bin/python bench/bench_soak.py --minutes 5 --rate 50 --tracemalloc /tmp/soak-snapshots
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from loadrun import (
    DOMAIN,
    add_mode_argument,
    bench_password,
    call_server,
    mode_name,
    process_cpu,
    process_rss,
    register_extension,
)

from tests.system.peers import Sipp, free_port, read_last_stats_row, write_users_csv

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE.parent / "tests" / "system" / "scenarios"
CALLER, CALLEE = "1001", "1002"

# Runs `sentral` as the console script would, with tracemalloc on and a snapshot on SIGUSR2.
LAUNCHER = """
import signal, sys, tracemalloc
tracemalloc.start(12)
counter = iter(range(1_000_000))
def dump(*_):
    tracemalloc.take_snapshot().dump(f"{DIR}/snapshot-{next(counter):04d}.bin")
signal.signal(signal.SIGUSR2, dump)
from sentral.cli import main
sys.argv[0] = "sentral"
main()
"""


def open_files(pid: int) -> int:
    """How many file descriptors the process holds (sockets of the relay among them)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def counter(row: dict[str, str], column: str) -> int:
    try:
        return int(row.get(column, "0") or 0)
    except ValueError:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the soak runs")
    parser.add_argument("--rate", type=float, default=200.0, help="calls a second")
    parser.add_argument("--phones", type=int, default=200, help="extensions that keep re-registering")
    parser.add_argument("--refresh", type=float, default=60.0, help="seconds between a phone's registrations")
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between rows")
    parser.add_argument("--tracemalloc", type=Path, help="write tracemalloc snapshots of the server here")
    add_mode_argument(parser)
    args = parser.parse_args()
    seconds = args.minutes * 60
    print("command: python bench/bench_soak.py " + shlex.join(sys.argv[1:]))
    print(f"server: {mode_name(args.tuned)}", flush=True)
    phones = [str(3000 + i) for i in range(args.phones)]
    with tempfile.TemporaryDirectory(prefix="sentral-soak-") as tmp:
        work = Path(tmp)
        sipp = Sipp(work / "sipp")
        server = call_server(work, (CALLER, CALLEE, *phones), tuned=args.tuned)
        if args.tracemalloc is not None:
            args.tracemalloc.mkdir(parents=True, exist_ok=True)
            code = LAUNCHER.replace("{DIR}", str(args.tracemalloc.resolve()))
            server.command = [sys.executable, "-c", code]
        server.start(timeout=120)
        assert server.proc is not None
        pid = server.proc.pid
        try:
            uas_port = free_port()
            registered = register_extension(sipp, server, work, CALLEE, uas_port)
            if registered.successful != 1:
                print(f"the callee did not register:\n{registered}")
                return 1
            callers = write_users_csv(work / "caller.csv", [(CALLER, bench_password(CALLER), DOMAIN, CALLEE)])
            phone_users = write_users_csv(work / "phones.csv", [(p, bench_password(p), DOMAIN) for p in phones])
            calls_total = int(args.rate * seconds)
            registrations_total = int(args.phones / args.refresh * seconds) + args.phones
            with (
                sipp.running(None, "uas", local_port=uas_port, timeout=seconds + 120) as uas,
                sipp.running(
                    server.address, SCENARIOS / "register_auth.xml", users=phone_users,
                    calls=registrations_total, rate=args.phones / args.refresh, timeout=seconds + 60,
                    auth_uri=DOMAIN, extra=["-rate_max", str(args.phones)],
                ) as registrar,
                sipp.running(
                    server.address, SCENARIOS / "call_auth_uac.xml", users=callers, calls=calls_total,
                    rate=args.rate, timeout=seconds + 60, auth_uri=DOMAIN, limit=int(args.rate * 2) + 100,
                ) as uac,
            ):  # fmt: skip
                uas.wait_listening()
                started = time.monotonic()
                cpu_before = process_cpu(pid)
                print(
                    f"{'minute':>7} {'calls ok':>9} {'failed':>7} {'regs ok':>8} {'failed':>7} {'RSS MiB':>8} "
                    f"{'fds':>6} {'CPU':>5}"
                )
                samples: list[tuple[float, int]] = []
                last_cpu, last_at = cpu_before, started
                while True:
                    time.sleep(max(0.0, args.sample - (time.monotonic() - last_at)))
                    now = time.monotonic()
                    if server.proc.poll() is not None:
                        print("the server exited", flush=True)
                        return 1
                    rss = process_rss(pid)
                    cpu = process_cpu(pid)
                    if args.tracemalloc is not None:
                        os.kill(pid, signal.SIGUSR2)
                    calls = read_last_stats_row(uac.stat_file)
                    regs = read_last_stats_row(registrar.stat_file)
                    elapsed = now - started
                    samples.append((elapsed, rss))
                    print(
                        f"{elapsed / 60:>7.1f} {counter(calls, 'SuccessfulCall(C)'):>9} "
                        f"{counter(calls, 'FailedCall(C)'):>7} {counter(regs, 'SuccessfulCall(C)'):>8} "
                        f"{counter(regs, 'FailedCall(C)'):>7} {rss / 2**20:>8.1f} {open_files(pid):>6} "
                        f"{(cpu - last_cpu) / (now - last_at) * 100:>4.0f}%",
                        flush=True,
                    )
                    last_cpu, last_at = cpu, now
                    if elapsed >= seconds or uac.proc.poll() is not None:
                        break
                result = uac.wait(120)
                regs_result = registrar.wait(120)
        finally:
            server.stop(timeout=60)
    print(f"\ncalls: {result}\nregistrations: {regs_result}")
    after_first_minute = next((rss for at, rss in samples if at >= 60), samples[0][1])
    last = samples[-1][1]
    print(
        f"RSS after the first minute {after_first_minute / 2**20:.1f} MiB, at the end {last / 2**20:.1f} MiB: "
        f"{(last / after_first_minute - 1) * 100:+.1f} %"
    )
    if args.tracemalloc is not None:
        growth(args.tracemalloc, samples)
    return 0


def growth(directory: Path, samples: list[tuple[float, int]]) -> None:
    """The allocation sites that grew most from the first minute's snapshot to the last."""
    snapshots = sorted(directory.glob("snapshot-*.bin"))
    if len(snapshots) < 2:
        print("fewer than two snapshots: nothing to compare")
        return
    first_index = next((i for i, (at, _) in enumerate(samples) if at >= 60), 0)
    first = tracemalloc.Snapshot.load(str(snapshots[min(first_index, len(snapshots) - 2)]))
    last = tracemalloc.Snapshot.load(str(snapshots[-1]))
    filters = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
    diff = last.filter_traces(filters).compare_to(first.filter_traces(filters), "traceback")
    print("\nwhere the memory grew (tracemalloc, first minute -> end), top 15:")
    for stat in diff[:15]:
        print(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks")
        for line in stat.traceback.format()[-8:]:
            print(f"      {line}")


if __name__ == "__main__":
    sys.exit(main())

"""A long soak: steady calls and phones re-registering, with the server's memory sampled over time.

SIPp places calls through Sentral at ``--rate`` a second (INVITE with digest auth, 180, 200, ACK,
200 ms of talk, BYE) to a SIPp uas registered as 1002, while ``--phones`` extensions re-register
every ``--refresh`` seconds from their own SIPp. Every ``--sample`` seconds a row gives the time,
the calls completed and failed so far, the registrations completed and failed, the server's
resident memory and its open file descriptors; at the end, the growth of the resident memory from the first minute's sample to
the last. The server runs in the configuration a clinic runs (media anchored, calls logged at
info) unless ``--tuned``.

As in ``bench_calls.py``, each anchored call opens two relay endpoints and its SDP names them,
but SIPp sends no RTP: the relay's sockets and their reuse are exercised, not its packet path.

``--probe DIR`` starts the server through a small launcher that, on SIGUSR2 (sent at every
sample), appends one JSON line to DIR/probe.jsonl: resident memory (anonymous and file-backed),
Python's allocated blocks, glibc's heap (in use and free, from ``mallinfo2``), SQLite's memory,
the objects the collector tracks, and the length of every container of 200 or more held by
sentral's objects (found from the running tasks, since start-up's objects are frozen out of the
collector's view). With ``SOAK_COLLECT=1`` in the environment the probe also runs a full
collection and names the types of the reference cycles it freed; with ``SOAK_TRIM=1`` it calls
``malloc_trim`` and records the memory after. ``--tracemalloc DIR`` does the same and runs the
server under tracemalloc, writing a snapshot into DIR at every sample, then prints the
allocation sites whose memory grew most between the first minute's snapshot and the last. It
slows the server several times over, so run it at a lower rate, for finding where memory goes
rather than for the figure. Nothing of this is in the server itself.

    .venv/bin/python bench/bench_soak.py --minutes 60 --rate 200
    .venv/bin/python bench/bench_soak.py --minutes 10 --rate 100 --probe /tmp/soak-probe
    .venv/bin/python bench/bench_soak.py --minutes 5 --rate 12 --tracemalloc /tmp/soak-snapshots
"""

from __future__ import annotations

import argparse
import json
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

# Runs `sentral` as the console script would, with a probe on SIGUSR2: one JSON line into
# DIR/probe.jsonl with the process's memory as the allocators see it (Python's blocks, glibc's
# heap, SQLite's caches, resident anonymous and file-backed pages) and the sizes of the largest
# containers held by sentral's objects, and a tracemalloc snapshot when tracing is on.
LAUNCHER = """
import ctypes, ctypes.util, gc, json, os, signal, sys, time, tracemalloc
if os.environ.get("SOAK_TRACEMALLOC"):
    tracemalloc.start(12)
counter = iter(range(1_000_000))
libc = ctypes.CDLL(None)
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
sqlite = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
sqlite.sqlite3_memory_used.restype = ctypes.c_int64
def status():
    fields = {}
    for line in open("/proc/self/status"):
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[name] = int(value.split()[0]) * 1024
    return fields
def containers():
    # The tables were made at start-up and the server froze them out of the collector's view
    # (gc.freeze), so walk from what it still sees (young objects, sentral's modules) through
    # sentral's objects and the small containers between them.
    def ours(obj):
        return (getattr(type(obj), "__module__", "") or "").startswith("sentral.")
    seen, sizes = set(), {}
    todo = [o for o in gc.get_objects() if ours(o)]
    todo += [m for name, m in list(sys.modules.items()) if name.startswith("sentral")]
    import asyncio.tasks
    for task in list(asyncio.tasks._all_tasks):
        coro = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                todo.extend(v for v in frame.f_locals.values() if ours(v))
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        names = list(getattr(obj, "__dict__", {}))
        for klass in type(obj).__mro__:
            names.extend(getattr(klass, "__slots__", ()))
        for name in names:
            value = getattr(obj, name, None)
            if ours(value):
                todo.append(value)
            elif isinstance(value, (dict, list, set, frozenset, tuple)) or type(value).__name__ == "deque":
                if len(value) >= 200:
                    key = f"{getattr(type(obj), '__qualname__', type(obj).__name__)}.{name}"
                    sizes[key] = sizes.get(key, 0) + len(value)
                elif len(value) < 50:
                    items = value.values() if isinstance(value, dict) else value
                    todo.extend(item for item in items if ours(item))
    return sizes
def probe(*_):
    n = next(counter)
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(f"{DIR}/snapshot-{n:04d}.bin")
    info = libc.mallinfo2()
    row = {"n": n, "at": time.time(), **status(), "py_blocks": sys.getallocatedblocks(),
           "traced": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None,
           "malloc_arena": info.arena, "malloc_mmap": info.hblkhd, "malloc_used": info.uordblks,
           "malloc_free": info.fordblks, "sqlite": sqlite.sqlite3_memory_used(), "gc_objects": len(gc.get_objects()),
           "containers": containers()}
    if os.environ.get("SOAK_COLLECT"):
        # What a full collection finds now: reference cycles that wait for it in the old generation.
        gc.set_debug(gc.DEBUG_SAVEALL)
        row["collected"] = gc.collect()
        kinds = {}
        for obj in gc.garbage:
            name = f"{getattr(type(obj), '__module__', '')}.{type(obj).__qualname__}"
            kinds[name] = kinds.get(name, 0) + 1
        row["garbage"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:25])
        gc.garbage.clear()
        gc.set_debug(0)
    if os.environ.get("SOAK_TRIM"):
        libc.malloc_trim(0)
        row["after_trim"] = status()
    with open(f"{DIR}/probe.jsonl", "a") as out:
        out.write(json.dumps(row) + "\\n")
signal.signal(signal.SIGUSR2, probe)
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
    parser.add_argument(
        "--probe", type=Path,
        help="write a line of the server's memory by allocator and its largest containers here at every sample",
    )
    add_mode_argument(parser)
    args = parser.parse_args()
    # Stopped early with SIGTERM, the soak still stops the server and its SIPp peers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    seconds = args.minutes * 60
    print("command: python bench/bench_soak.py " + shlex.join(sys.argv[1:]))
    print(f"server: {mode_name(args.tuned)}", flush=True)
    phones = [str(3000 + i) for i in range(args.phones)]
    with tempfile.TemporaryDirectory(prefix="sentral-soak-") as tmp:
        work = Path(tmp)
        sipp = Sipp(work / "sipp")
        server = call_server(work, (CALLER, CALLEE, *phones), tuned=args.tuned)
        probe_dir = args.tracemalloc if args.tracemalloc is not None else args.probe
        if probe_dir is not None:
            probe_dir.mkdir(parents=True, exist_ok=True)
            code = LAUNCHER.replace("{DIR}", str(probe_dir.resolve()))
            server.command = [sys.executable, "-c", code]
            if args.tracemalloc is not None:
                server.env["SOAK_TRACEMALLOC"] = "1"
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
                    if probe_dir is not None:
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
    if probe_dir is not None:
        probe_rows(probe_dir)
    if args.tracemalloc is not None:
        growth(args.tracemalloc, samples)
    return 0


def probe_rows(directory: Path) -> None:
    """The probe's lines as a table: where the resident memory is, sample by sample."""
    path = directory / "probe.jsonl"
    if not path.exists():
        return
    mib = 2**20
    print(f"\n{'sample':>6} {'RSS':>7} {'anon':>7} {'heap':>7} {'in use':>7} {'free':>6} {'py blocks':>10} largest containers")
    for line in path.read_text().splitlines():
        row = json.loads(line)
        largest = sorted(row["containers"].items(), key=lambda item: -item[1])[:3]
        print(
            f"{row['n']:>6} {row['VmRSS'] / mib:>7.1f} {row['RssAnon'] / mib:>7.1f} {row['malloc_arena'] / mib:>7.1f} "
            f"{row['malloc_used'] / mib:>7.1f} {row['malloc_free'] / mib:>6.1f} {row['py_blocks']:>10} "
            + ", ".join(f"{name} {size}" for name, size in largest)
        )


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

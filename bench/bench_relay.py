"""RTP relay throughput: N concurrent G.711 calls through Sentral's relay, against no relay at all.

Each call is two phones, each sending 50 packets/s of 172 bytes (12 header + 160 PCMU) to the
other. Three processes share the phones' UDP sockets (created before forking): a generator that
sends on them, a receiver that reads them and checks every stream for loss and reordering, and
the relay, which runs ``sentral.media.relay.Relay`` on the event loop Sentral uses (uvloop when
installed) with one session per call, its endpoints told the phones' addresses as an SDP would.

For each N the same generator and receiver run twice: through the relay (phone A sends to its
relay port, the relay forwards to phone B) and straight from phone to phone, the baseline. The
relay's CPU time is measured from just before the first packet to just after the last, and
divided by the packets it forwarded. Steps stop at the first N with any loss; the highest N
without loss is the figure.

    .venv/bin/python bench/bench_relay.py [--calls 100,250,500,750,1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import resource
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sentral.media.latch import PortPool  # noqa: E402
from sentral.media.relay import Relay  # noqa: E402

HOST = "127.0.0.1"
PACKET = 172
PTIME = 0.02
GROUPS = 10  # streams are spread over ten phases of each 20 ms tick, as real calls are
SOCKET_BUFFER = 1 << 20
_HEADER = struct.Struct("!BBHII")

Address = tuple[str, int]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def phone_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


# -- the relay process ---------------------------------------------------------------------------


def relay_process(
    conn: multiprocessing.connection.Connection,
    phones: list[tuple[Address, Address]],
    ports: tuple[int, int],
    use_uvloop: bool,
) -> None:
    """Open one session per call, report the ports, then measure CPU between 'start' and 'stop'."""
    factory = None
    if use_uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_relay(conn, phones, ports))


async def _relay(
    conn: multiprocessing.connection.Connection, phones: list[tuple[Address, Address]], ports: tuple[int, int]
) -> None:
    loop = asyncio.get_running_loop()
    relay = Relay(HOST, PortPool(*ports))
    sessions = []
    for a, b in phones:
        session = relay.session()
        session.a.set_remote(a)
        session.b.set_remote(b)
        sessions.append(session)
    messages: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: messages.put_nowait(conn.recv()))
    conn.send(("ports", [(s.a.port, s.b.port) for s in sessions], type(loop).__module__))
    assert await messages.get() == "start"
    before = cpu()
    assert await messages.get() == "stop"
    used = cpu() - before
    forwarded = sum(s.a.rtp.packets_out + s.b.rtp.packets_out for s in sessions)
    dropped = sum(s.a.rtp.dropped + s.b.rtp.dropped for s in sessions)
    loop.remove_reader(conn.fileno())
    conn.send(("done", used, forwarded, dropped))
    relay.close()


# -- generator and receiver ----------------------------------------------------------------------


def generator_process(
    conn: multiprocessing.connection.Connection,
    socks: list[socket.socket],
    targets: list[Address],
    seconds: float,
    start_at: float,
) -> None:
    """Send 50 packets/s on every phone socket to its target; report packets sent and CPU."""
    streams = len(socks)
    packets = [bytearray(PACKET) for _ in range(streams)]
    for i, packet in enumerate(packets):
        packet[12:] = b"\xff" * (PACKET - 12)
        _HEADER.pack_into(packet, 0, 0x80, 0, 0, 0, i + 1)  # SSRC names the stream
    groups = [list(range(g, streams, GROUPS)) for g in range(GROUPS)]
    ticks = round(seconds / PTIME)
    sent = 0
    failed = 0
    before = cpu()
    pack = _HEADER.pack_into
    for tick in range(ticks):
        for g, members in enumerate(groups):
            due = start_at + tick * PTIME + g * (PTIME / GROUPS)
            ahead = due - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            elif ahead < -2 * PTIME:
                # Starved of CPU: skip this slot rather than burst, so that a run keeps its
                # length and the shortfall shows as a lower offered rate, not as loss.
                continue
            timestamp = tick * 160
            for i in members:
                packet = packets[i]
                pack(packet, 0, 0x80, 0, tick & 0xFFFF, timestamp, i + 1)
                try:
                    socks[i].sendto(packet, targets[i])
                    sent += 1
                except OSError:
                    failed += 1
    conn.send((sent, failed, cpu() - before, time.monotonic() - start_at))


def receiver_process(
    conn: multiprocessing.connection.Connection, socks: list[socket.socket], streams: int
) -> None:
    """Read every phone socket until told to stop; count packets, losses and reorders per stream."""
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    poller.register(conn.fileno(), select.EPOLLIN)
    buf = bytearray(2048)
    highest = [-1] * (streams + 1)
    count = [0] * (streams + 1)
    reordered = 0
    foreign = 0
    unpack = _HEADER.unpack_from
    running = True
    before = cpu()
    while running:
        for fd, _ in poller.poll(0.5):
            if fd == conn.fileno():
                conn.recv()
                running = False
                continue
            recv = by_fd[fd].recv_into
            while True:
                try:
                    n = recv(buf)
                except BlockingIOError:
                    break
                if n != PACKET:
                    foreign += 1
                    continue
                _, _, seq, _, ssrc = unpack(buf, 0)
                if not 0 < ssrc <= streams:
                    foreign += 1
                    continue
                count[ssrc] += 1
                if seq < highest[ssrc]:
                    reordered += 1
                else:
                    highest[ssrc] = seq
    conn.send((sum(count), reordered, foreign, cpu() - before))


@dataclass(frozen=True, slots=True)
class Run:
    calls: int
    offered: int
    sent: int
    received: int
    reordered: int
    generator_cpu: float
    receiver_cpu: float
    wall: float
    relay_cpu: float | None = None
    forwarded: int | None = None
    relay_dropped: int | None = None
    loop: str = ""

    @property
    def lost(self) -> int:
        return self.sent - self.received


def run_once(
    calls: int, seconds: float, ports: tuple[int, int], *, through_relay: bool, use_uvloop: bool
) -> Run:
    context = multiprocessing.get_context("fork")
    phones = [(phone_socket(), phone_socket()) for _ in range(calls)]
    socks = [s for pair in phones for s in pair]  # stream 2i is A of call i, 2i+1 is B
    addresses: list[Address] = [(HOST, s.getsockname()[1]) for s in socks]
    relay_conn = None
    relay = None
    loop_name = ""
    if through_relay:
        relay_conn, child = context.Pipe()
        pairs = [(addresses[2 * i], addresses[2 * i + 1]) for i in range(calls)]
        relay = context.Process(target=relay_process, args=(child, pairs, ports, use_uvloop), daemon=True)
        relay.start()
        tag, relay_ports, loop_name = relay_conn.recv()
        assert tag == "ports"
        targets = [(HOST, relay_ports[i // 2][i % 2]) for i in range(2 * calls)]
    else:
        # Baseline: each phone sends straight to the other phone of its call.
        targets = [addresses[i ^ 1] for i in range(2 * calls)]

    receiver_conn, receiver_child = context.Pipe()
    receiver = context.Process(target=receiver_process, args=(receiver_child, socks, 2 * calls), daemon=True)
    receiver.start()
    generator_conn, generator_child = context.Pipe()
    start_at = time.monotonic() + 0.5
    generator = context.Process(
        target=generator_process, args=(generator_child, socks, targets, seconds, start_at), daemon=True
    )
    if relay_conn is not None:
        relay_conn.send("start")
    generator.start()
    sent, _failed, generator_cpu, wall = generator_conn.recv()
    time.sleep(0.5)  # let the last packets cross
    relay_cpu = forwarded = relay_dropped = None
    if relay_conn is not None and relay is not None:
        relay_conn.send("stop")
        _, relay_cpu, forwarded, relay_dropped = relay_conn.recv()
        relay.join(5)
    receiver_conn.send("stop")
    received, reordered, _foreign, receiver_cpu = receiver_conn.recv()
    receiver.join(5)
    generator.join(5)
    for s in socks:
        s.close()
    return Run(
        calls=calls,
        offered=2 * calls * round(seconds / PTIME),
        sent=sent,
        received=received,
        reordered=reordered,
        generator_cpu=generator_cpu,
        receiver_cpu=receiver_cpu,
        wall=wall,
        relay_cpu=relay_cpu,
        forwarded=forwarded,
        relay_dropped=relay_dropped,
        loop=loop_name,
    )


def describe(label: str, run: Run) -> str:
    text = (
        f"  {label:<15} offered {run.offered:>9,}  sent {run.sent:>9,}  received {run.received:>9,}  lost {run.lost:>6,} "
        f"({run.lost / max(run.sent, 1) * 100:5.2f} %)  reordered {run.reordered:>4,}  "
        f"{run.received / run.wall:>8,.0f} pkt/s  generator ran {run.wall:.2f} s, "
        f"CPU {run.generator_cpu / run.wall * 100:3.0f} %  receiver CPU {run.receiver_cpu / run.wall * 100:3.0f} %"
    )
    if run.relay_cpu is not None and run.forwarded:
        text += (
            f"\n  {'':<15} relay forwarded {run.forwarded:,} ({run.forwarded / run.wall:,.0f}/s), "
            f"CPU {run.relay_cpu:.2f} s = {run.relay_cpu / run.wall * 100:.0f} % of a core, "
            f"{run.relay_cpu / run.forwarded * 1e6:.2f} us per packet"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", default="100,250,500,750,1000", help="concurrent calls per step")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--ports", default="20000-29999", help="the relay's RTP port range")
    parser.add_argument("--stdlib-loop", action="store_true", help="run the relay on asyncio's own loop")
    args = parser.parse_args()
    steps = [int(n) for n in args.calls.split(",")]
    first, _, last = args.ports.partition("-")
    ports = (int(first), int(last))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max(steps) * 6 + 64
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))
    command = (
        f"python bench/bench_relay.py --calls {args.calls} --seconds {args.seconds:g} --ports {args.ports}"
    )
    if args.stdlib_loop:
        command += " --stdlib-loop"
    print(f"command: {command}")
    print(f"CPUs: {os.cpu_count()}, load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    best = 0
    for calls in steps:
        print(f"{calls} calls: {2 * calls} streams, {100 * calls:,} packets/s offered of {PACKET} bytes")
        relayed = run_once(calls, args.seconds, ports, through_relay=True, use_uvloop=not args.stdlib_loop)
        print(describe(f"relay ({relayed.loop})", relayed))
        direct = run_once(calls, args.seconds, ports, through_relay=False, use_uvloop=False)
        print(describe("direct", direct))
        ratio = relayed.received / direct.received if direct.received else 0.0
        print(f"  relayed/direct packets received: {ratio:.3f}; load average now: {os.getloadavg()[0]:.2f}")
        if relayed.lost > 0 or relayed.reordered > 0:
            print(f"  loss or reordering through the relay at {calls} calls: stopping")
            break
        if relayed.sent < 0.95 * relayed.offered:
            share = relayed.sent / relayed.offered * 100
            print(f"  the generator sent only {share:.0f} % of the offered packets (CPU starved): stopping")
            break
        best = calls
    print(f"highest concurrent calls relayed without loss: {best}")


if __name__ == "__main__":
    main()

"""Receiving SIP-sized datagrams: CPython's datagram transport against Sentral's UDP listener.

A sender process blasts 600-byte datagrams at a fixed rate on loopback; the receiver counts them
and the CPU it spent. Three receivers on the same load:

- asyncio's stdlib datagram protocol (which reads every datagram into a fresh 256 KiB buffer),
- the same on uvloop,
- Sentral's listener: ``recvfrom_into`` one preallocated buffer, draining the socket per wake-up
  (on uvloop, as the server runs).

    .venv/bin/python bench/bench_udp.py [--rate 40000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from sentral.config.settings import Listen
from sentral.pbx.transport import Origin, Transports

PAYLOAD = b"REGISTER sip:clinic.test SIP/2.0\r\n" + b"X-Padding: " + b"x" * 551 + b"\r\n\r\n"


def blast(port: int, rate: int, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        # Pace in bursts of 100 so the rate holds without a sleep per datagram.
        if i % 100 == 0:
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        sock.sendto(PAYLOAD, ("127.0.0.1", port))
    sock.close()


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def receive_stdlib(port: int, total: int, seconds: float) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    count = 0

    class Counter(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            nonlocal count
            count += 1

    transport, _ = await loop.create_datagram_endpoint(Counter, local_addr=("127.0.0.1", port))
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    return await _measure(port, total, seconds, lambda: count, transport.close)


async def receive_sentral(port: int, total: int, seconds: float) -> tuple[int, float]:
    count = 0

    def handler(data: bytes, origin: Origin) -> None:
        nonlocal count
        count += 1

    transports = Transports(handler)
    await transports.start((Listen("udp", "127.0.0.1", port),))
    result = await _measure(port, total, seconds, lambda: count, lambda: None)
    await transports.close()
    return result


async def _measure(port: int, total: int, seconds: float, counted: object, close: object) -> tuple[int, float]:
    assert callable(counted) and callable(close)
    rate = int(total / seconds)
    sender = multiprocessing.Process(target=blast, args=(port, rate, seconds))
    before = cpu()
    sender.start()
    deadline = time.monotonic() + seconds + 2.0
    while time.monotonic() < deadline and counted() < total:
        await asyncio.sleep(0.05)
    used = cpu() - before
    sender.join()
    close()
    return counted(), used


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=40000, help="datagrams a second")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    total = int(args.rate * args.seconds)
    print(f"command: python bench/bench_udp.py --rate {args.rate} --seconds {args.seconds:g}")
    print(f"{total:,} datagrams of {len(PAYLOAD)} bytes offered at {args.rate:,}/s")
    cases = [
        ("stdlib datagram protocol, asyncio loop", asyncio.new_event_loop, receive_stdlib),
        ("stdlib datagram protocol, uvloop", uvloop.new_event_loop, receive_stdlib),
        ("sentral listener (recvfrom_into), asyncio", asyncio.new_event_loop, receive_sentral),
        ("sentral listener (recvfrom_into), uvloop", uvloop.new_event_loop, receive_sentral),
    ]
    for label, factory, receiver in cases:
        with asyncio.Runner(loop_factory=factory) as runner:
            got, used = runner.run(receiver(free_port(), total, args.seconds))
        lost = total - got
        print(f"{label:<42} received {got:>8,}  lost {lost / total * 100:6.2f} %  "
              f"{used / max(got, 1) * 1e6:6.2f} us CPU per datagram")


if __name__ == "__main__":
    main()

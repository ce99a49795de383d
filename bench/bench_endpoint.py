"""The Python cost of one authenticated registration inside the server, without the network.

REGISTER bytes go into the real Endpoint (guard, parser, transaction layer, registrar, digest
check) exactly as the UDP listener hands them over; what it sends is captured instead of being
written to a socket, and the binding writer is replaced by one that commits nothing. What is left
is the per-registration work of the event loop thread, which is what limits registrations per
second. ``--profile`` prints where that time goes. Both the elapsed time and the thread's CPU time
are printed: on a shared machine the CPU time is the steadier of the two.

    .venv/bin/python bench/bench_endpoint.py [--n 20000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import pstats
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentral.config.directory import ClinicEntry, Directory, StaffEntry
from sentral.config.settings import Listen
from sentral.config.store import BindingRow
from sentral.logs import configure
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.guard import Guard
from sentral.pbx.location import Location
from sentral.pbx.registrar import Registrar, RegistrarPolicy
from sentral.pbx.sip.auth import DigestAuthority, compute_ha1
from sentral.pbx.sip.transaction import TransactionLayer
from sentral.pbx.transport import Origin, Target

DOMAIN = "clinic.test"
LISTEN = Listen("udp", "127.0.0.1", 5060)


class CapturingTransports:
    """Stands in for the sockets: keeps the last message sent."""

    def __init__(self) -> None:
        self.last = b""
        self.sent = 0

    def send(self, data: bytes, target: Target) -> bool:
        self.last = data
        self.sent += 1
        return True


class InstantWriter:
    """A binding writer whose commits complete at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def submit(self, upserts: Sequence[BindingRow], deletes: Sequence[tuple[str, str, str]]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        future.set_result(None)
        return future


def register_bytes(ext: str, port: int, call_id: str, cseq: int, auth: str = "") -> bytes:
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call_id}-{cseq};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{ext}@{DOMAIN}>;tag=t{call_id}\r\n"
        f"To: <sip:{ext}@{DOMAIN}>\r\n"
        f"Call-ID: {call_id}@127.0.0.1\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{ext}@127.0.0.1:{port};transport=UDP>\r\n"
        "Expires: 3600\r\n"
        "User-Agent: bench\r\n"
        f"{auth}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def authorization(challenge: bytes, ext: str, password: str) -> str:
    nonce = re.search(rb'nonce="([^"]+)"', challenge)
    opaque = re.search(rb'opaque="([^"]+)"', challenge)
    assert nonce and opaque, challenge
    n, o = nonce.group(1).decode(), opaque.group(1).decode()
    ha1 = compute_ha1("MD5", ext, DOMAIN, password)
    ha2 = hashlib.md5(f"REGISTER:sip:{DOMAIN}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{n}:00000001:0a4f113b:auth:{ha2}".encode()).hexdigest()
    return (
        f'Authorization: Digest username="{ext}",realm="{DOMAIN}",nonce="{n}",uri="sip:{DOMAIN}",'
        f'response="{response}",algorithm=MD5,cnonce="0a4f113b",qop=auth,nc=00000001,opaque="{o}"\r\n'
    )


async def run(n: int, profile: bool, args_sort: str = "tottime") -> None:
    loop = asyncio.get_running_loop()
    users = [(str(100000 + i), f"password-{i}") for i in range(n)]
    staff = {
        (DOMAIN, ext): StaffEntry(DOMAIN, ext, ext, (), compute_ha1("MD5", ext, DOMAIN, pw), compute_ha1("SHA-256", ext, DOMAIN, pw))
        for ext, pw in users
    }
    directory = Directory(1, {DOMAIN: ClinicEntry(DOMAIN, "Bench", ("MD5",))}, staff)
    transports = CapturingTransports()
    location = Location()
    endpoint = Endpoint(
        transports,  # type: ignore[arg-type]
        TransactionLayer(),
        Registrar(DigestAuthority(b"b" * 32), location, RegistrarPolicy()),
        location,
        InstantWriter(loop),  # type: ignore[arg-type]
        Guard(),
        lambda: directory,
    )
    endpoint.attach(loop)
    # The client side (building requests, answering challenges) is prepared outside the timing.
    firsts = [register_bytes(ext, 20000 + i % 40000, f"c{i}", 1) for i, (ext, _) in enumerate(users)]
    profiler = cProfile.Profile() if profile else None
    elapsed = 0.0
    cpu = 0.0
    clock = time.perf_counter
    thread_clock = time.thread_time
    for i, (ext, password) in enumerate(users):
        origin = Origin("udp", "127.0.0.1", 20000 + i % 40000, LISTEN)
        started, started_cpu = clock(), thread_clock()
        if profiler:
            profiler.enable()
        endpoint.on_message(firsts[i], origin)
        if profiler:
            profiler.disable()
        elapsed += clock() - started
        cpu += thread_clock() - started_cpu
        second = register_bytes(ext, origin.port, f"c{i}", 2, authorization(transports.last, ext, password))
        started, started_cpu = clock(), thread_clock()
        if profiler:
            profiler.enable()
        endpoint.on_message(second, origin)
        await asyncio.sleep(0)  # let the commit callback send the 200
        if profiler:
            profiler.disable()
        elapsed += clock() - started
        cpu += thread_clock() - started_cpu
        assert transports.last.startswith(b"SIP/2.0 200"), transports.last[:80]
    print(f"{n} registrations, {elapsed / n * 1e6:.1f} us of event-loop CPU each "
          f"({n / elapsed:,.0f} registrations/s on one core, network excluded)")
    print(f"thread CPU time: {cpu / n * 1e6:.1f} us per registration")
    print(f"bindings held: {len(location)}; messages sent: {transports.sent}")
    if profiler:
        pstats.Stats(profiler).sort_stats(args_sort).print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    # Warning, as the server benchmarks run it: at info each new binding is a line on the terminal.
    parser.add_argument("--log-level", default="warning", help="as the server's --log-level")
    args = parser.parse_args()
    print(
        f"command: python bench/bench_endpoint.py --n {args.n}{' --profile' if args.profile else ''} "
        f"--log-level {args.log_level}"
    )
    configure("console", args.log_level)
    asyncio.run(run(args.n, args.profile))


if __name__ == "__main__":
    main()

"""Memory per registration binding, with 100,000 bindings held.

Two measures:

1. In process: 100,000 phones register through the real Endpoint (parser, transactions,
   registrar, location service; the database writer replaced by one that commits nothing). Once
   the transactions have ended (Timer J), the memory still allocated, divided by the number of
   bindings, is what a binding costs the server at steady state (tracemalloc).
2. The real server: its resident memory after loading 100,000 bindings from the database at
   start, minus the same server started with none.

    .venv/bin/python bench/bench_memory.py [--bindings 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_endpoint import (
    DOMAIN,
    LISTEN,
    CapturingTransports,
    InstantWriter,
    authorization,
    register_bytes,
)
from loadrun import process_rss

from sentral.config.db import make_engine
from sentral.config.directory import ClinicEntry, Directory, StaffEntry
from sentral.config.store import BindingRow, BindingStore
from sentral.logs import configure
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.guard import Guard
from sentral.pbx.location import Location
from sentral.pbx.registrar import Registrar, RegistrarPolicy
from sentral.pbx.sip.auth import DigestAuthority, compute_ha1
from sentral.pbx.sip.transaction import TransactionLayer
from sentral.pbx.transport import Origin
from tests.system.server import SentralServer


async def in_process(count: int) -> float:
    loop = asyncio.get_running_loop()
    users = [(str(100000 + i), f"password-{i}") for i in range(count)]
    staff = {
        (DOMAIN, ext): StaffEntry(DOMAIN, ext, ext, (), compute_ha1("MD5", ext, DOMAIN, pw), "")
        for ext, pw in users
    }
    directory = Directory(1, {DOMAIN: ClinicEntry(DOMAIN, "Bench", ("MD5",))}, staff)
    transports = CapturingTransports()
    location = Location()
    layer = TransactionLayer()
    endpoint = Endpoint(
        transports,  # type: ignore[arg-type]
        layer,
        Registrar(DigestAuthority(b"m" * 32), location, RegistrarPolicy()),
        location,
        InstantWriter(loop),  # type: ignore[arg-type]
        Guard(),
        lambda: directory,
    )
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, (ext, password) in enumerate(users):
        port = 1024 + i % 60000
        origin = Origin("udp", f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", port, LISTEN)
        endpoint.on_message(register_bytes(ext, port, f"c{i}", 1), origin)
        auth = authorization(transports.last, ext, password)
        endpoint.on_message(register_bytes(ext, port, f"c{i}", 2, auth), origin)
        if i % 512 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    # Let every transaction end (Timer J is 32 s over UDP), as it would at steady state, and let
    # the endpoint see them end. The nonce-count table and the guard's per-source state are left
    # as they are: they shrink only as their entries age out.
    endpoint._run(layer.on_timer(time.monotonic() + 3600), None)
    del transports.last
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(location) == count, len(location)
    return held / count


def server_rss(count: int) -> tuple[int, int]:
    with tempfile.TemporaryDirectory(prefix="sentral-mem-") as tmp:
        work = Path(tmp)
        empty_dir = work / "empty"
        empty_dir.mkdir()
        empty = SentralServer(f"sqlite:///{empty_dir / 'empty.db'}", empty_dir)
        empty.cli("init", "--domain", DOMAIN)
        full_dir = work / "full"
        full_dir.mkdir()
        full = SentralServer(f"sqlite:///{full_dir / 'full.db'}", full_dir)
        full.cli("init", "--domain", DOMAIN)
        engine = make_engine(f"sqlite:///{full_dir / 'full.db'}")
        now = time.time()
        rows = [
            BindingRow(
                domain=DOMAIN,
                extension=str(100000 + i),
                key=f"sip:{100000 + i}@10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:{1024 + i % 60000};transport=UDP",
                contact=f"sip:{100000 + i}@10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:{1024 + i % 60000};transport=UDP",
                expires_at=now + 3600,
                call_id=f"{i:08x}-5c3a-4e61-9b7d-{i:012x}@10.0.0.1",
                cseq=2,
                transport="udp",
                source_host=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                source_port=1024 + i % 60000,
                local_listen="udp:127.0.0.1:5060",
                updated_at=now,
                user_agent="Yealink SIP-T54W 96.86.0.70",
            )
            for i in range(count)
        ]
        BindingStore(engine).apply(rows, [])
        engine.dispose()
        sizes = []
        for server in (empty, full):
            server.start()
            assert server.proc is not None
            time.sleep(1.0)
            sizes.append(process_rss(server.proc.pid))
            server.stop()
        return sizes[0], sizes[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bindings", type=int, default=100_000)
    args = parser.parse_args()
    print(f"command: python bench/bench_memory.py --bindings {args.bindings}")
    configure("console", "warning")  # each new binding is an info line
    per_binding = asyncio.run(in_process(args.bindings))
    print(f"in process, after {args.bindings:,} registrations through the endpoint: "
          f"{per_binding:,.0f} bytes per binding (tracemalloc)")
    empty, full = server_rss(args.bindings)
    print(f"server RSS: {empty / 2**20:.1f} MiB with no bindings, {full / 2**20:.1f} MiB with {args.bindings:,} "
          f"loaded: {(full - empty) / args.bindings:,.0f} bytes per binding")
    print("target: at most 2 KiB (2,048 bytes) per binding")


if __name__ == "__main__":
    main()

"""The ring delay the caller-ID chain adds: from a carrier's INVITE to the staff phone's INVITE.

One server in the default configuration (media anchored, info logs) with a trunk trusted by
address (the carrier is this process, on 127.0.0.2) and a public number that rings 1002 (this
process too, registered with digest). Each call is one INVITE from the carrier to the public
number; the phone answers 486 the moment the INVITE reaches it and the carrier ACKs, so the calls
follow one another. The figure is the time from the carrier's send to the phone's receipt, p50
and p99 over ``--calls`` calls, for:

- no adapter: the path without a lookup, the baseline;
- sql, cold: an SQLite database of ``--patients`` (100,000) patients with numbers written six
  ways (bench_lookup.py's), searched by the written forms of the number; every caller is new to
  the chain's cache, half of them patients and half unknown;
- sql, warm: the same callers again, now answered from the cache;
- fhir, cold and warm: the same through a FHIR R4 server on loopback holding the same patients.

Each chain row says how many of the patients' calls rang with the patient's name; the added
delay is the row's p50 and p99 less the baseline's.

    .venv/bin/python bench/bench_ring_delay.py [--calls 200] [--patients 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import re
import shlex
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web
from bench_lookup import FORMS_QUERY, e164_of, fhir_app, fill_sql, percentiles
from loadrun import bench_password, call_server, print_run

from tests.system.carrier import CARRIER_IP
from tests.system.peers import free_port
from tests.system.sipclient import SipClient

PUBLIC = "+4722334455"
PHONE = "1002"
TIMEOUT = 5.0


def unknown_of(index: int) -> str:
    return f"+4740{index:06d}"  # a range no patient's number is in


@contextmanager
def fhir_on_loopback(patients: int) -> Iterator[str]:
    """The FHIR server on an event loop of its own in a thread; its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fhir", daemon=True)
    thread.start()
    runner = web.AppRunner(fhir_app(patients))

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return int(runner.addresses[0][1])

    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        yield f"http://127.0.0.1:{port}/fhir"
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Carrier:
    """The carrier's side of each call, and the phone's."""

    def __init__(self, server: tuple[str, int], port: int, phone: SipClient) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((CARRIER_IP, port))
        self.sock.settimeout(TIMEOUT)
        self.port = port
        self.phone = phone
        self.media = free_port(CARRIER_IP)

    def close(self) -> None:
        self.sock.close()

    def call(self, caller: str) -> tuple[float, str]:
        """One call from ``caller``: seconds from the INVITE's send to its arrival at the phone,
        and the From the phone saw."""
        call_id = uuid.uuid4().hex
        branch = "z9hG4bK" + uuid.uuid4().hex
        ruri = f"sip:{PUBLIC}@{self.server[0]}:{self.server[1]}"
        via = f"Via: SIP/2.0/UDP {CARRIER_IP}:{self.port};branch={branch}\r\n"
        head = f"From: <sip:{caller}@{CARRIER_IP}>;tag={call_id[:10]}\r\nCall-ID: {call_id}\r\n"
        sdp = (
            f"v=0\r\no=- 1 1 IN IP4 {CARRIER_IP}\r\ns=-\r\nc=IN IP4 {CARRIER_IP}\r\nt=0 0\r\n"
            f"m=audio {self.media} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        )
        invite = (
            f"INVITE {ruri} SIP/2.0\r\n{via}Max-Forwards: 70\r\n{head}To: <{ruri}>\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{caller}@{CARRIER_IP}:{self.port}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
        )
        started = time.perf_counter()
        self.sock.sendto(invite.encode(), self.server)
        while True:
            text = self.phone.receive().decode()
            if text.startswith("INVITE "):
                break  # ACKs of earlier calls' 486 come in between
        rang = time.perf_counter() - started
        self.phone.send(busy(text))
        while True:
            data, _ = self.sock.recvfrom(65535)
            answer = data.decode()
            if f"Call-ID: {call_id}" in answer and re.match(r"SIP/2\.0 [3-6]\d\d ", answer):
                break
            if answer.startswith("SIP/2.0 2"):
                raise AssertionError(f"the call was answered: {answer}")
        to = header(answer, "To")
        ack = f"ACK {ruri} SIP/2.0\r\n{via}Max-Forwards: 70\r\n{head}To: {to}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        self.sock.sendto(ack.encode(), self.server)
        return rang, header(text, "From")


def header(message: str, name: str) -> str:
    found = re.search(rf"^{name}:\s*(.*?)\r$", message, re.M | re.I)
    assert found is not None, f"no {name} in {message}"
    return found.group(1)


def busy(invite: str) -> bytes:
    """The phone's 486 to ``invite``."""
    vias = "".join(f"{line}\r\n" for line in invite.split("\r\n") if line.lower().startswith("via:"))
    copied = "".join(f"{name}: {header(invite, name)}\r\n" for name in ("From", "Call-ID", "CSeq"))
    return f"SIP/2.0 486 Busy Here\r\n{vias}{copied}To: {header(invite, 'To')};tag=busy1\r\nContent-Length: 0\r\n\r\n".encode()


def is_patient(caller: str) -> bool:
    return caller.startswith("+479")  # e164_of's range


def measure(carrier: Carrier, callers: list[str]) -> tuple[float, float, int, int]:
    """p50 and p99 in ms, and how many of the patients' calls showed a patient's name."""
    samples = []
    named = 0
    for caller in callers:
        rang, seen = carrier.call(caller)
        samples.append(rang * 1000)
        named += is_patient(caller) and "Patient" in seen  # "Patient 7" (SQL), "7 Patient" (FHIR)
    p50, p99 = percentiles(samples)
    return p50, p99, named, sum(map(is_patient, callers))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per row (default 200)")
    parser.add_argument(
        "--patients", type=int, default=100_000, help="patients in the records (default 100,000)"
    )
    args = parser.parse_args()
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="sentral-ring-") as tmp:
        work = Path(tmp)
        db = work / "patients.db"
        fill_sql(f"sqlite:///{db}", args.patients)
        trunk_port = free_port(CARRIER_IP)
        server = call_server(work, [PHONE])
        server.cli_batch(
            ("clinic", "set", "clinic.test", "--country", "NO"),
            ("trunk", "add", "carrier", "--host", f"{CARRIER_IP}:{trunk_port}"),
            ("number", "add", PUBLIC, "--to", PHONE),
        )
        server.start()
        try:
            with (
                SipClient(server.host, server.port, timeout=TIMEOUT) as phone,
                fhir_on_loopback(args.patients) as fhir,
            ):
                registered = phone.register(PHONE, bench_password(PHONE))
                assert registered.startswith("SIP/2.0 200"), registered
                carrier = Carrier((server.host, server.port), trunk_port, phone)
                try:
                    carrier.call(unknown_of(999_999))  # warm-up: the first call's code paths
                    half = args.calls // 2
                    base = 0

                    def callers() -> list[str]:
                        nonlocal base
                        mixed = [
                            c
                            for i in range(base, base + half)
                            for c in (e164_of(i * 7 % args.patients), unknown_of(i))
                        ]
                        base += half
                        return mixed

                    def row(name: str, chosen: list[str]) -> None:
                        p50, p99, named, known = measure(carrier, chosen)
                        shown = f"{named}/{known} named" if known and name != "no adapter" else "-"
                        rows.append((name, p50, p99, shown))

                    row("no adapter", callers())
                    server.reconfigure(
                        "adapter", "add", "records", "--kind", "sql", "--url", f"sqlite:///{db}", "--query-number", FORMS_QUERY
                    )  # fmt: skip
                    chosen = callers()
                    row("sql (SQLite), cold", chosen)
                    row("sql (SQLite), warm", chosen)
                    server.reconfigure("adapter", "remove", "records")
                    server.reconfigure("adapter", "add", "journal", "--kind", "fhir", "--url", fhir)
                    chosen = callers()
                    row("fhir (loopback), cold", chosen)
                    row("fhir (loopback), warm", chosen)
                finally:
                    carrier.close()
        finally:
            server.stop()
    base50, base99 = rows[0][1], rows[0][2]
    lines = [
        f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        f"configuration: serve defaults (media anchored, info logs), lookup budget 150 ms; {args.calls} calls a row",
        f"{'path':<24}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}{'added p99':>11}  shown",
    ]
    for name, p50, p99, shown in rows:
        lines.append(f"{name:<24}{p50:>9.2f}{p99:>9.2f}{p50 - base50:>11.2f}{p99 - base99:>11.2f}  {shown}")
    print_run("Ring delay with caller-ID lookup", shlex.join([sys.executable, *sys.argv]), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

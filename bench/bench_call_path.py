"""The Python cost of one whole call inside the server, without the network.

A call goes through the real Endpoint exactly as the UDP listener hands its messages over: the
caller's INVITE is challenged (407, ACKed), sent again with Proxy-Authorization, the endpoint
rings the callee's registered contact with its own INVITE, the callee answers 180 and 200 with
SDP, the endpoint ACKs it and answers the caller, the caller ACKs, talks, and hangs up with a BYE
that the endpoint answers and passes to the callee, who answers 200. What the endpoint sends is
captured instead of written to a socket; the call record is built as the server builds it and
handed to a writer that commits nothing. The phones' side (digest responses, answering the B-leg
INVITE) is prepared outside the timing. What is left is the per-call work of the event-loop
thread, which is what limits calls per second. ``--profile`` prints where that time goes.

Transactions and their timers are left in place as a running server holds them (Timer J, K and
the like are not run here), so a long run carries the state of roughly n / rate seconds of load.

The collector is tuned as the server tunes it (``sentral.app.tune_gc``); ``--default-gc`` keeps
CPython's defaults, ``--gc`` reports the time spent collecting, ``--no-gc`` turns the collector off.
The last is for counting instructions, which unlike times do not depend on what else the machine
is doing: one collection more or less in a run would outweigh most changes being measured, so
the collector's share is better judged from ``--gc`` on its own. Instructions per call are the
difference between two runs, which cancels start-up:

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.N.out \
        .venv/bin/python bench/bench_call_path.py --no-gc --n N      # for N = 200 and 500

    .venv/bin/python bench/bench_call_path.py [--n 20000] [--profile] [--gc] [--default-gc] [--no-gc]
        [--anchored] [--log-level info]       # serve's defaults: media anchored, calls logged at info
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import pstats
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentral.app import call_record, loop_factory, tune_gc
from sentral.config.cdr import CallRecord
from sentral.config.directory import ClinicEntry, Directory, StaffEntry
from sentral.config.settings import Listen
from sentral.config.store import BindingRow
from sentral.logs import configure
from sentral.media.anchor import MediaAnchor
from sentral.media.latch import PortPool
from sentral.media.sounds import SoundLibrary
from sentral.pbx.anchoring import AnchoredMedia
from sentral.pbx.call import CallReport
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.guard import Guard
from sentral.pbx.location import Location
from sentral.pbx.registrar import Registrar, RegistrarPolicy
from sentral.pbx.sip.auth import DigestAuthority, compute_ha1
from sentral.pbx.sip.transaction import TransactionLayer
from sentral.pbx.transport import Origin, Target

DOMAIN = "clinic.test"
LISTEN = Listen("udp", "127.0.0.1", 5060)
CALLER, CALLEE = "1001", "1002"
PASSWORD = "pw-1001-bench"
CALLEE_PORT = 5090
SDP_A = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_B = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 6002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class CapturingTransports:
    """Stands in for the sockets: keeps what was sent since the last ``take``."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Target]] = []
        self.count = 0
        self.bound = [LISTEN]

    def send(self, data: bytes, target: Target) -> bool:
        self.sent.append((data, target))
        self.count += 1
        return True

    def take(self) -> list[tuple[bytes, Target]]:
        sent, self.sent = self.sent, []
        return sent


class InstantWriter:
    """A writer whose commits complete at once (bindings and call records alike)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.records = 0

    def submit(self, *batches: Sequence[object]) -> asyncio.Future[None]:
        self.records += len(batches[0]) if batches else 0
        future: asyncio.Future[None] = self.loop.create_future()
        future.set_result(None)
        return future


def caller_request(method: str, i: int, port: int, cseq: int, *, to_tag: str = "", ruri: str = "",
                   auth: str = "", sdp: bytes = b"", branch: str = "") -> bytes:  # fmt: skip
    """What SIPp's call_auth_uac.xml sends, message by message."""
    head = (
        f"{method} {ruri or f'sip:{CALLEE}@{DOMAIN}'} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch or f'z9hG4bK-{i}-{cseq}-{method}'};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{CALLER}@{DOMAIN}>;tag={i}SIPpTag01\r\n"
        f"To: <sip:{CALLEE}@{DOMAIN}>{f';tag={to_tag}' if to_tag else ''}\r\n"
        f"Call-ID: {i}-bench@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
    )
    if method == "INVITE":
        head += f"Contact: <sip:{CALLER}@127.0.0.1:{port};transport=UDP>\r\n"
    head += auth
    if sdp:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp


def proxy_authorization(challenge: bytes) -> str:
    nonce = re.search(rb'nonce="([^"]+)"', challenge)
    opaque = re.search(rb'opaque="([^"]+)"', challenge)
    assert nonce and opaque, challenge
    n, o = nonce.group(1).decode(), opaque.group(1).decode()
    uri = f"sip:{CALLEE}@{DOMAIN}"
    ha1 = compute_ha1("MD5", CALLER, DOMAIN, PASSWORD)
    ha2 = hashlib.md5(f"INVITE:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{n}:00000001:0a4f113b:auth:{ha2}".encode()).hexdigest()
    return (
        f'Proxy-Authorization: Digest username="{CALLER}",realm="{DOMAIN}",nonce="{n}",uri="{uri}",'
        f'response="{response}",algorithm=MD5,cnonce="0a4f113b",qop=auth,nc=00000001,opaque="{o}"\r\n'
    )


_HEADER_RE = re.compile(rb"^(Via|From|To|Call-ID|CSeq): ?(.*)$", re.MULTILINE | re.IGNORECASE)


def callee_response(request: bytes, status: int, reason: str, tag: str, sdp: bytes = b"") -> bytes:
    """What SIPp's built-in uas answers to ``request`` (its dialog headers copied, a To tag added)."""
    lines = [f"SIP/2.0 {status} {reason}"]
    for m in _HEADER_RE.finditer(request):
        name, value = m.group(1).decode(), m.group(2).decode().rstrip("\r")
        if name.lower() == "to" and ";tag=" not in value:
            value += f";tag={tag}"
        lines.append(f"{name}: {value}")
    lines.append(f"Contact: <sip:{CALLEE}@127.0.0.1:{CALLEE_PORT};transport=UDP>")
    if sdp:
        lines.append("Content-Type: application/sdp")
    return ("\r\n".join(lines) + f"\r\nContent-Length: {len(sdp)}\r\n\r\n").encode() + sdp


def only(sent: list[tuple[bytes, Target]], start: bytes) -> bytes:
    found = [data for data, _ in sent if data.startswith(start)]
    assert len(found) == 1, (start, len(sent), [data[:40] for data, _ in sent][:3])
    return found[0]


def to_tag(response: bytes) -> str:
    m = re.search(rb"^To:.*;tag=([^;\r]+)", response, re.MULTILINE | re.IGNORECASE)
    assert m, response
    return m.group(1).decode()


class Clock:
    """Event-loop CPU spent inside the endpoint, optionally under cProfile.

    CPU time of this thread, not wall time: on a shared machine the difference is other work.
    """

    def __init__(self, profiler: cProfile.Profile | None) -> None:
        self.profiler = profiler
        self.elapsed = 0.0

    def feed(self, endpoint: Endpoint, data: bytes, origin: Origin) -> None:
        started = time.thread_time()
        if self.profiler:
            self.profiler.enable()
        endpoint.on_message(data, origin)
        if self.profiler:
            self.profiler.disable()
        self.elapsed += time.thread_time() - started


def bench_world() -> tuple[Directory, CapturingTransports, Location]:
    """The clinic both benchmarks call in: caller and callee with MD5 credentials, the callee
    registered, and transports that capture instead of sending."""
    staff = {
        (DOMAIN, ext): StaffEntry(
            DOMAIN, ext, f"Bench {ext}", (), compute_ha1("MD5", ext, DOMAIN, f"pw-{ext}-bench"),
            compute_ha1("SHA-256", ext, DOMAIN, f"pw-{ext}-bench"),
        )
        for ext in (CALLER, CALLEE)
    }  # fmt: skip
    directory = Directory(1, {DOMAIN: ClinicEntry(DOMAIN, "Bench", ("MD5",))}, staff)
    location = Location()
    location.apply(
        [
            BindingRow(
                DOMAIN, CALLEE, "k", f"sip:{CALLEE}@127.0.0.1:{CALLEE_PORT};transport=UDP", time.time() + 1e6,
                "reg", 1, "udp", "127.0.0.1", CALLEE_PORT, "udp:127.0.0.1:5060", time.time(),
            )
        ],
        [],
    )  # fmt: skip
    return directory, CapturingTransports(), location


def anchored_media(sounds: str) -> AnchoredMedia:
    """Media anchored at a real relay on loopback, as ``serve`` runs by default."""
    anchor = MediaAnchor(
        "127.0.0.1", PortPool(30000, 39999), sounds=SoundLibrary([sounds]), language="nb", on_dtmf=lambda *_: None
    )
    return AnchoredMedia(anchor, direct_media=lambda _domain, _extension: False)


async def run(
    n: int, profile: bool, sort: str, watch_gc: bool, server_gc: bool, media: AnchoredMedia | None = None
) -> None:
    loop = asyncio.get_running_loop()
    directory, transports, location = bench_world()
    writer = InstantWriter(loop)
    wall_offset = time.time() - time.monotonic()
    records: list[CallRecord] = []

    def on_record(report: CallReport) -> asyncio.Future[None]:
        # What the server does with a finished call: build its stored record and queue it.
        record = call_record(report, wall_offset)
        if len(records) < 1:
            records.append(record)
        return writer.submit([record])

    endpoint = Endpoint(
        transports,  # type: ignore[arg-type]
        TransactionLayer(),
        Registrar(DigestAuthority(b"b" * 32), location, RegistrarPolicy()),
        location,
        writer,  # type: ignore[arg-type]
        Guard(),
        lambda: directory,
        on_record=on_record,
        media=media,
    )
    endpoint.attach(loop)
    if server_gc:
        tune_gc()  # as the server does once start-up is over
    callee = Origin("udp", "127.0.0.1", CALLEE_PORT, LISTEN)
    profiler = cProfile.Profile() if profile else None
    clock = Clock(profiler)
    gc_time = [0.0, 0]
    gc_started = [0.0]
    gc_by_generation = [[0, 0.0], [0, 0.0], [0, 0.0]]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.thread_time()
        else:
            spent = time.thread_time() - gc_started[0]
            gc_time[0] += spent
            gc_time[1] += 1
            gc_by_generation[info["generation"]][0] += 1
            gc_by_generation[info["generation"]][1] += spent

    if watch_gc:
        gc.callbacks.append(on_gc)
    wall_started = time.thread_time()
    for i in range(n):
        port = 20000 + i % 40000
        caller = Origin("udp", "127.0.0.1", port, LISTEN)
        # INVITE without credentials: 100 Trying is not sent before the challenge, only the 407.
        clock.feed(endpoint, caller_request("INVITE", i, port, 1, sdp=SDP_A), caller)
        challenge = only(transports.take(), b"SIP/2.0 407")
        # The ACK of a failure response belongs to the INVITE's transaction: same branch (§17.1.1.3).
        ack = caller_request("ACK", i, port, 1, to_tag=to_tag(challenge), branch=f"z9hG4bK-{i}-1-INVITE")
        clock.feed(endpoint, ack, caller)
        invite = caller_request("INVITE", i, port, 2, auth=proxy_authorization(challenge), sdp=SDP_A)
        clock.feed(endpoint, invite, caller)
        sent = transports.take()
        b_invite = only(sent, b"INVITE ")
        only(sent, b"SIP/2.0 100")
        clock.feed(endpoint, callee_response(b_invite, 180, "Ringing", f"b{i}"), callee)
        only(transports.take(), b"SIP/2.0 180")
        clock.feed(endpoint, callee_response(b_invite, 200, "OK", f"b{i}", SDP_B), callee)
        sent = transports.take()
        ok = only(sent, b"SIP/2.0 200")
        only(sent, b"ACK ")
        tag = to_tag(ok)
        contact = re.search(rb"^Contact: *<([^>]+)>", ok, re.MULTILINE | re.IGNORECASE)
        assert contact, ok
        ruri = contact.group(1).decode()
        clock.feed(endpoint, caller_request("ACK", i, port, 2, to_tag=tag, ruri=ruri), caller)
        clock.feed(endpoint, caller_request("BYE", i, port, 3, to_tag=tag, ruri=ruri), caller)
        b_bye = only(transports.take(), b"BYE ")
        clock.feed(endpoint, callee_response(b_bye, 200, "OK", f"b{i}"), callee)
        # The 200 to the caller's BYE goes out once the record is stored: from the commit's
        # callback, on the loop's next turn.
        await asyncio.sleep(0)
        only(transports.take(), b"SIP/2.0 200")
    wall = time.thread_time() - wall_started
    if watch_gc:
        gc.callbacks.remove(on_gc)
    assert len(endpoint.calls) == 0, f"{len(endpoint.calls)} calls still live"
    assert writer.records == n, f"{writer.records} records for {n} calls"
    assert records and records[0].disposition == "answered" and records[0].hangup_by == "caller", records
    per_call = clock.elapsed / n
    print(f"{n} calls, {per_call * 1e6:.1f} us of event-loop CPU each "
          f"({1 / per_call:,.0f} calls/s on one core, network excluded)")  # fmt: skip
    print(f"messages in: {n * 9}; messages sent: {transports.count}; records: {writer.records}")
    if watch_gc:
        print(f"gc: {gc_time[1]} collections, {gc_time[0] * 1e3:.0f} ms "
              f"({gc_time[0] / n * 1e6:.1f} us per call; {gc_time[0] / wall * 100:.1f} % of the run); "
              f"thresholds {gc.get_threshold()}, frozen {gc.get_freeze_count()}")  # fmt: skip
        for generation, (count, spent) in enumerate(gc_by_generation):
            print(f"  generation {generation}: {count} collections, {spent * 1e3:.0f} ms")
    if profiler:
        pstats.Stats(profiler).sort_stats(sort).print_stats(45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumulative)")
    parser.add_argument("--gc", action="store_true", help="time the garbage collector's passes")
    parser.add_argument("--default-gc", action="store_true", help="keep CPython's collector settings")
    parser.add_argument("--no-gc", action="store_true", help="turn the collector off (for instruction counts)")
    parser.add_argument("--log-level", default="warning", help="as the server's --log-level")
    parser.add_argument(
        "--anchored",
        action="store_true",
        help="anchor each call's media at a real relay on loopback, as serve does by default",
    )
    parser.add_argument("--sounds", default="sounds", help="the sounds directory, for --anchored")
    args = parser.parse_args()
    flags = (" --profile" if args.profile else "") + (" --gc" if args.gc else "")
    flags += " --anchored" if args.anchored else ""
    flags += " --default-gc" if args.default_gc else ""
    flags += " --no-gc" if args.no_gc else ""
    print(f"command: python bench/bench_call_path.py --n {args.n}{flags} --log-level {args.log_level}")
    configure("console", args.log_level)
    if args.no_gc:
        gc.disable()  # before tune_gc, which only sets thresholds: the collector stays off
    media = anchored_media(args.sounds) if args.anchored else None
    # The server's own event loop (uvloop where installed): the relay's readers are added and
    # removed on it for every call.
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(run(args.n, args.profile, args.sort, args.gc, not args.default_gc, media))


if __name__ == "__main__":
    main()

"""Micro-benchmark of the SIP message parser.

Parses a typical INVITE with an SDP offer (about 600 bytes, as a desk phone sends it) N times and
prints three rates: plain parses per second; parse plus the routing-header access a transaction
and dialog lookup needs (top Via branch, Call-ID, CSeq, From tag, To tag); and parse plus
``validate()``. The target for plain parses is at least 100,000 per second on a 2-core machine.

Run it with ``python bench/bench_parser.py [-n N] [--repeat R]``; it prints the command line it
ran and the best of R repeats (the machines are shared and noisy, so the best run is the one
least disturbed by neighbours).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from collections.abc import Callable

from sentral.pbx.sip.message import Request, parse_message

SDP = (
    b"v=0\r\n"
    b"o=- 3912456789 1 IN IP4 10.20.30.41\r\n"
    b"s=-\r\n"
    b"c=IN IP4 10.20.30.41\r\n"
    b"t=0 0\r\n"
    b"m=audio 16384 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:2001@clinic.example.org SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.20.30.41:5060;branch=z9hG4bK1a2b3c4d5e;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Reception" <sip:1001@clinic.example.org>;tag=8f3a91c2\r\n'
    b"To: <sip:2001@clinic.example.org>\r\n"
    b"Call-ID: 5d2c8e7f-41a9-4b6e-9c3d-0f1e2a3b4c5d\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:1001@10.20.30.41:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


def _plain(data: bytes) -> None:
    parse_message(data)


def _routing(data: bytes) -> None:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    _ = msg.top_via.branch
    _ = msg.call_id
    _ = msg.cseq
    _ = msg.from_.tag
    _ = msg.to.tag


def _validate(data: bytes) -> None:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    msg.validate()


def _rate(work: Callable[[bytes], None], data: bytes, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            work(data)
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000, help="parses per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best one is reported")
    args = parser.parse_args(argv)

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"python {platform.python_version()} on {platform.machine()}, message {len(INVITE)} bytes")
    _validate(INVITE)  # the message must be one the parser accepts, or the figures mean nothing
    for label, work in (
        ("parse", _plain),
        ("parse + routing headers", _routing),
        ("parse + validate()", _validate),
    ):
        print(f"{label:<26} {_rate(work, INVITE, args.n, args.repeat):>12,.0f} /s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

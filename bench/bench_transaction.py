"""Micro-benchmark: server non-INVITE transactions created, matched, completed per second.

Each transaction is one REGISTER-sized OPTIONS over UDP going through the whole server life
cycle: the request creates the transaction (``receive``), one retransmission of it is matched
and absorbed, the transaction user's 200 completes it (``respond``), and Timer J ends it
(``on_timer``). Phases are timed separately over N transactions, best of several runs. Parsing the
top Via (done lazily by the message on first use) is timed apart from the layer's own work; the
"end to end" figure adds parsing both requests and building the response, which any real server
pays too.

Run:  .venv/bin/python bench/bench_transaction.py [--n 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import platform
import shlex
import sys
import time
from collections.abc import Callable

from sentral.pbx.sip.message import Request, Response, make_response, parse_message
from sentral.pbx.sip.transaction import RequestReceived, ServerTransaction, TransactionLayer

SOURCE = ("192.0.2.10", 5062)


def datagram(i: int) -> bytes:
    return (
        "OPTIONS sip:reception@clinic.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{i:08x}a7c3;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1001@clinic.example>;tag={i:x}f1\r\n"
        "To: <sip:reception@clinic.example>\r\n"
        f"Call-ID: {i:x}-5c1e9a@192.0.2.10\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Contact: <sip:1001@192.0.2.10:5062>\r\n"
        "User-Agent: Deskphone/1.0\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def parse_all(raw: list[bytes]) -> list[Request]:
    out = []
    for data in raw:
        msg = parse_message(data)
        assert isinstance(msg, Request)
        out.append(msg)
    return out


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_phases(raw: list[bytes]) -> dict[str, float]:
    n = len(raw)
    firsts = parse_all(raw)
    retransmissions = parse_all(raw)
    layer = TransactionLayer()
    txs: list[ServerTransaction] = []
    responses: list[Response] = []

    def parse_via() -> None:
        # Lazily parsed by the message; timed apart so that the layer's own share shows.
        for req in firsts:
            _ = req.top_via
        for req in retransmissions:
            _ = req.top_via

    def create() -> None:
        append = txs.append
        receive = layer.receive
        for req in firsts:
            event = receive(req, SOURCE, False, 0.0)[0]
            assert isinstance(event, RequestReceived)
            append(event.tx)

    def match() -> None:
        receive = layer.receive
        for req in retransmissions:
            receive(req, SOURCE, False, 0.1)

    def build() -> None:
        responses.extend(make_response(tx.request, 200, to_tag="b1e") for tx in txs)

    def complete() -> None:
        respond = layer.respond
        for tx, resp in zip(txs, responses, strict=True):
            respond(tx, resp, 0.2)

    def expire() -> None:
        actions = layer.on_timer(100.0)
        assert len(actions) == n

    times = {
        "top Via (x2)": timed(parse_via),
        "create": timed(create),
        "match": timed(match),
        "build 200 (TU)": timed(build),
        "complete": timed(complete),
        "expire (Timer J)": timed(expire),
    }
    assert len(layer) == 0
    return times


def run_end_to_end(raw: list[bytes]) -> float:
    layer = TransactionLayer()

    def cycle() -> None:
        receive = layer.receive
        respond = layer.respond
        for data in raw:
            req = parse_message(data)
            event = receive(req, SOURCE, False, 0.0)[0]
            assert isinstance(event, RequestReceived) and isinstance(req, Request)
            receive(parse_message(data), SOURCE, False, 0.1)
            respond(event.tx, make_response(req, 200, to_tag="b1e"), 0.2)
        layer.on_timer(100.0)

    elapsed = timed(cycle)
    assert len(layer) == 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="transactions per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    args = parser.parse_args()
    n: int = args.n
    raw = [datagram(i) for i in range(n)]

    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for phase, seconds in run_phases(raw).items():
            best[phase] = min(seconds, best.get(phase, seconds))
    end_to_end = min(run_end_to_end(raw) for _ in range(args.repeat))

    print(f"command: {shlex.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(
        f"python {platform.python_version()} on {platform.machine()}, {n} transactions, best of {args.repeat}"
    )
    for phase, seconds in best.items():
        print(f"  {phase:<18} {n / seconds:>12,.0f} /s   {seconds / n * 1e6:6.2f} us each")
    layer_only = ("create", "match", "complete", "expire (Timer J)")
    layer_total = sum(best[p] for p in layer_only)
    print(
        f"  {'layer, whole life':<18} {n / layer_total:>12,.0f} transactions/s (create+match+complete+expire)"
    )
    with_via = layer_total + best["top Via (x2)"]
    print(f"  {'... with top Via':<18} {n / with_via:>12,.0f} transactions/s")
    print(
        f"  {'end to end':<18} {n / end_to_end:>12,.0f} transactions/s (parsing 2 requests, building the 200)"
    )


if __name__ == "__main__":
    main()

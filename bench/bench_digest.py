"""Micro-benchmark of digest authentication and the abuse guard, in one process on one core.

Prints verifications a second for MD5 and SHA-256 (header parsing, verification on a reused
nonce, on a first-use nonce, and the two together), challenges a second, the cost of an unknown
user next to a wrong password (they should match), and the cost of ``Guard.check`` per message in
the situations a server meets: a steady phone, a throttled source, a blocked scanner, a spoofed
flood of new addresses and a trusted address. Each figure is the best of ``--repeat`` runs.

    python bench/bench_digest.py [--number N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable

from sentral.pbx.guard import Guard, GuardAction, GuardPolicy
from sentral.pbx.sip.auth import (
    Credentials,
    DigestAuthority,
    Verdict,
    compute_ha1,
    compute_response,
    format_credentials,
    parse_credentials,
)

SECRET = b"benchmark secret, not for use!!!"
REALM = "clinic.example"
USER = "1001"
PASSWORD = "correct horse"
URI = "sip:clinic.example"
START = 1_700_000_000.0


def best_rate(run: Callable[[], int], repeat: int) -> float:
    """Operations a second of the fastest of ``repeat`` runs; ``run`` returns how many it did."""
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        done = run()
        elapsed = time.perf_counter() - started
        best = max(best, done / elapsed)
    return best


def nonce_of(challenge: str) -> str:
    return challenge.split('nonce="', 1)[1].split('"', 1)[0]


def answers(
    authority: DigestAuthority, algorithm: str, count: int, *, fresh_nonces: bool, now: float
) -> list[str]:
    """Authorization values as a phone sends them: nc counting up on one nonce, or a new nonce each."""
    ha1 = compute_ha1(algorithm, USER, REALM, PASSWORD)
    values: list[str] = []
    nonce = nonce_of(authority.challenge(REALM, now, algorithms=(algorithm,))[0])
    opaque = authority.challenge(REALM, now, algorithms=(algorithm,))[0].split('opaque="', 1)[1].split('"')[0]
    for i in range(count):
        if fresh_nonces:
            nonce = nonce_of(authority.challenge(REALM, now, algorithms=(algorithm,))[0])
        nc = 1 if fresh_nonces else i + 1
        cnonce = f"{i:016x}"
        response = compute_response(
            algorithm, ha1, method="REGISTER", uri=URI, nonce=nonce, nc=nc, cnonce=cnonce
        )
        creds = Credentials(USER, REALM, nonce, URI, response, algorithm, cnonce, nc, "auth", opaque)
        values.append(format_credentials(creds))
    return values


def bench_digest(algorithm: str, number: int, repeat: int) -> None:
    ha1 = compute_ha1(algorithm, USER, REALM, PASSWORD)
    wrong_ha1 = compute_ha1(algorithm, USER, REALM, "wrong")
    now = START + 1.0

    def parse_only() -> int:
        for value in headers:
            parse_credentials(value)
        return len(headers)

    def verify_batch(creds: list[Credentials], stored: str | None, expect: Verdict) -> Callable[[], int]:
        def run() -> int:
            authority = batches.pop()
            verify = authority.verify
            for c in creds:
                verdict = verify("REGISTER", c, stored, now)
            assert verdict is expect, verdict
            return len(creds)

        return run

    def parse_and_verify() -> int:
        authority = batches.pop()
        verify = authority.verify
        for value in headers:
            verify("REGISTER", parse_credentials(value), ha1, now)
        return len(headers)

    # A fresh authority per run, built on the same secret, so that every run starts with an empty
    # replay table and every nonce-count is new to it.
    def authorities() -> list[DigestAuthority]:
        return [DigestAuthority(SECRET) for _ in range(repeat)]

    source = DigestAuthority(SECRET)
    headers = answers(source, algorithm, number, fresh_nonces=False, now=START)
    parsed = [parse_credentials(v) for v in headers]
    fresh = [parse_credentials(v) for v in answers(source, algorithm, number, fresh_nonces=True, now=START)]

    rates: dict[str, float] = {"parse": best_rate(parse_only, repeat)}
    batches = authorities()
    rates["verify, nonce reused"] = best_rate(verify_batch(parsed, ha1, Verdict.OK), repeat)
    batches = authorities()
    rates["verify, first use of nonce"] = best_rate(verify_batch(fresh, ha1, Verdict.OK), repeat)
    batches = authorities()
    rates["parse + verify"] = best_rate(parse_and_verify, repeat)
    batches = authorities()
    rates["verify, wrong password"] = best_rate(verify_batch(parsed, wrong_ha1, Verdict.FAILED), repeat)
    batches = authorities()
    rates["verify, unknown user"] = best_rate(verify_batch(parsed, None, Verdict.FAILED), repeat)

    def challenges() -> int:
        for i in range(number):
            source.challenge(REALM, START + i, algorithms=(algorithm,))
        return number

    rates["challenge"] = best_rate(challenges, repeat)
    for name, rate in rates.items():
        print(f"  {algorithm:<8} {name:<28} {rate:>12,.0f} /s  {1e6 / rate:7.2f} µs")


def bench_guard(number: int, repeat: int) -> None:
    policy = GuardPolicy(trusted=GuardPolicy().trusted)

    def steady() -> int:
        # One phone well inside its rate: the common case.
        guard = Guard(policy)
        check = guard.check
        for i in range(number):
            check("203.0.113.20", START + i * 0.01)
        return number

    def throttled() -> int:
        guard = Guard(GuardPolicy(excess_limit=1e12))
        check = guard.check
        for i in range(number):
            check("198.51.100.7", START + i * 1e-5)
        return number

    def blocked() -> int:
        guard = Guard(policy)
        while guard.check("198.51.100.7", START) is not GuardAction.BLOCK:
            pass
        check = guard.check
        for i in range(number):
            check("198.51.100.7", START + i * 1e-5)
        return number

    hosts = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(number)]

    def spoofed() -> int:
        guard = Guard(policy)
        check = guard.check
        for i, host in enumerate(hosts):
            check(host, START + i * 1e-5)
        return number

    def trusted() -> int:
        guard = Guard(policy)
        check = guard.check
        for i in range(number):
            check("127.0.0.1", START + i * 1e-5)
        return number

    for name, run in [
        ("steady phone (allow)", steady),
        ("flooding source (throttle)", throttled),
        ("blocked scanner (block)", blocked),
        ("spoofed flood, new source each", spoofed),
        ("trusted address", trusted),
    ]:
        rate = best_rate(run, repeat)
        print(f"  check  {name:<32} {rate:>12,.0f} /s  {1e9 / rate:7.0f} ns")


def command() -> str:
    executable = sys.executable
    relative = os.path.relpath(executable)
    return shlex.join([relative if not relative.startswith("..") else "python", *sys.argv])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--number", type=int, default=20_000, help="operations per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure, best kept (default 5)")
    args = parser.parse_args(argv)
    print(f"command: {command()}")
    print(f"python {platform.python_version()} ({platform.python_implementation()}), {platform.machine()}")
    print(f"digest (one core, best of {args.repeat} x {args.number}):")
    for algorithm in ("MD5", "SHA-256"):
        bench_digest(algorithm, args.number, args.repeat)
    print(f"guard (best of {args.repeat} x {args.number}):")
    bench_guard(args.number, args.repeat)


if __name__ == "__main__":
    main()

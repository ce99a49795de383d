"""Outbound calls per second through a trunk to a carrier, against extension-to-extension calls.

The caller is a SIPp uac authenticating with digest, as in bench_calls.py (the same scenario, with
its ACK of the 407 in the INVITE's transaction). At each offered rate it makes two steps on the
same running server, one after the other:

- internal: calls to extension 1002, a SIPp uas registered to Sentral (INVITE, 180, 200, ACK,
  200 ms of talk, BYE), as bench_calls.py measures;
- trunk: calls to a national number (91234567). Sentral applies the outbound policy, normalises
  the number to E.164 (+4791234567), sets the clinic's caller ID and sends the call out on the
  clinic's trunk to the carrier: SIPp's built-in uas on 127.0.0.2, trusted by address, which
  answers at once (and answers Sentral's OPTIONS keepalives, -aa).

Both paths anchor media at the relay in the default configuration. The figure is each path's
highest completed rate with no failed call at all, and the trunk's share of the internal rate;
the target is 80 % or more at 0 % failed.

    .venv/bin/python bench/bench_trunk_calls.py [--rates 200,400,600] [--seconds 8] [--tuned]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench_calls import caller_scenario
from loadrun import (
    DOMAIN,
    HEADER,
    Step,
    add_mode_argument,
    bench_password,
    call_server,
    highest_clean,
    mode_name,
    print_run,
    register_extension,
    run_step,
    step_rates,
)

from tests.system.peers import Sipp, free_port, write_users_csv

CALLER, CALLEE = "1001", "1002"
NATIONAL_NUMBER = "91234567"  # a Norwegian mobile number, dialled as people at home dial it
MAIN_NUMBER = "+4722334400"
CARRIER_IP = "127.0.0.2"  # not the phones' address: Sentral tells the trunk by its address
TARGET_RATIO = 0.80
NO_FAILURE = 1e-9  # highest_clean's bound: not one failed call


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="200,400,600,800", help="offered calls a second, in steps")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each step")
    add_mode_argument(parser)
    args = parser.parse_args()
    rates = step_rates(args.rates)
    command = "python bench/bench_trunk_calls.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rows: list[str] = [HEADER]
    internal: list[Step] = []
    trunk: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="sentral-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        scenario = caller_scenario(work)
        sipp = Sipp(work / "sipp")
        carrier_port = free_port(CARRIER_IP)
        server = call_server(work, (CALLER, CALLEE), tuned=args.tuned)
        server.cli_batch(
            ("clinic", "set", DOMAIN, "--country", "NO", "--main-number", MAIN_NUMBER),
            ("user", "set", CALLER, "--dial", "national"),
            ("trunk", "add", "carrier", "--host", f"{CARRIER_IP}:{carrier_port}"),
        )
        carrier = stack.enter_context(
            sipp.running(
                None, "uas", local_ip=CARRIER_IP, local_port=carrier_port, timeout=3600, extra=("-aa",)
            )
        )
        carrier.wait_listening()
        server.start()
        stack.callback(server.stop)
        assert server.proc is not None
        callee_port = free_port()
        registered = register_extension(sipp, server, work, CALLEE, callee_port)
        if registered.successful != 1:
            print(f"the callee did not register:\n{registered}")
            return 1
        callee = stack.enter_context(sipp.running(None, "uas", local_port=callee_port, timeout=3600))
        callee.wait_listening()
        for rate in rates:
            for number, steps, label in ((CALLEE, internal, "internal"), (NATIONAL_NUMBER, trunk, "trunk")):
                users = write_users_csv(
                    work / f"caller-{number}.csv", [(CALLER, bench_password(CALLER), DOMAIN, number)]
                )
                step = run_step(
                    sipp, server.address, scenario, rate, int(rate * args.seconds),
                    server_pid=server.proc.pid, users=users, extra=("-l", str(int(rate * 2) + 100)),
                )  # fmt: skip
                steps.append(step)
                rows.append(step.row(label))
                print(rows[-1], flush=True)

    best_internal = highest_clean(internal, NO_FAILURE)
    best_trunk = highest_clean(trunk, NO_FAILURE)
    rows.append("")
    for label, best in (("extension to extension", best_internal), ("out through the trunk", best_trunk)):
        if best is None:
            rows.append(f"{label}: no step without failed calls")
            continue
        cpu = f", server CPU {best.server_cpu / best.wall * 100:.0f} % of one core" if best.server_cpu else ""
        rows.append(
            f"{label}: {best.completed_per_second:.0f} calls/s, 0 failed (offered {best.rate:.0f}/s{cpu})"
        )
    if best_internal is not None and best_trunk is not None:
        ratio = best_trunk.completed_per_second / best_internal.completed_per_second
        verdict = "meets" if ratio >= TARGET_RATIO else "misses"
        rows.append(f"ratio trunk / internal: {ratio:.2f} ({verdict} the target of {TARGET_RATIO:.2f})")
    print_run(
        f"Outbound calls through a trunk against extension-to-extension calls (UDP), {mode_name(args.tuned)}",
        command,
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calls per second into a ringall group of five registered members, against calls to one extension.

Five SIPp uas processes register to Sentral as the members of a ringall group (2001-2005). The
first answers at once (SIPp's built-in uas: 180, 200, then BYE from the caller); the other four
ring until Sentral cancels them (``bench/scenarios/ring_until_cancel_uas.xml``: 180, CANCEL, 200,
487, ACK). So every call to the group is one answered leg and four cancelled ones: five INVITEs
and four CANCELs behind each call the caller sees. The group rings members already in a call
(``--ring-busy``), since the one answering SIPp stands for many people taking calls at once. In the same run and at the same offered
rates, the caller also calls one extension (a sixth SIPp uas registered as 1002): the ratio of the
two is what ringing a group costs. The caller authenticates with digest as in bench_calls.py.

    .venv/bin/python bench/bench_group_calls.py [--rates 100,200,300] [--seconds 8]
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
    run_step,
    step_rates,
)

from tests.system.peers import Sipp, free_port, write_users_csv

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE.parent / "tests" / "system" / "scenarios"
RINGER = HERE / "scenarios" / "ring_until_cancel_uas.xml"
CALLER, SINGLE, GROUP_NUMBER = "1001", "1002", "500"
MEMBERS = ("2001", "2002", "2003", "2004", "2005")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="100,200,300,400", help="offered calls a second, in steps")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each step")
    add_mode_argument(parser)
    args = parser.parse_args()
    rates = step_rates(args.rates)
    command = "python bench/bench_group_calls.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rows: list[str] = [HEADER]
    to_group: list[Step] = []
    to_one: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="sentral-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        scenario = caller_scenario(work)
        sipp = Sipp(work / "sipp")
        server = call_server(work, (CALLER, SINGLE, *MEMBERS), tuned=args.tuned)
        members = [arg for ext in MEMBERS for arg in ("--member", ext)]
        # SIPp's answering member takes many calls at once, so it must be rung while "busy".
        server.cli(
            "group",
            "add",
            "bench",
            "--number",
            GROUP_NUMBER,
            "--strategy",
            "ringall",
            "--ring-busy",
            *members,
        )
        server.start()
        stack.callback(server.stop)
        assert server.proc is not None
        for ext in (SINGLE, *MEMBERS):
            port = free_port()
            users = write_users_csv(work / f"reg-{ext}.csv", [(ext, bench_password(ext), DOMAIN)])
            registered = sipp.run(
                server.address, SCENARIOS / "register_auth.xml", users=users, calls=1, local_port=port,
                auth_uri=DOMAIN,
            )  # fmt: skip
            if registered.successful != 1:
                print(f"{ext} did not register:\n{registered}")
                return 1
            answering = ext in (SINGLE, MEMBERS[0])
            uas = stack.enter_context(
                sipp.running(None, "uas" if answering else RINGER, local_port=port, timeout=3600)
            )
            uas.wait_listening()
        for rate in rates:
            for callee, steps, label in ((GROUP_NUMBER, to_group, "group-5"), (SINGLE, to_one, "one-ext")):
                users = write_users_csv(
                    work / f"caller-{callee}.csv", [(CALLER, bench_password(CALLER), DOMAIN, callee)]
                )
                step = run_step(
                    sipp, server.address, scenario, rate, int(rate * args.seconds),
                    server_pid=server.proc.pid, users=users, extra=("-l", str(int(rate * 2) + 100)),
                )  # fmt: skip
                steps.append(step)
                rows.append(step.row(label))
                print(rows[-1], flush=True)

    best_group, best_one = highest_clean(to_group), highest_clean(to_one)
    rows.append("")
    for label, best in (("ringall group of 5", best_group), ("one extension", best_one)):
        if best is None:
            rows.append(f"{label}: no step stayed under 0.1 % failed calls")
            continue
        cpu = f", server CPU {best.server_cpu / best.wall * 100:.0f} % of one core" if best.server_cpu else ""
        rows.append(
            f"{label}: {best.completed_per_second:.0f} calls/s at {best.failure_ratio * 100:.3f} % failed "
            f"(offered {best.rate:.0f}/s{cpu})"
        )
    if best_group is not None and best_one is not None:
        rows.append(
            f"ratio group / one extension: {best_group.completed_per_second / best_one.completed_per_second:.2f}"
        )
    print_run(
        f"Calls into a ringall group of five members against calls to one extension (UDP), {mode_name(args.tuned)}",
        command,
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

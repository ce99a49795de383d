"""Completed REGISTERs with digest auth per second, through Sentral and without it.

Each registration is two round trips (REGISTER, 401, REGISTER with credentials, 200), with users
from a CSV, and Sentral commits every binding to its database before answering 200. The same
SIPp load is offered to a SIPp UAS that answers 401 then 200 without checking anything: the
baseline. Rates are stepped up; the figure is the highest completed rate with under 0.1 % failed
registrations, with the CPU of the generator and of the server.

    .venv/bin/python bench/bench_register.py [--rates 1000,2000,3000] [--seconds 10] [--users 30000]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from loadrun import (
    DOMAIN,
    HEADER,
    TUNED_ARGS,
    Step,
    add_mode_argument,
    highest_clean,
    mode_name,
    print_run,
    provision,
    run_step,
    step_rates,
)

from tests.system.peers import Sipp, free_port
from tests.system.server import SentralServer

HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent / "tests" / "system" / "scenarios" / "register_auth.xml"
BASELINE_UAS = HERE / "scenarios" / "register_uas.xml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1000,2000,3000,4000", help="offered registrations a second, in steps")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each step")
    parser.add_argument("--users", type=int, default=30000)
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    add_mode_argument(parser)
    args = parser.parse_args()
    rates = step_rates(args.rates)
    command = "python bench/bench_register.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    with tempfile.TemporaryDirectory(prefix="sentral-bench-") as tmp:
        work = Path(tmp)
        sipp = Sipp(work / "sipp")
        db_url = args.db or f"sqlite:///{work / 'sentral.db'}"
        # Registrations are logged at info as a clinic runs it; --tuned logs warnings only.
        server = SentralServer(db_url, work, extra_args=TUNED_ARGS if args.tuned else ())
        users_csv = provision(server, args.users, work)
        server.start()
        assert server.proc is not None
        rows: list[str] = [HEADER]
        through: list[Step] = []
        baseline: list[Step] = []
        try:
            for rate in rates:
                count = int(rate * args.seconds)
                step = run_step(
                    sipp, server.address, SCENARIO, rate, count,
                    server_pid=server.proc.pid, users=users_csv, transport=args.transport,
                )  # fmt: skip
                through.append(step)
                rows.append(step.row("sentral"))
        finally:
            server.stop()
        uas_port = free_port()
        for rate in rates:
            count = int(rate * args.seconds)
            with sipp.running(None, BASELINE_UAS, transport=args.transport, local_port=uas_port, timeout=300) as uas:
                uas.wait_listening()
                step = run_step(
                    sipp, f"127.0.0.1:{uas_port}", SCENARIO, rate, count,
                    server_pid=uas.proc.pid, users=users_csv, transport=args.transport,
                )  # fmt: skip
            baseline.append(step)
            rows.append(step.row("sipp-uas"))

    best, base = highest_clean(through), highest_clean(baseline)
    rows.append("")
    if best is None:
        rows.append("no step through Sentral stayed under 0.1 % failed registrations")
    else:
        rows.append(
            f"Sentral: {best.completed_per_second:.0f} authenticated registrations/s at {best.failure_ratio * 100:.3f} % "
            f"failed (offered {best.rate:.0f}/s, server CPU {best.server_cpu / best.wall * 100:.0f} % of one core)"
            if best.server_cpu is not None
            else f"Sentral: {best.completed_per_second:.0f}/s"
        )
    if base is not None:
        rows.append(f"baseline (SIPp uac -> SIPp uas): {base.completed_per_second:.0f} registrations/s")
    if best is not None and base is not None:
        rows.append(f"ratio Sentral / baseline: {best.completed_per_second / base.completed_per_second:.2f}")
    print_run(
        f"REGISTER with digest auth over {args.transport.upper()}, {DOMAIN}, {mode_name(args.tuned)}", command, rows
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Completed calls per second through the B2BUA, and SIPp uac straight to SIPp uas in the same run.

Through Sentral each call is: INVITE, 407, ACK, INVITE with credentials, 100, (B leg: INVITE, 180,
200, ACK), 180, 200, ACK, 200 ms of talk, BYE, 200 (and BYE, 200 on the B leg). The callee is a
SIPp uas registered to Sentral; the caller is a SIPp uac authenticating with digest MD5
(tests/system/scenarios/call_auth_uac.xml). The baseline is SIPp's built-in uac straight to its
built-in uas (INVITE, 180, 200, ACK, 200 ms of talk, BYE, 200: no authentication). Rates are
stepped up; the figure is the highest completed rate with under 0.1 % failed calls, with the
generator's and the server's CPU over the step.

The completed rate is the calls completed over the wall time of the step, from SIPp's start to
the end of the last call, so it includes a fixed tail (SIPp starting, the last call's 200 ms of
talk) that both paths pay alike: a step of 10 s reports at most about 97 % of the offered rate, a
step of 30 s about 99 %. A server that falls behind the offered rate does not hide in that tail:
its UDP queue grows until, some 200 ms of work deep, new calls get 503 and count as failed.

The ACK of the 407. SIPp's ``[branch]`` keyword gives every message of a scenario a branch of its
own, so the caller's scenario ACKs the 407 in a new transaction, which RFC 3261 §17.1.1.3 forbids
(the ACK of a failure response belongs to the INVITE's transaction). Sentral then retransmits the
407 until Timer H (Timer G: 10 times in 32 s, for every call) and SIPp counts the copies that reach
a call still in progress as unexpected messages. A phone does not do that, so the benchmark runs
a copy of the scenario whose ACK takes the INVITE's branch (``[branch-3]``: three messages back);
``--scenario-as-is`` runs the scenario unchanged.

    .venv/bin/python bench/bench_calls.py [--rates 200,400,600] [--seconds 10] [--scenario-as-is]
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

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE.parent / "tests" / "system" / "scenarios"
TALK_MS = 200  # the pause between ACK and BYE in call_auth_uac.xml, given to the baseline too
CALLER, CALLEE = "1001", "1002"
ACK_OF_407 = "ACK sip:[field3]@[field2] SIP/2.0"


def caller_scenario(workdir: Path) -> Path:
    """The caller's scenario with the ACK of the 407 in the INVITE's transaction (see above)."""
    text = (SCENARIOS / "call_auth_uac.xml").read_text()
    head, ack, tail = text.partition(ACK_OF_407)
    if not ack or "branch=[branch];" not in tail:
        raise SystemExit("call_auth_uac.xml changed: check how it ACKs the 407")
    fixed = workdir / "call_auth_uac.xml"
    fixed.write_text(head + ack + tail.replace("branch=[branch];", "branch=[branch-3];", 1))
    return fixed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="200,400,600,800,1000", help="offered calls a second, in steps")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each step")
    parser.add_argument(
        "--scenario-as-is",
        action="store_true",
        help="ACK the 407 with a branch of its own, as the scenario does",
    )
    add_mode_argument(parser)
    args = parser.parse_args()
    rates = step_rates(args.rates)
    command = "python bench/bench_calls.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rows: list[str] = [HEADER]
    through: list[Step] = []
    baseline: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="sentral-bench-") as tmp:
        work = Path(tmp)
        scenario = SCENARIOS / "call_auth_uac.xml" if args.scenario_as_is else caller_scenario(work)
        sipp = Sipp(work / "sipp")
        server = call_server(work, (CALLER, CALLEE), tuned=args.tuned)
        server.start()
        assert server.proc is not None
        uas_port = free_port()
        registered = register_extension(sipp, server, work, CALLEE, uas_port)
        if registered.successful != 1:
            print(f"the callee did not register:\n{registered}")
            server.stop()
            return 1
        callers = write_users_csv(work / "caller.csv", [(CALLER, bench_password(CALLER), DOMAIN, CALLEE)])
        try:
            with sipp.running(None, "uas", local_port=uas_port, timeout=3600) as uas:
                uas.wait_listening()
                for rate in rates:
                    step = run_step(
                        sipp, server.address, scenario, rate, int(rate * args.seconds),
                        server_pid=server.proc.pid, users=callers, extra=("-l", str(int(rate * 2) + 100)),
                    )  # fmt: skip
                    through.append(step)
                    rows.append(step.row("sentral"))
                    print(rows[-1], flush=True)
        finally:
            server.stop()
        base_port = free_port()
        for rate in rates:
            with sipp.running(None, "uas", local_port=base_port, timeout=600) as uas:
                uas.wait_listening()
                step = run_step(
                    sipp, f"127.0.0.1:{base_port}", "uac", rate, int(rate * args.seconds),
                    server_pid=uas.proc.pid, extra=("-l", str(int(rate * 2) + 100), "-d", str(TALK_MS)),
                )  # fmt: skip
            baseline.append(step)
            rows.append(step.row("sipp-uas"))

    best, base = highest_clean(through), highest_clean(baseline)
    rows.append("")
    if best is None:
        rows.append("no step through Sentral stayed under 0.1 % failed calls")
    else:
        cpu = f", server CPU {best.server_cpu / best.wall * 100:.0f} % of one core" if best.server_cpu else ""
        rows.append(
            f"Sentral: {best.completed_per_second:.0f} calls/s at {best.failure_ratio * 100:.3f} % failed "
            f"(offered {best.rate:.0f}/s{cpu})"
        )
    if base is not None:
        rows.append(f"baseline (SIPp uac -> SIPp uas): {base.completed_per_second:.0f} calls/s")
    if best is not None and base is not None:
        rows.append(f"ratio Sentral / baseline: {best.completed_per_second / base.completed_per_second:.2f}")
    print_run(f"Calls through the B2BUA over UDP (INVITE, 180, 200, ACK, BYE), {mode_name(args.tuned)}", command, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A server killed with SIGKILL in the middle of call traffic loses no record of a finished call."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from tests.system.peers import Sipp, SippProcess, free_port, wait_until, write_users_csv
from tests.system.server import SentralServer
from tests.system.test_calls import DOMAIN, SCENARIOS, register_sipp_uas, start_clinic
from tests.system.test_registration import add_users

CALLS = 600
RATE = 50


class LogFollower:
    """Reads the complete lines SIPp has appended to a log since the last look; cheap to poll."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0
        self.partial = b""

    def poll(self) -> int:
        """How many complete lines the file holds now."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return 0
        self.offset += len(chunk)
        data = self.partial + chunk
        self.lines += data.count(b"\n")
        self.partial = data[data.rfind(b"\n") + 1 :]
        return self.lines


def finished_calls(log: Path) -> dict[str, str]:
    """caller -> SIP Call-ID of every call whose BYE SIPp saw answered with 200 (its -log_file)."""
    if not log.exists():
        return {}
    done: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        caller, sep, call_id = line.strip().partition(";")
        if sep:
            done[caller] = call_id
    return done


@contextlib.contextmanager
def logged_calls(
    sipp: Sipp, clinic: SentralServer, tmp_path: Path, callers: list[tuple[str, str]], *, rate: float, timeout: float
) -> Iterator[tuple[SippProcess, LogFollower]]:
    """A SIPp uas registered as 1002 and a SIPp uac calling it once from each of ``callers`` at
    ``rate``, logging each call whose BYE got its 200 (see ``finished_calls``); yields the uac
    and a follower of that log once both run."""
    uas_port = free_port()
    register_sipp_uas(sipp, clinic, tmp_path, "1002", uas_port)
    users = write_users_csv(tmp_path / "callers.csv", [(ext, pw, DOMAIN, "1002") for ext, pw in callers])
    log = tmp_path / "finished.log"
    with (
        sipp.running(None, "uas", local_port=uas_port, timeout=timeout + 10) as uas,
        sipp.running(
            clinic.address,
            SCENARIOS / "call_auth_uac_logged.xml",
            users=users,
            calls=len(callers),
            rate=rate,
            limit=50,
            timeout=timeout,
            auth_uri=DOMAIN,
            extra=["-trace_logs", "-log_file", str(log)],
        ) as uac,
    ):
        uas.wait_listening()
        yield uac, LogFollower(log)


def test_sigkill_during_call_load_loses_no_record_of_a_finished_call(sipp: Sipp, tmp_path: Path) -> None:
    """SIPp uac -> Sentral -> SIPp uas at 50 calls/s of short calls; kill -9 mid-run; restart.

    "Finished" is what the caller can tell: its BYE was answered with 200 by Sentral. From then on
    the call is over for the user, so its record must survive a crash. Every call has its own
    caller extension (one CSV row per call, 600 members of staff), so a record names its call
    without doubt: for each caller the scenario logged as finished, `sentral cdr --json` after the
    restart must hold exactly one answered call from that caller to 1002, hung up by the caller,
    that ended no later than the kill. Calls cut off by the kill may or may not have a record; no
    caller may have two. SIPp is stopped before the restart, so every logged line is from before
    the kill. The kill is timed to land right after the 150th BYE was answered (the test follows
    SIPp's log every millisecond), the moment at which an answer sent ahead of its record's commit
    would show.
    """
    clinic = start_clinic(tmp_path, "--drain-timeout", "3", digest="md5")
    try:
        callers = [(str(20000 + i), f"password-{i:04d}") for i in range(CALLS)]
        add_users(clinic, callers, tmp_path / "staff.csv")
        clinic.wait_loaded()  # the running server picks the new staff up within half a second
        with logged_calls(sipp, clinic, tmp_path, callers, rate=RATE, timeout=50) as (uac, follower):
            # Kill within a millisecond or so of a BYE being answered: if the answer went out before
            # the record was on disk, this is the moment that loses it.
            wait_until(lambda: follower.poll() >= 150, 30, "150 finished calls", interval=0.001)
            clinic.kill()  # while other calls are being set up and talked
            killed_at = time.time()
            time.sleep(1.0)  # answers in flight reach SIPp; none can come from a dead server
            uac.stop()
            result = uac.wait(1.0)
        finished = finished_calls(follower.path)
        assert 150 <= len(finished) < CALLS, result

        clinic.start()
        rows = clinic.cli_json("cdr", "--limit", "0")
    finally:
        clinic.stop()

    by_caller: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_caller.setdefault(str(row["caller"]), []).append(row)
    twice = {caller: len(recs) for caller, recs in by_caller.items() if len(recs) > 1}
    assert not twice, f"callers with more than one record: {twice}"
    lost = sorted(caller for caller in finished if caller not in by_caller)
    assert not lost, (
        f"{len(lost)} of {len(finished)} calls whose BYE was answered before the kill have no record "
        f"(callers {lost[:20]}); {len(rows)} records in all"
    )
    for caller in finished:
        [row] = by_caller[caller]
        assert row["callee"] == "1002" and row["disposition"] == "answered", row
        assert row["hangup_by"] == "caller" and row["hangup_reason"] == "BYE", row
        assert row["answered_at_epoch"] <= row["ended_at_epoch"] <= killed_at, row

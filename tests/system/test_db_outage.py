"""PostgreSQL stopped under call and registration load, then started again: nothing is lost.

Phones and callers must not notice a database restart: calls go on, refreshes are answered 200, the
records and bindings acknowledged meanwhile wait in the spool and reach the database once it is
back, each exactly once, and the server keeps running throughout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.peers import LOOPBACK, Sipp, free_port, wait_until, write_users_csv
from tests.system.postgres import PrivatePostgres
from tests.system.server import SentralServer
from tests.system.test_call_crash import finished_calls, logged_calls
from tests.system.test_calls import DOMAIN, SCENARIOS
from tests.system.test_metrics import get, scrape

CALLS = 500
RATE = 20
OUTAGE = 15.0
PHONES = [(str(4000 + i), f"phone-{i:03d}") for i in range(40)]


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def register(sipp: Sipp, server: SentralServer, users: Path, port: int, count: int) -> int:
    """Register every phone in ``users`` from ``port``; how many got 200."""
    result = sipp.run(
        server.address, SCENARIOS / "register_auth.xml", users=users, calls=count, rate=50, local_port=port,
        auth_uri=DOMAIN, timeout=20,
    )  # fmt: skip
    return result.successful


def test_a_database_restart_under_load_loses_no_record_and_no_binding(
    sipp: Sipp, postgres: PrivatePostgres, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    metrics = f"{LOOPBACK}:{free_port()}"
    clinic = SentralServer(
        postgres.url,
        tmp_path / "server",
        extra_args=["--drain-timeout", "3", "--spool", str(spool), "--metrics", metrics],
    )
    clinic.cli_batch(("init", "--domain", DOMAIN), ("clinic", "set", DOMAIN, "--digest", "md5"))
    callers = [(str(20000 + i), f"password-{i:04d}") for i in range(CALLS)]
    staff = tmp_path / "staff.csv"
    staff.write_text(
        "extension,name,password\n"
        + "".join(f"{ext},Staff {ext},{pw}\n" for ext, pw in [("1002", "secret-1002"), *callers, *PHONES])
    )
    clinic.cli("user", "import", str(staff))
    clinic.start()
    try:
        phones = write_users_csv(tmp_path / "phones.csv", [(ext, pw, DOMAIN) for ext, pw in PHONES[:-1]])
        phone_port = free_port()
        assert register(sipp, clinic, phones, phone_port, len(PHONES) - 1) == len(PHONES) - 1
        with logged_calls(sipp, clinic, tmp_path, callers, rate=RATE, timeout=80) as (uac, follower):
            wait_until(lambda: follower.poll() >= 60, 30, "60 finished calls")
            postgres.stop()
            stopped_at = time.monotonic()
            # Phones refresh while the database is down, and one registers for the first time.
            assert register(sipp, clinic, phones, phone_port, len(PHONES) - 1) == len(PHONES) - 1
            newcomer = write_users_csv(tmp_path / "newcomer.csv", [(PHONES[-1][0], PHONES[-1][1], DOMAIN)])
            assert register(sipp, clinic, newcomer, free_port(), 1) == 1
            during = follower.poll()
            # The operator asks what is going on: the spool is named, with what waits in it.
            status = clinic.cli("calls", "--spool", str(spool), check=False)
            assert status.returncode != 0
            assert "wait in the spool" in status.stderr, status.stderr
            # A monitor still sees a ready server, and why it is spooling.
            code, body = get(f"http://{metrics}/health")
            report = json.loads(body)
            assert code == 200 and report["database"] == "spooling", report
            assert scrape(metrics)[("sentral_spool_items", (("writer", "call_records"),))] > 0
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped_at)))
            finished_in_outage = follower.poll() - during
            postgres.start()
            result = uac.wait(90)
        assert result.failed == 0, result
        assert result.successful == CALLS, result
        assert finished_in_outage >= RATE * 5, "calls went on while the database was down"
        assert clinic.running() and clinic.starts == 1, clinic.log_tail()

        def replayed() -> bool:
            done = clinic.cli("calls", "--spool", str(spool), check=False)
            return done.returncode == 0 and "wait in the spool" not in done.stderr

        wait_until(replayed, 15, "the spool to be replayed")
        rows = clinic.cli_json("cdr", "--limit", "0")
        bindings = clinic.registrations()
        log_text = clinic.log_path.read_text(errors="replace")
    finally:
        clinic.stop()

    for event in ("database_unreachable", "spool_replayed", "directory_reload_recovered"):
        assert event in log_text, f"{event} not in the log:\n{clinic.log_tail()}"
    # An outage is told once, not at every retry.
    assert log_text.count("directory_reload_failed") == 1, clinic.log_tail()
    finished = finished_calls(follower.path)
    assert len(finished) == CALLS
    by_caller: dict[str, int] = {}
    for row in rows:
        by_caller[str(row["caller"])] = by_caller.get(str(row["caller"]), 0) + 1
    twice = {caller: n for caller, n in by_caller.items() if n > 1}
    assert not twice, f"callers with more than one record: {twice}"
    lost = sorted(caller for caller in finished if caller not in by_caller)
    assert not lost, f"{len(lost)} finished calls have no record (callers {lost[:20]})"
    registered = {row["extension"] for row in bindings}
    missing = [ext for ext, _ in PHONES if ext not in registered]
    assert not missing, f"acknowledged registrations lost: {missing}"

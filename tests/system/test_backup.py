"""A clinic backed up while it serves calls, restored into a new place, and served from there.

The backup is taken with SIPp calls going through the server and a phone registered; the restored
database must give a new server the same staff (their passwords still work), the call records and
the registrations of before. A restore over the database of the running server is refused.
"""

from __future__ import annotations

from pathlib import Path

from tests.system.peers import Sipp, free_port, write_users_csv
from tests.system.server import SentralServer
from tests.system.test_calls import DOMAIN, SCENARIOS, records, register_sipp_uas, start_clinic

CALLS = 20


def call_burst(sipp: Sipp, clinic: SentralServer, users: Path, uas_port: int) -> None:
    """CALLS calls from 1001 to 1002 (a SIPp uas registered on ``uas_port``), all answered."""
    with sipp.running(None, "uas", local_port=uas_port, timeout=60) as uas:
        uas.wait_listening()
        result = sipp.run(
            clinic.address, SCENARIOS / "call_auth_uac.xml", users=users, calls=CALLS, rate=10, limit=10,
            timeout=50, auth_uri=DOMAIN,
        )  # fmt: skip
    assert (result.successful, result.failed) == (CALLS, 0), result


def test_a_backup_taken_under_calls_restores_into_a_server_with_the_same_staff_and_records(
    sipp: Sipp, tmp_path: Path
) -> None:
    clinic = start_clinic(tmp_path, "--drain-timeout", "3", digest="md5")
    backup = tmp_path / "backups" / "sentral-monday.db"
    backup.parent.mkdir()
    try:
        uas_port = free_port()
        register_sipp_uas(sipp, clinic, tmp_path, "1002", uas_port)
        users = write_users_csv(tmp_path / "callers.csv", [("1001", "secret-1001", DOMAIN, "1002")])
        call_burst(sipp, clinic, users, uas_port)
        before = records(clinic, CALLS)
        staff = clinic.cli_json("user", "list")
        # A second burst is under way while the backup is taken.
        with sipp.running(None, "uas", local_port=uas_port, timeout=60) as uas:
            uas.wait_listening()
            with sipp.running(
                clinic.address, SCENARIOS / "call_auth_uac.xml", users=users, calls=CALLS, rate=10,
                limit=10, timeout=50, auth_uri=DOMAIN,
            ) as callers:  # fmt: skip
                done = clinic.cli("backup", str(backup))
                assert done.stdout.startswith("Backed up ") and done.stderr == "", done
                assert callers.wait().failed == 0
        refused = clinic.cli("restore", str(backup), check=False)
        assert refused.returncode == 1
        assert "is in use (a running server or another sentral command has it open)" in refused.stderr
        assert clinic.running()
        assert len(records(clinic, 2 * CALLS)) == 2 * CALLS
    finally:
        clinic.stop()

    restored = SentralServer(
        f"sqlite:///{tmp_path / 'restored' / 'sentral.db'}",
        tmp_path / "restored",
        extra_args=["--drain-timeout", "3"],
    )
    done = restored.cli("restore", str(backup))
    assert "Restored " in done.stdout and "kept" not in done.stdout
    restored.start()
    try:
        assert restored.cli_json("user", "list") == staff
        after = restored.cli_json("cdr", "--limit", "0")
        # Everything recorded before the backup began is there, each record whole.
        assert {row["call_id"] for row in before} <= {row["call_id"] for row in after}
        assert CALLS <= len(after) <= 2 * CALLS
        assert all(len(row["legs"]) == 2 and row["disposition"] == "answered" for row in after)
        assert [(r["extension"], r["domain"]) for r in restored.registrations()] == [("1002", DOMAIN)]
        # The staff's passwords (their digest hashes) came back too: 1003 registers.
        register_sipp_uas(sipp, restored, tmp_path / "restored", "1003", free_port())
    finally:
        restored.stop()

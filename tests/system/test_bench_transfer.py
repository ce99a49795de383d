"""The blind-transfer benchmark's SIPp scenarios, run against the real server one call at a time.

``bench/bench_transfer.py`` measures only what its scenarios do, so they are proven here: the
transferred caller's scenario completes when the phone it talks to hangs up (the target's
scenario, called directly), and the transferer's scenario sends a REFER the server takes in its
dialog, follows the NOTIFY and hangs up. The REFER goes to the park number, a transfer the server
carries out today; the parked caller is taken back from its slot and hung up on, which ends the
caller's scenario as a transfer's target would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.conftest import SCENARIOS
from tests.system.peers import Sipp, SippResult, free_port, wait_until, write_users_csv
from tests.system.server import SentralServer

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
DOMAIN = "clinic.test"
CALLER, TRANSFERER, TARGET, RETRIEVER = "1001", "1002", "1003", "1004"


def password(extension: str) -> str:
    return f"pw-{extension}-scenario"


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[SentralServer]:
    """The server in its default configuration, the clinic offering MD5 (all SIPp speaks), four
    phones and a park lot."""
    work = tmp_path / "server"
    work.mkdir()
    server = SentralServer(f"sqlite:///{work / 'sentral.db'}", work, extra_args=("--drain-timeout", "2"))
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        ("clinic", "set", DOMAIN, "--digest", "md5"),
        *(
            ("user", "add", ext, "--name", f"Phone {ext}", "--password", password(ext))
            for ext in (CALLER, TRANSFERER, TARGET, RETRIEVER)
        ),
        ("park", "add", "main", "--number", "700", "--slots", "701-705", "--timeout", "60"),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def register(sipp: Sipp, server: SentralServer, tmp_path: Path, extension: str) -> int:
    """Register ``extension`` from a port of its own, where its SIPp scenario then listens."""
    port = free_port()
    users = write_users_csv(tmp_path / f"reg-{extension}.csv", [(extension, password(extension), DOMAIN)])
    done = sipp.run(
        server.address, SCENARIOS / "register_auth.xml", users=users, calls=1, local_port=port, auth_uri=DOMAIN
    )
    assert done.successful == 1, done
    return port


def call(sipp: Sipp, server: SentralServer, tmp_path: Path, caller: str, callee: str, scenario: Path) -> SippResult:
    users = write_users_csv(tmp_path / f"call-{caller}-{callee}.csv", [(caller, password(caller), DOMAIN, callee)])
    return sipp.run(server.address, scenario, users=users, calls=1, auth_uri=DOMAIN, timeout=40)


def test_the_transferred_caller_completes_when_the_target_hangs_up(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path
) -> None:
    port = register(sipp, clinic, tmp_path, TARGET)
    with sipp.running(None, BENCH / "transfer_target_uas.xml", local_port=port, calls=1, timeout=30) as target:
        target.wait_listening()
        caller = call(sipp, clinic, tmp_path, CALLER, TARGET, BENCH / "transferred_uac.xml")
        assert (caller.successful, caller.failed) == (1, 0), caller
        answered = target.wait(10)
    assert (answered.successful, answered.failed) == (1, 0), answered
    [record] = clinic.cli_json("cdr")
    assert (record["disposition"], record["hangup_by"]) == ("answered", "callee")


def test_the_transferers_refer_is_taken_in_its_dialog_and_it_hangs_up_after_the_notify(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path
) -> None:
    port = register(sipp, clinic, tmp_path, TRANSFERER)
    parker = sipp.start(
        None, BENCH / "blind_transfer_uas.xml", local_port=port, calls=1, timeout=30,
        extra=("-key", "target", "700", "-key", "domain", DOMAIN),
    )  # fmt: skip
    parker.wait_listening()
    caller = sipp.start(
        clinic.address, BENCH / "transferred_uac.xml", calls=1, auth_uri=DOMAIN, timeout=40,
        users=write_users_csv(tmp_path / "caller.csv", [(CALLER, password(CALLER), DOMAIN, TRANSFERER)]),
    )  # fmt: skip
    try:
        parked = parker.wait(20)
        assert (parked.successful, parked.failed) == (1, 0), parked
        wait_until(
            lambda: dict(clinic.cli_json("park", "show", "main")["parked"]) != {},
            5,
            "the call to be parked",
            interval=0.2,
        )
        # Taken from its slot, talked to and hung up on: the caller's scenario ends with the BYE.
        retrieved = call(sipp, clinic, tmp_path, RETRIEVER, "701", SCENARIOS / "call_auth_uac.xml")
        assert (retrieved.successful, retrieved.failed) == (1, 0), retrieved
        transferred = caller.wait(10)
        assert (transferred.successful, transferred.failed) == (1, 0), transferred
    finally:
        caller.stop()
        parker.stop()


def test_a_blind_transfer_through_the_three_scenarios_is_in_the_call_record(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path
) -> None:
    transferer_port = register(sipp, clinic, tmp_path, TRANSFERER)
    target_port = register(sipp, clinic, tmp_path, TARGET)
    transferer = sipp.start(
        None, BENCH / "blind_transfer_uas.xml", local_port=transferer_port, calls=1, timeout=30,
        extra=("-key", "target", TARGET, "-key", "domain", DOMAIN),
    )  # fmt: skip
    target = sipp.start(None, BENCH / "transfer_target_uas.xml", local_port=target_port, calls=1, timeout=30)
    try:
        transferer.wait_listening()
        target.wait_listening()
        caller = call(sipp, clinic, tmp_path, CALLER, TRANSFERER, BENCH / "transferred_uac.xml")
        assert (caller.successful, caller.failed) == (1, 0), caller
        for phone in (transferer.wait(10), target.wait(10)):
            assert (phone.successful, phone.failed) == (1, 0), phone
    finally:
        transferer.stop()
        target.stop()
    [record] = clinic.cli_json("cdr")
    assert [(t["by"], t["kind"], t["target"], t["outcome"]) for t in record["transfers"]] == [
        (TRANSFERER, "blind", TARGET, "answered")
    ]
    assert record["started_at_epoch"] <= record["transfers"][0]["at_epoch"] <= record["ended_at_epoch"]
    table = clinic.cli("cdr").stdout.splitlines()
    assert f"    transferred by {TRANSFERER} (blind) to {TARGET}: answered" in table

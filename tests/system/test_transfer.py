"""Blind transfer as the phones see it, with pjsua2 softphones: Bob, talking to Alice, transfers her
to Carol (or to the group 500); who rings, showing whom, who then hears whom, what `sentral calls`
lists, the recall to Bob when Carol rejects or does not answer, and the records.

One server for the module, with short timers: the recall after ``RECALL`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.peers import Softphone, wait_until
from tests.system.server import SentralServer
from tests.system.test_call_media import assert_hears, start_media_clinic
from tests.system.test_calls import dial, phone_for, talking
from tests.system.test_media import A_TONE, B_TONE, LISTEN_SECONDS, tones

__all__ = ["tones"]  # the fixture, used here by name

RECALL = 3  # --transfer-recall
NO_ANSWER = 6  # --no-answer-timeout: how long the recall rings Bob


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory, sounds: Path) -> Iterator[SentralServer]:
    server, _ = start_media_clinic(
        tmp_path_factory.mktemp("transfer"),
        sounds,
        "--transfer-recall",
        str(RECALL),
        "--no-answer-timeout",
        str(NO_ANSWER),
    )
    try:
        server.cli_batch(
            ("user", "add", "1004", "--name", "Staff 1004", "--password", "secret-1004"),
            ("group", "add", "lab", "--number", "500", "--strategy", "ringall", "--member", "1003", "--member", "1004"),
        )  # fmt: skip
        server.wait_loaded()
        yield server
    finally:
        server.stop()


def record_of(clinic: SentralServer, before: set[str]) -> dict[str, Any]:
    """The one record of `sentral cdr --json` whose call is not among ``before``."""
    rows: list[dict[str, Any]] = []

    def stored() -> bool:
        nonlocal rows
        rows = [row for row in clinic.cli_json("cdr", "--limit", "0") if row["call_id"] not in before]
        return bool(rows)

    wait_until(stored, 5, "the call's record", interval=0.2)
    [row] = rows
    return row


def stored_records(clinic: SentralServer) -> set[str]:
    return {row["call_id"] for row in clinic.cli_json("cdr", "--limit", "0")}


def transfer(clinic: SentralServer, bob: Softphone, b_call: str, number: str) -> None:
    """Bob blind-transfers his call to ``number``, is told it worked, and hangs up as a phone does."""
    bob.xfer(b_call, dial(clinic, number))
    assert bob.wait_event("transfer_status", call=b_call, final=True)["code"] == 200
    bob.hangup(b_call)
    bob.wait_call_state(b_call, "DISCONNECTED")


def hear_each_other(
    x: Softphone, x_call: str, y: Softphone, y_call: str, tones: dict[str, Path], tmp_path: Path, who: str
) -> None:
    x.play(x_call, tones["a"], loop=True)
    y.play(y_call, tones["b"], loop=True)
    x_heard, y_heard = tmp_path / f"{who}-x.wav", tmp_path / f"{who}-y.wav"
    x.record(x_call, x_heard)
    y.record(y_call, y_heard)
    time.sleep(LISTEN_SECONDS)
    x.stop_media(x_call)
    y.stop_media(y_call)
    assert_hears(x_heard, f"{who}: the transferee", B_TONE, A_TONE)
    assert_hears(y_heard, f"{who}: the phone that took the call", A_TONE, B_TONE)


def listed(clinic: SentralServer) -> list[tuple[str, str, str]]:
    return [(row["caller"], row["callee"], row["state"]) for row in clinic.cli_json("calls")]


def lines(clinic: SentralServer) -> dict[str, str]:
    """What `sentral presence` says each of Alice's, Bob's and Carol's lines is doing."""
    return {row["extension"]: row["line"] for row in clinic.cli_json("presence") if row["extension"] < "1004"}


def test_carol_answers_a_blind_transfer_and_talks_to_alice_while_bobs_line_is_idle(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tones: dict[str, Path], tmp_path: Path
) -> None:
    before = stored_records(clinic)
    alice, a_call, bob, b_call = talking(clinic, softphone_factory)
    carol = phone_for(softphone_factory, clinic, "1003")
    transfer(clinic, bob, b_call, "1003")
    incoming = carol.wait_incoming("1003")
    # Carol's phone shows who is calling: Alice, not Bob who transferred her.
    assert "Staff 1001" in incoming["remote_uri"] and "sip:1001@" in incoming["remote_uri"], incoming
    assert not alice.events("call_state", call=a_call, state="DISCONNECTED")
    carol.answer(incoming["call"])
    carol.wait_event("media_state", call=incoming["call"], status="active")
    wait_until(
        lambda: listed(clinic) == [("1001", "1003", "answered")], 5, "the call to list Carol", interval=0.2
    )
    talking_lines = {"1001": "busy", "1002": "idle", "1003": "busy"}
    wait_until(lambda: lines(clinic) == talking_lines, 5, "Bob's line idle", interval=0.2)
    assert [e for e in bob.events("incoming_call") if e["call"] != b_call] == []  # no recall
    hear_each_other(alice, a_call, carol, incoming["call"], tones, tmp_path, "answered")
    carol.hangup(incoming["call"])
    alice.wait_call_state(a_call, "DISCONNECTED")
    row = record_of(clinic, before)
    assert [leg["outcome"] for leg in row["legs"]] == ["answered", "transferred", "answered"]
    assert all(ext in leg["target"] for ext, leg in zip(("1001", "1002", "1003"), row["legs"], strict=True))
    assert row["hangup_by"] == "callee"


def test_carol_rejecting_rings_bob_again_as_returned_and_he_takes_alice_back(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tones: dict[str, Path], tmp_path: Path
) -> None:
    before = stored_records(clinic)
    alice, a_call, bob, b_call = talking(clinic, softphone_factory)
    carol = phone_for(softphone_factory, clinic, "1003")
    transfer(clinic, bob, b_call, "1003")
    carol.hangup(carol.wait_incoming("1003")["call"], code=486)
    recall = bob.wait_incoming("1002")
    # The clinic speaks Norwegian (serve's default language): "Tilbake" is "returned".
    assert '"Tilbake: Staff 1001"' in recall["remote_uri"], recall
    bob.answer(recall["call"])
    bob.wait_event("media_state", call=recall["call"], status="active")
    hear_each_other(alice, a_call, bob, recall["call"], tones, tmp_path, "returned")
    alice.hangup(a_call)
    bob.wait_call_state(recall["call"], "DISCONNECTED")
    row = record_of(clinic, before)
    assert [leg["outcome"] for leg in row["legs"]] == ["answered", "transferred", "busy", "answered"], row


def test_a_transfer_nobody_answers_rings_bob_again_after_the_recall_time(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    before = stored_records(clinic)
    alice, a_call, bob, b_call = talking(clinic, softphone_factory)
    carol = phone_for(softphone_factory, clinic, "1003")
    transfer(clinic, bob, b_call, "1003")
    rung = time.monotonic()
    ringing = carol.wait_incoming("1003")["call"]
    recall = bob.wait_incoming("1002", timeout=RECALL + 5)
    assert time.monotonic() - rung >= RECALL - 0.5
    carol.wait_call_state(ringing, "DISCONNECTED")  # Carol's phone stopped ringing
    bob.answer(recall["call"])
    bob.wait_call_state(recall["call"], "CONFIRMED")
    bob.hangup(recall["call"])
    alice.wait_call_state(a_call, "DISCONNECTED")
    row = record_of(clinic, before)
    assert [leg["outcome"] for leg in row["legs"]] == ["answered", "transferred", "cancelled", "answered"]


def test_a_transfer_to_a_ringall_group_is_taken_by_the_member_who_answers(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    before = stored_records(clinic)
    alice, a_call, bob, b_call = talking(clinic, softphone_factory)
    carol = phone_for(softphone_factory, clinic, "1003")
    dave = phone_for(softphone_factory, clinic, "1004")
    transfer(clinic, bob, b_call, "500")
    to_carol = carol.wait_incoming("1003")
    to_dave = dave.wait_incoming("1004")
    assert all("Staff 1001" in rung["remote_uri"] for rung in (to_carol, to_dave))
    dave.answer(to_dave["call"])
    dave.wait_call_state(to_dave["call"], "CONFIRMED")
    carol.wait_call_state(to_carol["call"], "DISCONNECTED")
    wait_until(
        lambda: listed(clinic) == [("1001", "1004", "answered")], 5, "the call to list Dave", interval=0.2
    )
    alice.hangup(a_call)
    dave.wait_call_state(to_dave["call"], "DISCONNECTED")
    row = record_of(clinic, before)
    assert [leg["outcome"] for leg in row["legs"]] == ["answered", "transferred", "cancelled", "answered"]
    assert row["callee"] == "1002"

"""Attended transfer as three pjsua2 phones see it: Bob talks to Alice, holds her, calls Carol and
transfers Alice to Carol with pjsua2's attended transfer (REFER with Replaces); Alice and Carol then
hear each other (tones crossing, checked by FFT), Bob's phone is left with no call, and `sentral
cdr --json` shows both calls. Semi-attended: Bob transfers while Carol's phone still rings; it rings
again for Alice, who hears music until Carol answers.

One server for the module: each test counts the records it adds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.peers import Softphone
from tests.system.server import SentralServer
from tests.system.test_call_media import assert_hears, start_media_clinic
from tests.system.test_calls import dial, phone_for, records, talking
from tests.system.test_media import A_TONE, B_TONE, LISTEN_SECONDS, assert_music, record, tones

__all__ = ["tones"]  # the fixture, used here by name


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory, sounds: Path) -> Iterator[SentralServer]:
    server, _ = start_media_clinic(tmp_path_factory.mktemp("attended"), sounds)
    try:
        yield server
    finally:
        server.stop()


def bob_holds_alice_and_calls_carol(
    clinic: SentralServer, factory: Callable[..., Softphone]
) -> tuple[Softphone, str, Softphone, str, str, Softphone, str]:
    """Alice calls Bob, who holds her and calls Carol; Carol's phone rings (not answered yet)."""
    alice, a_call, bob, b_call = talking(clinic, factory)
    bob.hold(b_call)
    alice.wait_event("media_state", call=a_call, where=lambda event: event["status"] != "active")
    carol = phone_for(factory, clinic, "1003")
    consult = bob.call("1002", dial(clinic, "1003"))
    c_call = carol.wait_incoming("1003")["call"]
    bob.wait_call_state(consult, "EARLY")
    return alice, a_call, bob, b_call, consult, carol, c_call


def assert_talking(alice: Softphone, a_call: str, carol: Softphone, c_call: str, tmp_path: Path) -> None:
    """Alice and Carol hear each other's tone."""
    alice.play(a_call, tmp_path / "a.wav", loop=True)
    carol.play(c_call, tmp_path / "b.wav", loop=True)
    a_heard, c_heard = tmp_path / "alice-heard.wav", tmp_path / "carol-heard.wav"
    alice.record(a_call, a_heard)
    carol.record(c_call, c_heard)
    time.sleep(LISTEN_SECONDS)
    alice.stop_media(a_call)
    carol.stop_media(c_call)
    assert_hears(a_heard, "Alice after the transfer", B_TONE, A_TONE)
    assert_hears(c_heard, "Carol after the transfer", A_TONE, B_TONE)


def new_records(clinic: SentralServer, before: int, count: int) -> tuple[dict[str, Any], ...]:
    """The records added since there were ``before``, once there are ``count`` of them: Bob's call
    to Carol, then (when there) Alice's to Bob."""
    rows = records(clinic, before + count)[before:]
    return tuple(sorted(rows, key=lambda row: row["callee"] != "1003"))


def outcomes(row: dict[str, Any]) -> list[str]:
    return [leg["outcome"] for leg in row["legs"]]


def transfers(row: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(t["by"], t["kind"], t["target"], t["outcome"]) for t in row["transfers"]]


# Phones differ in which call their REFER goes on: pjsua2 sends it on the call it is asked to transfer.
@pytest.mark.parametrize("refer_on", ["alice", "carol"])
def test_after_bob_and_carol_spoke_bob_transfers_alice_to_carol(
    refer_on: str,
    clinic: SentralServer,
    softphone_factory: Callable[..., Softphone],
    tones: dict[str, Path],
    tmp_path: Path,
) -> None:
    before = len(records(clinic, 0))
    alice, a_call, bob, b_call, consult, carol, c_call = bob_holds_alice_and_calls_carol(
        clinic, softphone_factory
    )
    carol.answer(c_call)
    bob.wait_call_state(consult, "CONFIRMED")
    carol.wait_event("media_state", call=c_call, status="active")

    on, other = (b_call, consult) if refer_on == "alice" else (consult, b_call)
    bob.xfer_replaces(on, other)
    assert bob.wait_event("transfer_status", call=on, final=True)["code"] == 200
    bob.wait_call_state(consult, "DISCONNECTED")
    bob.wait_call_state(b_call, "DISCONNECTED", timeout=10)
    # Sentral offers Alice the relay again: she is no longer held.
    alice.wait_event("media_state", call=a_call, status="active")
    assert_talking(alice, a_call, carol, c_call, tmp_path)
    assert bob.request("calls")["calls"] == []

    carol.hangup(c_call)
    alice.wait_call_state(a_call, "DISCONNECTED")
    consultation, transferred = new_records(clinic, before, 2)
    assert consultation["hangup_reason"] == "attended transfer"
    assert (consultation["caller"], consultation["callee"]) == ("1002", "1003")
    assert sorted(outcomes(consultation)) == ["transferred", "transferred"]
    assert (transferred["caller"], transferred["callee"]) == ("1001", "1002")
    assert outcomes(transferred) == ["answered", "transferred", "answered"]
    assert "1003" in transferred["legs"][2]["target"] and transferred["hangup_by"] == "callee"
    assert transfers(transferred) == [("1002", "attended", "1003", "answered")]


def test_bob_transfers_alice_while_carol_rings_and_she_talks_to_alice_when_she_answers(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tones: dict[str, Path], tmp_path: Path
) -> None:
    before = len(records(clinic, 0))
    alice, a_call, bob, b_call, consult, carol, c_call = bob_holds_alice_and_calls_carol(
        clinic, softphone_factory
    )

    bob.xfer_replaces(b_call, consult)
    assert bob.wait_event("transfer_status", call=b_call, final=True)["code"] == 200
    bob.wait_call_state(consult, "DISCONNECTED")
    bob.wait_call_state(b_call, "DISCONNECTED", timeout=10)
    assert bob.request("calls")["calls"] == []
    # Bob's call to Carol ends, and her phone rings again, for Alice, who hears music meanwhile.
    carol.wait_call_state(c_call, "DISCONNECTED")
    again = carol.wait_incoming("1003")
    assert "1001" in again["remote_uri"], again
    alice.wait_event("media_state", call=a_call, status="active")
    assert_music(record(alice, a_call, tmp_path / "waiting.wav", 2.0), "Alice waiting", (A_TONE, B_TONE))
    [consultation] = new_records(clinic, before, 1)
    assert consultation["hangup_reason"] == "attended transfer" and consultation["status_to_caller"] == 480

    carol.answer(again["call"])
    carol.wait_event("media_state", call=again["call"], status="active")
    assert_talking(alice, a_call, carol, again["call"], tmp_path)
    alice.hangup(a_call)
    carol.wait_call_state(again["call"], "DISCONNECTED")
    _, transferred = new_records(clinic, before, 2)
    assert outcomes(transferred) == ["answered", "transferred", "answered"]
    assert transferred["hangup_by"] == "caller"
    assert transfers(transferred) == [("1002", "semi-attended", "1003", "answered")]


def test_phones_with_direct_media_are_joined_at_the_relay(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tones: dict[str, Path], tmp_path: Path
) -> None:
    # Every call between these phones sends media straight between them; Bob's hold brings Alice's
    # to the relay, and the transfer brings Carol's there before joining the two.
    for extension in ("1001", "1002", "1003"):
        clinic.reconfigure("direct-media", "on", extension)
    try:
        alice, a_call, bob, b_call, consult, carol, c_call = bob_holds_alice_and_calls_carol(
            clinic, softphone_factory
        )
        carol.answer(c_call)
        bob.wait_call_state(consult, "CONFIRMED")
        carol.wait_event("media_state", call=c_call, status="active")
        bob.xfer_replaces(b_call, consult)
        assert bob.wait_event("transfer_status", call=b_call, final=True)["code"] == 200
        bob.wait_call_state(b_call, "DISCONNECTED", timeout=10)
        alice.wait_event("media_state", call=a_call, status="active")
        assert_talking(alice, a_call, carol, c_call, tmp_path)
        carol.hangup(c_call)
        alice.wait_call_state(a_call, "DISCONNECTED")
    finally:
        for extension in ("1001", "1002", "1003"):
            clinic.reconfigure("direct-media", "off", extension)

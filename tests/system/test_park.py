"""Parking as the phones and the operator see it: a phone keys the park code during a call, the
other phone hears music on its slot, the slot shows in `sentral calls` and `sentral park show`,
and the call rings its parker again when nobody takes it.

The park code is keyed as RFC 4733 events by a pjsua2 phone and by SIPp (that the call is parked
is the proof that Sentral detected the keys), and a park key's blind transfer to the park number
parks a call as well.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.system.conftest import SCENARIOS
from tests.system.peers import Sipp, Softphone, wait_until, write_users_csv
from tests.system.server import SentralServer
from tests.system.test_call_media import assert_hears, start_media_clinic
from tests.system.test_calls import DOMAIN, dial, phone_for, records, talking
from tests.system.test_media import A_TONE, B_TONE, LISTEN_SECONDS, assert_music, record, tones

__all__ = ["tones"]  # the fixture, used here by name

RECALL_AFTER = 10  # the shortest park timeout the CLI accepts


@pytest.fixture
def clinic(tmp_path: Path, sounds: Path) -> Iterator[SentralServer]:
    server, _ = start_media_clinic(tmp_path, sounds, "--no-answer-timeout", "20")
    try:
        server.reconfigure(
            "park", "add", "main", "--number", "700", "--slots", "701-705", "--timeout", str(RECALL_AFTER)
        )
        yield server
    finally:
        server.stop()


def parked_calls(clinic: SentralServer) -> dict[str, str]:
    return dict(clinic.cli_json("park", "show", "main", "--json")["parked"])


def test_a_parked_call_hears_music_shows_on_its_slot_and_rings_the_parker_again(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tones: dict[str, Path], tmp_path: Path
) -> None:
    alice, a_call, bob, b_call = talking(clinic, softphone_factory)
    bob.dtmf(b_call, "#72")
    parked_at = time.monotonic()
    # The keys are relayed to Alice as RFC 4733 events too (Sentral detects them on the way).
    keys = [alice.wait_event("dtmf", call=a_call, digit=key) for key in "#72"]
    assert {event["method"] for event in keys} == {"rfc4733"}
    # Bob hears the slot announced, then Sentral hangs up on him.
    bob.wait_call_state(b_call, "DISCONNECTED", timeout=10)
    wait_until(lambda: parked_calls(clinic) != {}, 5, "the parked call to be published", interval=0.2)
    [(slot, call_id)] = parked_calls(clinic).items()
    assert slot == "701"
    [live] = clinic.cli_json("calls", "--json")
    assert (live["call_id"], live["state"], live["parked"]) == (call_id, "parked", "701")
    # Alice, parked, hears music, not Bob's tone.
    assert_music(record(alice, a_call, tmp_path / "parked.wav", 2.0), "Alice parked", (A_TONE, B_TONE))

    # Nobody dials 701: after the lot's timeout Bob's phone rings again, showing the slot.
    recall = bob.wait_incoming("1002", timeout=RECALL_AFTER + 5)
    assert time.monotonic() - parked_at >= RECALL_AFTER - 1
    assert "Parked 701" in recall["remote_uri"], recall
    bob.answer(recall["call"])
    bob.wait_event("media_state", call=recall["call"], status="active")
    wait_until(lambda: parked_calls(clinic) == {}, 5, "the slot to be free again", interval=0.2)
    alice.play(a_call, tones["a"], loop=True)
    bob.play(recall["call"], tones["b"], loop=True)
    a_heard, b_heard = tmp_path / "a-back.wav", tmp_path / "b-back.wav"
    alice.record(a_call, a_heard)
    bob.record(recall["call"], b_heard)
    time.sleep(LISTEN_SECONDS)
    alice.stop_media(a_call)
    bob.stop_media(recall["call"])
    assert_hears(a_heard, "Alice after the recall", B_TONE, A_TONE)
    assert_hears(b_heard, "Bob after the recall", A_TONE, B_TONE)

    alice.hangup(a_call)
    bob.wait_call_state(recall["call"], "DISCONNECTED")
    [row] = records(clinic, 1)
    assert [leg["outcome"] for leg in row["legs"]] == ["answered", "parked", "answered"]
    assert row["hangup_by"] == "caller"


def test_anyone_dialling_the_slot_takes_the_parked_call(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tones: dict[str, Path], tmp_path: Path
) -> None:
    alice, a_call, bob, b_call = talking(clinic, softphone_factory)
    # This time Bob parks Alice the way a park key does it: a blind transfer to the park number.
    bob.xfer(b_call, dial(clinic, "700"))
    assert bob.wait_event("transfer_status", call=b_call, final=True)["code"] == 200
    bob.hangup(b_call)
    bob.wait_call_state(b_call, "DISCONNECTED", timeout=10)
    wait_until(lambda: parked_calls(clinic) != {}, 5, "the parked call to be published", interval=0.2)
    carol = phone_for(softphone_factory, clinic, "1003")
    c_call = carol.call("1003", dial(clinic, "701"))
    carol.wait_call_state(c_call, "CONFIRMED")
    carol.wait_event("media_state", call=c_call, status="active")
    wait_until(lambda: parked_calls(clinic) == {}, 5, "the slot to be free again", interval=0.2)
    alice.play(a_call, tones["a"], loop=True)
    carol.play(c_call, tones["b"], loop=True)
    a_heard, c_heard = tmp_path / "a-taken.wav", tmp_path / "c-taken.wav"
    alice.record(a_call, a_heard)
    carol.record(c_call, c_heard)
    time.sleep(LISTEN_SECONDS)
    alice.stop_media(a_call)
    carol.stop_media(c_call)
    assert_hears(a_heard, "Alice taken by Carol", B_TONE, A_TONE)
    assert_hears(c_heard, "Carol", A_TONE, B_TONE)
    # An empty slot leads nowhere.
    empty = carol.call("1003", dial(clinic, "702"))
    assert carol.wait_call_state(empty, "DISCONNECTED")["code"] == 404
    carol.hangup(c_call)
    alice.wait_call_state(a_call, "DISCONNECTED")
    outcomes = sorted([leg["outcome"] for leg in row["legs"]] for row in records(clinic, 2))
    assert outcomes == [["answered", "parked", "retrieved"], ["failed"]]


# SIPp's own recordings of RFC 4733 key presses, installed with it.
SIPP_PCAPS = Path("/usr/share/sip-tester")


def test_keys_sipp_sends_as_rfc4733_events_park_the_call(
    clinic: SentralServer, sipp: Sipp, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    clinic.reconfigure("clinic", "set", DOMAIN, "--digest", "md5")  # SIPp speaks MD5 only
    bob = phone_for(softphone_factory, clinic, "1002")
    for key in ("pound", "7", "2"):
        shutil.copy(SIPP_PCAPS / f"dtmf_2833_{key}.pcap", sipp.workdir)
    users = write_users_csv(tmp_path / "caller.csv", [("1001", "secret-1001", DOMAIN, "1002")])
    with sipp.running(
        clinic.address, SCENARIOS / "park_code_uac.xml", users=users, calls=1, auth_uri=DOMAIN
    ) as run:
        b_call = bob.wait_incoming("1002")["call"]
        bob.answer(b_call)
        result = run.wait()
    assert result.successful == 1, result
    wait_until(lambda: parked_calls(clinic) != {}, 5, "the parked call to be published", interval=0.2)
    [live] = clinic.cli_json("calls", "--json")
    assert live["parked"] == "701" and live["caller"] == "1001"
    bob.hangup(b_call)
    [row] = records(clinic, 1)
    assert sorted(leg["outcome"] for leg in row["legs"]) == ["answered", "parked"]

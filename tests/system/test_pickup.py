"""Call pickup as the phones and the records see it: a colleague dials ``**1002`` or ``*8`` from a
pjsua2 phone and talks to the caller whose call was ringing elsewhere (audio checked both ways),
the phone that rang stops without a missed call, and a busy-lamp key picks up with an INVITE whose
Replaces SIPp builds from the dialog-info NOTIFY a subscription to the ringing extension received.

One server for the module: each test starts its own phones and reads only the records it made.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.peers import Sipp, Softphone, write_users_csv
from tests.system.server import SentralServer
from tests.system.test_call_media import assert_hears, sip_log, start_media_clinic
from tests.system.test_calls import DOMAIN, dial, phone_for, records
from tests.system.test_media import A_TONE, B_TONE, LISTEN_SECONDS, tones
from tests.system.test_presence import DI, SCENARIOS, Watcher

__all__ = ["tones"]  # the fixture, used here by name


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory, sounds: Path) -> Iterator[SentralServer]:
    """A clinic with the relay, MD5 digest (SIPp and the busy-lamp watcher speak no other), and a
    function reception (500) that 1002 is logged in to and 1003 is a member of, logged out."""
    server, _ = start_media_clinic(tmp_path_factory.mktemp("pickup"), sounds, "--no-answer-timeout", "30")
    try:
        server.cli_batch(
            ("clinic", "set", DOMAIN, "--digest", "md5"),
            ("function", "add", "reception", "--number", "500", "--member", "1002", "--member", "1003"),
            ("login", "1002", "reception"),
        )
        server.wait_loaded()
        yield server
    finally:
        server.stop()


class NewRecords:
    """The call records a test adds to the module's server."""

    def __init__(self, clinic: SentralServer) -> None:
        self.clinic = clinic
        self.before = {row["call_id"] for row in clinic.cli_json("cdr", "--limit", "0")}

    def wait(self, count: int) -> list[dict[str, Any]]:
        rows = records(self.clinic, len(self.before) + count)
        return [row for row in rows if row["call_id"] not in self.before]


def picked_up(row: dict[str, Any]) -> list[tuple[str, str]]:
    return [(leg["role"], leg["outcome"]) for leg in row["legs"]]


def assert_talk(caller: Softphone, c_call: str, picker: Softphone, p_call: str, tones: dict[str, Path],
                tmp_path: Path) -> None:  # fmt: skip
    """The caller and the picker hear each other's tone."""
    caller.play(c_call, tones["a"], loop=True)
    picker.play(p_call, tones["b"], loop=True)
    c_heard, p_heard = tmp_path / "caller.wav", tmp_path / "picker.wav"
    caller.record(c_call, c_heard)
    picker.record(p_call, p_heard)
    time.sleep(LISTEN_SECONDS)
    caller.stop_media(c_call)
    picker.stop_media(p_call)
    assert_hears(c_heard, "the caller", B_TONE, A_TONE)
    assert_hears(p_heard, "the picker", A_TONE, B_TONE)


def test_dialling_star_star_and_the_extension_picks_up_the_call_ringing_there(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tones: dict[str, Path], tmp_path: Path
) -> None:
    new = NewRecords(clinic)
    alice = phone_for(softphone_factory, clinic, "1001")
    bob = phone_for(softphone_factory, clinic, "1002")
    carol = phone_for(softphone_factory, clinic, "1003")
    a_call = alice.call("1001", dial(clinic, "1002"))
    b_call = bob.wait_incoming("1002")["call"]
    alice.wait_call_state(a_call, "EARLY")
    c_call = carol.call("1003", dial(clinic, "**1002"))
    carol.wait_call_state(c_call, "CONFIRMED")
    alice.wait_call_state(a_call, "CONFIRMED")
    bob.wait_call_state(b_call, "DISCONNECTED")
    alice.wait_event("media_state", call=a_call, status="active")
    carol.wait_event("media_state", call=c_call, status="active")
    assert_talk(alice, a_call, carol, c_call, tones, tmp_path)
    carol.hangup(c_call)
    alice.wait_call_state(a_call, "DISCONNECTED")
    [row] = new.wait(1)
    assert picked_up(row) == [("caller", "answered"), ("callee", "cancelled"), ("callee", "picked_up")], row
    assert (row["caller"], row["callee"], row["callee_extension"]) == ("1001", "1002", "1003"), row
    assert row["disposition"] == "answered" and row["hangup_by"] == "callee", row
    # Bob's phone stopped ringing because the call was completed elsewhere (RFC 3326), not missed.
    bob.close()
    [cancel] = [seen for seen in sip_log(bob) if seen.way == "RX" and "CANCEL" in seen.summary]
    assert 'Reason: SIP;cause=200;text="Call completed elsewhere"' in cancel.text, cancel.text


def test_star_eight_picks_up_a_call_ringing_for_a_function_and_then_finds_nothing(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    new = NewRecords(clinic)
    alice = phone_for(softphone_factory, clinic, "1001")
    bob = phone_for(softphone_factory, clinic, "1002")
    carol = phone_for(softphone_factory, clinic, "1003")
    a_call = alice.call("1001", dial(clinic, "500"))
    b_call = bob.wait_incoming("1002")["call"]
    alice.wait_call_state(a_call, "EARLY")
    c_call = carol.call("1003", dial(clinic, "*8"))
    carol.wait_call_state(c_call, "CONFIRMED")
    alice.wait_call_state(a_call, "CONFIRMED")
    bob.wait_call_state(b_call, "DISCONNECTED")
    carol.wait_event("media_state", call=c_call, status="active")
    # Nothing else rings for reception: a second *8 is refused.
    again = carol.call("1003", dial(clinic, "*8"))
    assert carol.wait_call_state(again, "DISCONNECTED")["code"] == 404
    alice.hangup(a_call)
    carol.wait_call_state(c_call, "DISCONNECTED")
    rows = new.wait(2)
    [row] = [row for row in rows if row["callee"] == "500"]
    assert picked_up(row) == [("caller", "answered"), ("callee", "cancelled"), ("callee", "picked_up")], row
    assert row["callee_extension"] == "1003" and row["hangup_by"] == "caller", row
    [refused] = [row for row in rows if row["callee"] == "*8"]
    assert refused["status_to_caller"] == 404, refused


def ringing_dialog(watcher: Watcher, timeout: float = 10.0) -> dict[str, str]:
    """The attributes of the first early dialog a NOTIFY to ``watcher`` carries."""
    deadline = time.monotonic() + timeout
    while True:
        notification = watcher.notified(max(0.1, deadline - time.monotonic()))
        for dialog in ET.fromstring(notification.body).findall(f"{DI}dialog"):
            if dialog.findtext(f"{DI}state") == "early":
                return dict(dialog.attrib)


def test_a_busy_lamp_key_picks_up_with_replaces_from_the_dialog_info(
    clinic: SentralServer, sipp: Sipp, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    new = NewRecords(clinic)
    alice = phone_for(softphone_factory, clinic, "1001")
    bob = phone_for(softphone_factory, clinic, "1002")
    lamp = Watcher(clinic, "1003", "secret-1003")
    try:
        assert lamp.subscribe("1002").lamp() == []
        a_call = alice.call("1001", dial(clinic, "1002"))
        b_call = bob.wait_incoming("1002")["call"]
        dialog = ringing_dialog(lamp)
    finally:
        lamp.close()
    assert dialog["direction"] == "recipient" and dialog["call-id"], dialog
    users = write_users_csv(
        tmp_path / "picker.csv",
        [("1003", "secret-1003", DOMAIN, "1002", dialog["call-id"], dialog["remote-tag"], dialog["local-tag"])],
    )
    with sipp.running(
        clinic.address, SCENARIOS / "pickup_replaces_uac.xml", users=users, calls=1, auth_uri=DOMAIN
    ) as run:
        alice.wait_call_state(a_call, "CONFIRMED")
        bob.wait_call_state(b_call, "DISCONNECTED")
        result = run.wait()
    assert result.successful == 1, result
    alice.wait_call_state(a_call, "DISCONNECTED")  # SIPp, the picker, hung up
    [row] = new.wait(1)
    assert picked_up(row) == [("caller", "answered"), ("callee", "cancelled"), ("callee", "picked_up")], row
    assert (row["callee"], row["callee_extension"], row["hangup_by"]) == ("1002", "1003", "callee"), row

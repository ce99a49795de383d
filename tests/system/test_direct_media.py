"""Direct media per phone, as the phones see it: two phones with direct media on are told each
other's own RTP address and hear each other without the relay; held or parked, such a phone is
moved to the relay and hears music there. (With the option on one side only the call stays
anchored: tests/protocol/test_anchoring.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sentral.pbx.features.park import PARK_CODE
from tests.system.audio import write_tone
from tests.system.peers import LOOPBACK, Softphone, wait_until
from tests.system.server import SentralServer
from tests.system.test_call_media import (
    A_TONE,
    B_TONE,
    anchored,
    answered_call,
    assert_hears,
    clinic,
    listen,
    media_address,
    sdps,
    start_media_clinic,
)
from tests.system.test_calls import dial, phone_for, records, talking
from tests.system.test_media import A_TONE as MUSIC_FREE_A
from tests.system.test_media import B_TONE as MUSIC_FREE_B
from tests.system.test_media import LISTEN_SECONDS, assert_music, record, tones
from tests.system.test_park import parked_calls

__all__ = ["anchored", "clinic", "tones"]  # fixtures, used here by name


def test_two_phones_with_direct_media_send_rtp_to_each_other(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    for extension in ("1001", "1002"):
        clinic.cli("direct-media", "on", extension)
    clinic.wait_loaded()  # the server reloads its directory within half a second of a change
    tones = {"a": write_tone(tmp_path / "a.wav", A_TONE), "b": write_tone(tmp_path / "b.wav", B_TONE)}
    alice, a_call, bob, b_call = answered_call(clinic, softphone_factory)
    a_heard, b_heard = listen(alice, a_call, bob, b_call, tones, tmp_path, "direct")
    assert_hears(a_heard, "A", B_TONE, A_TONE)
    assert_hears(b_heard, "B", A_TONE, B_TONE)
    alice.hangup(a_call)
    bob.wait_call_state(b_call, "DISCONNECTED")
    alice.close()
    bob.close()
    # Each phone was told exactly what the other offered or answered for its own media.
    assert {media_address(sdp) for sdp in sdps(alice, "RX")} == {
        media_address(sdp) for sdp in sdps(bob, "TX")
    }
    assert {media_address(sdp) for sdp in sdps(bob, "RX")} == {
        media_address(sdp) for sdp in sdps(alice, "TX")
    }


@pytest.fixture
def direct(tmp_path: Path, sounds: Path) -> Iterator[tuple[SentralServer, tuple[int, int]]]:
    """A clinic with a relay of its own, a park lot (700, slots 701-705), and direct media on for
    1001, 1002 and 1003."""
    server, ports = start_media_clinic(tmp_path, sounds, "--no-answer-timeout", "20")
    try:
        server.reconfigure("park", "add", "main", "--number", "700", "--slots", "701-705")
        for extension in ("1001", "1002", "1003"):
            server.cli("direct-media", "on", extension)
        server.wait_loaded()
        yield server, ports
    finally:
        server.stop()


def assert_moved(phone: Softphone, other: Softphone, ports: tuple[int, int]) -> None:
    """``phone`` was first told ``other``'s own media address (direct media), and last a port of
    the relay."""
    received, sent = sdps(phone, "RX"), sdps(other, "TX")
    assert media_address(received[0]) == media_address(sent[0]), f"{phone.name}'s call was not direct"
    address, port = media_address(received[-1])
    assert address == LOOPBACK and ports[0] <= port <= ports[1], (phone.name, address, port, ports)


def test_a_held_phone_with_direct_media_hears_music_and_the_two_talk_again_after(
    direct: tuple[SentralServer, tuple[int, int]],
    softphone_factory: Callable[..., Softphone],
    tones: dict[str, Path],
    tmp_path: Path,
) -> None:
    clinic, ports = direct
    alice, a_call, bob, b_call = talking(clinic, softphone_factory)
    alice.hold(a_call)
    alice.wait_event("media_state", call=a_call, status="local_hold")
    bob.wait_event("media_state", call=b_call, status="remote_hold")
    # Alice keeps playing her tone while she holds: Bob hears music, not her and not silence.
    alice.play(a_call, tones["a"], loop=True)
    held = record(bob, b_call, tmp_path / "held.wav", LISTEN_SECONDS)
    alice.stop_media(a_call)
    assert_music(held, "Bob on hold", (MUSIC_FREE_A, MUSIC_FREE_B))

    alice.unhold(a_call)
    alice.wait_event("media_state", call=a_call, status="active")
    bob.wait_event("media_state", call=b_call, status="active")
    a_heard, b_heard = listen(alice, a_call, bob, b_call, tones, tmp_path, "resumed")
    assert_hears(a_heard, "Alice after the hold", MUSIC_FREE_B, MUSIC_FREE_A)
    assert_hears(b_heard, "Bob after the hold", MUSIC_FREE_A, MUSIC_FREE_B)
    alice.hangup(a_call)
    bob.wait_call_state(b_call, "DISCONNECTED")
    alice.close()
    bob.close()
    assert_moved(bob, alice, ports)
    assert_moved(alice, bob, ports)


def test_a_parked_phone_with_direct_media_hears_music_and_is_taken_from_its_slot(
    direct: tuple[SentralServer, tuple[int, int]],
    softphone_factory: Callable[..., Softphone],
    tones: dict[str, Path],
    tmp_path: Path,
) -> None:
    clinic, ports = direct
    alice, a_call, bob, b_call = talking(clinic, softphone_factory)
    # RFC 4733 keys go straight to the other phone with direct media: Sentral hears SIP INFO.
    bob.dtmf(b_call, PARK_CODE, method="info")
    bob.wait_call_state(b_call, "DISCONNECTED", timeout=10)
    wait_until(lambda: parked_calls(clinic) != {}, 5, "the parked call to be published", interval=0.2)
    assert list(parked_calls(clinic)) == ["701"]
    assert_music(
        record(alice, a_call, tmp_path / "parked.wav", 2.0), "Alice parked", (MUSIC_FREE_A, MUSIC_FREE_B)
    )

    carol = phone_for(softphone_factory, clinic, "1003")
    c_call = carol.call("1003", dial(clinic, "701"))
    carol.wait_call_state(c_call, "CONFIRMED")
    carol.wait_event("media_state", call=c_call, status="active")
    wait_until(lambda: parked_calls(clinic) == {}, 5, "the slot to be free again", interval=0.2)
    a_heard, c_heard = listen(alice, a_call, carol, c_call, tones, tmp_path, "taken")
    assert_hears(a_heard, "Alice taken by Carol", MUSIC_FREE_B, MUSIC_FREE_A)
    assert_hears(c_heard, "Carol", MUSIC_FREE_A, MUSIC_FREE_B)
    carol.hangup(c_call)
    alice.wait_call_state(a_call, "DISCONNECTED")
    [row] = records(clinic, 1)
    assert [leg["outcome"] for leg in row["legs"]] == ["answered", "parked", "retrieved"]
    alice.close()
    assert_moved(alice, bob, ports)

"""Direct media per phone, as the phones see it: two phones with direct media on are told each
other's own RTP address and hear each other without the relay. (With the option on one side only
the call stays anchored: tests/protocol/test_anchoring.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.system.audio import write_tone
from tests.system.peers import Softphone
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
)

__all__ = ["anchored", "clinic"]  # fixtures, used here by name


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

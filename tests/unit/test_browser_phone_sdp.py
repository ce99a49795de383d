"""The browser phone's own SIP user agent: what it reads from an offer, what it will dial."""

from __future__ import annotations

import pytest

from sentral.media.webrtc import answered_law
from sentral.web.phone import _audio, _dialable, _direction, _loopback_for


def offer(direction: str = "", formats: str = "0 8 101", port: int = 40000) -> bytes:
    lines = [
        "v=0", "o=- 1 1 IN IP4 192.0.2.5", "s=-", "c=IN IP4 192.0.2.5", "t=0 0",
        f"m=audio {port} RTP/AVP {formats}", "a=rtpmap:101 telephone-event/8000",
    ]  # fmt: skip
    if direction:
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("", "sendrecv"), ("sendrecv", "sendrecv"), ("sendonly", "recvonly"), ("recvonly", "sendonly"),
     ("inactive", "inactive")],
)  # fmt: skip
def test_the_answer_takes_the_direction_that_fits_the_offer(offered: str, answered: str) -> None:
    assert _direction(offer(offered)) == answered


def test_the_relay_is_reached_in_the_law_offered_first() -> None:
    assert _audio(offer(formats="8 0")) == ("192.0.2.5", 40000, 8)
    assert _audio(offer(formats="0 8")) == ("192.0.2.5", 40000, 0)
    assert _audio(offer(formats="9 101")) is None  # G.722 and events only: nothing to talk in
    assert _audio(offer(port=0)) is None  # a declined stream


def test_only_what_a_person_types_is_dialled() -> None:
    assert all(_dialable(n) for n in ("1002", "+4791234567", "*31*91234567", "#72", "600"))
    assert not any(_dialable(n) for n in ("", "<sip:1002@x>", "10 02", "1002@elsewhere", "a;b", "9" * 65))


def test_the_user_agent_reaches_a_wildcard_listener_on_loopback() -> None:
    assert _loopback_for("0.0.0.0") == "127.0.0.1"
    assert _loopback_for("::") == "::1"
    assert _loopback_for("192.0.2.7") == "192.0.2.7"
    assert _loopback_for("sip.clinic.test") == "127.0.0.1"


def webrtc_answer(formats: str) -> str:
    """An answer as aiortc writes it to a browser, ICE and DTLS lines included."""
    lines = [
        "v=0", "o=- 4005608075 4005608075 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0",
        "a=msid-semantic:WMS *", f"m=audio 57975 UDP/TLS/RTP/SAVPF {formats}", "c=IN IP4 192.0.2.2",
        "a=sendrecv", "a=mid:0", "a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp-mux", "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        "a=candidate:f957a2332b1715da 1 udp 2130706431 192.0.2.2 57975 typ host", "a=end-of-candidates",
        "a=ice-ufrag:KiYE", "a=ice-pwd:tLtvB8EmsuVx6ynUeWVQCq", "a=fingerprint:sha-256 55:6E:94:C4",
        "a=setup:active",
    ]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(
    ("formats", "law"), [("0 8", 0), ("8 0", 8), ("0", 0), ("96 0 8", None), ("96", None)]
)
def test_the_bridge_hands_on_the_law_the_browser_was_answered_with(formats: str, law: int | None) -> None:
    assert answered_law(webrtc_answer(formats)) == law


def test_an_answer_without_audio_is_answered_with_no_law() -> None:
    assert answered_law("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n") is None

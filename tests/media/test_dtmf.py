"""RFC 4733 telephone-events and SIP INFO DTMF: one digit per key press, whatever the network did."""

from __future__ import annotations

import pytest

from sentral.media.dtmf import (
    Digit,
    DtmfDetector,
    DtmfError,
    TelephoneEvent,
    build_event,
    event_for_key,
    parse_event,
    parse_info,
)
from sentral.pbx.sip.errors import SipError


def press(key: str, timestamp: int, updates: int = 4, *, ends: int = 3) -> list[tuple[int, bytes]]:
    """The packets of one key press as phones send them: a start, updates every 50 ms (400
    ticks), then the end packet ``ends`` times, all with the press's start timestamp."""
    code = event_for_key(key)
    packets = [(timestamp, build_event(TelephoneEvent(code, False, 10, 400 * i))) for i in range(updates)]
    final = 400 * updates
    packets += [(timestamp, build_event(TelephoneEvent(code, True, 10, final)))] * ends
    return packets


def keys(detector: DtmfDetector, packets: list[tuple[int, bytes]]) -> list[str]:
    out = []
    for timestamp, payload in packets:
        digit = detector.feed(timestamp, payload)
        if digit is not None:
            out.append(digit.key)
    return out


def test_payload_round_trip() -> None:
    event = TelephoneEvent(event=11, end=True, volume=10, duration=1280)
    raw = build_event(event)
    assert raw == bytes.fromhex("0b8a0500")
    assert parse_event(raw) == event
    assert event.key == "#"
    assert parse_event(bytes.fromhex("10000000")).key == "!"  # flash
    assert parse_event(bytes.fromhex("40000000")).key is None  # a tone event, not a key


def test_payload_errors() -> None:
    with pytest.raises(DtmfError, match="4 bytes"):
        parse_event(b"\x01\x02")
    with pytest.raises(ValueError, match="volume"):
        build_event(TelephoneEvent(1, False, 64, 0))
    with pytest.raises(ValueError, match="not a DTMF key"):
        event_for_key("x")


def test_a_typed_number_gives_one_digit_per_press() -> None:
    detector = DtmfDetector()
    stream: list[tuple[int, bytes]] = []
    timestamp = 90_000
    for key in "01017012345#":
        stream += press(key, timestamp)
        timestamp += 4000  # half a second apart
    assert "".join(keys(detector, stream)) == "01017012345#"


def test_the_same_key_twice_is_two_presses() -> None:
    detector = DtmfDetector()
    assert keys(detector, press("5", 1000) + press("5", 3000)) == ["5", "5"]


def test_lost_start_and_lost_ends_still_give_the_digit_once() -> None:
    detector = DtmfDetector()
    no_start = press("7", 8000)[1:]
    no_end = press("8", 16000, ends=0)
    only_end = press("9", 24000, updates=0, ends=3)
    assert keys(detector, no_start + no_end + only_end) == ["7", "8", "9"]


def test_late_retransmission_after_the_next_press_is_not_a_new_press() -> None:
    detector = DtmfDetector()
    first = press("3", 1000)
    second = press("4", 2000)
    stream = first[:-1] + second[:2] + first[-1:] + second[2:]
    assert keys(detector, stream) == ["3", "4"]


def test_long_key_press_split_into_segments_is_one_digit() -> None:
    detector = DtmfDetector()
    code = event_for_key("*")
    start = 4_294_960_000  # the second segment's timestamp wraps past 2**32
    first = [(start, build_event(TelephoneEvent(code, False, 10, d))) for d in (400, 30000, 0xFFFF)]
    second_ts = (start + 0xFFFF) % (1 << 32)
    second = [
        (second_ts, build_event(TelephoneEvent(code, e, 10, d))) for e, d in ((False, 400), (True, 800))
    ]
    assert keys(detector, first + second) == ["*"]


def test_reset_forgets_presses_and_garbage_is_ignored() -> None:
    detector = DtmfDetector()
    packets = press("2", 500)
    assert keys(detector, packets) == ["2"]
    assert keys(detector, packets) == []
    detector.reset()
    assert keys(detector, packets) == ["2"]
    assert detector.feed(9, b"\x01") is None
    assert detector.feed(10, build_event(TelephoneEvent(16, True, 0, 800))) is None  # flash


def test_digit_carries_its_start_timestamp() -> None:
    detector = DtmfDetector()
    assert detector.feed(1234, build_event(TelephoneEvent(1, False, 10, 0))) == Digit("1", 1234)


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", Digit("5", None, 160)),
        ("application/dtmf-relay", b"Signal= #\nDuration= 250", Digit("#", None, 250)),
        ("Application/DTMF-Relay; charset=x", b"signal=*\r\n", Digit("*")),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=100\r\n", Digit("#", None, 100)),
        ("application/dtmf-relay", b"Signal=a\r\nDuration=oops\r\n", Digit("A")),
        ("application/dtmf", b"7", Digit("7")),
        ("application/dtmf", b" 0\r\n", Digit("0")),
    ],
)
def test_info_bodies(content_type: str, body: bytes, digit: Digit) -> None:
    assert parse_info(content_type, body) == digit


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/dtmf-relay", b"Duration=160\r\n", 400),
        ("application/dtmf-relay", b"Signal=55\r\n", 400),
        ("application/dtmf-relay", b"Signal=\xff\r\n", 400),
        ("application/dtmf", b"", 400),
        ("application/dtmf", b"!", 400),
        ("text/plain", b"Signal=5", 415),
    ],
)
def test_bad_info_bodies_get_their_sip_status(content_type: str, body: bytes, status: int) -> None:
    with pytest.raises(SipError) as caught:
        parse_info(content_type, body)
    assert caught.value.status == status

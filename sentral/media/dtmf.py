"""DTMF: RFC 4733 telephone-events in RTP, and the SIP INFO bodies some phones send instead.

Theory of operation: a phone sends one key press as a series of RTP packets that all carry the
RTP timestamp of the moment the tone began (RFC 4733 §2.5.1.1): a first packet with the marker
bit, updates every 50 ms or so with a growing duration, and a final packet with the end bit,
usually sent three times because RTP is lossy (§2.5.1.4). The press is therefore named by its
(timestamp, event) pair. ``DtmfDetector`` reports a press the first time it sees a packet of
it, whichever packet that is: the start may be lost, all three end packets may be lost, and the
press is still reported exactly once. A few recent pairs are remembered so that a late
retransmission, arriving after the next press has begun, is not taken for a new one.

A key held longer than the 16-bit duration field allows (about 8 s at 8 kHz) is sent as
segments, each with a new timestamp one full duration later and no end bit before the last
(§2.5.2.3); such a segment continues the press and reports nothing.

SIP INFO carries DTMF out of band in two formats: ``application/dtmf-relay`` (``Signal=5`` and
``Duration=160`` lines) and ``application/dtmf`` (the key alone). ``parse_info`` turns either
into a ``Digit`` and raises the SipError the INFO deserves for anything else (415 for another
content type, 400 for a body that names no key).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from sentral.pbx.sip.errors import SipError

# Event codes 0..16 of RFC 4733 §3.2: digits, star, hash, A..D, flash.
EVENT_KEYS = "0123456789*#ABCD!"
FLASH = 16
MAX_DURATION = 0xFFFF
_PAYLOAD = struct.Struct("!BBH")
_KEY_EVENTS = {key: code for code, key in enumerate(EVENT_KEYS)}
_RECENT = 8  # presses remembered for late retransmissions


class DtmfError(ValueError):
    """A telephone-event payload that cannot be read."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 payload: event code, end bit, volume (dBm0 below 0) and duration."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def key(self) -> str | None:
        """The key this event stands for ("0".."9", "*", "#", "A".."D", "!" for flash)."""
        return EVENT_KEYS[self.event] if self.event < len(EVENT_KEYS) else None


def parse_event(payload: bytes | bytearray | memoryview) -> TelephoneEvent:
    """Read a telephone-event payload; DtmfError if it is shorter than four bytes."""
    if len(payload) < 4:
        raise DtmfError(f"a telephone-event payload is 4 bytes, not {len(payload)}")
    event, flags, duration = _PAYLOAD.unpack_from(payload, 0)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def build_event(event: TelephoneEvent) -> bytes:
    """The four-byte payload of ``event`` (the reserved bit is sent as zero)."""
    if not 0 <= event.event <= 255:
        raise ValueError(f"event code {event.event} is outside 0..255")
    if not 0 <= event.volume <= 63:
        raise ValueError(f"volume {event.volume} is outside 0..63")
    if not 0 <= event.duration <= MAX_DURATION:
        raise ValueError(f"duration {event.duration} is outside 0..65535")
    return _PAYLOAD.pack(event.event, (0x80 if event.end else 0) | event.volume, event.duration)


def event_for_key(key: str) -> int:
    """The RFC 4733 event code of a key; ValueError for anything but 0-9, *, #, A-D."""
    code = _KEY_EVENTS.get(key.upper())
    if code is None or code == FLASH:
        raise ValueError(f"{key!r} is not a DTMF key (0-9, *, #, A-D)")
    return code


@dataclass(frozen=True, slots=True)
class Digit:
    """One key press: the key, and where it started (an RTP timestamp, or None out of band)."""

    key: str
    timestamp: int | None = None
    duration_ms: int | None = None


@dataclass(slots=True)
class _Press:
    timestamp: int
    event: int
    duration: int
    ended: bool


class DtmfDetector:
    """Turns the telephone-event packets of one stream into one ``Digit`` per key press."""

    def __init__(self) -> None:
        self._recent: deque[_Press] = deque(maxlen=_RECENT)

    def reset(self) -> None:
        """Forget every press: a new stream (a new SDP, another SSRC) starts afresh."""
        self._recent.clear()

    def feed(self, timestamp: int, payload: bytes | bytearray | memoryview) -> Digit | None:
        """Account for one telephone-event packet; the Digit if it starts a new key press.

        Payloads that cannot be read, and events that are not keys (flash, tones), give None.
        """
        try:
            event = parse_event(payload)
        except DtmfError:
            return None
        for press in self._recent:
            if press.timestamp == timestamp and press.event == event.event:
                press.duration = max(press.duration, event.duration)
                press.ended = press.ended or event.end
                return None
        last = self._recent[-1] if self._recent else None
        segment = (
            last is not None
            and not last.ended
            and last.event == event.event
            and (timestamp - last.timestamp) % (1 << 32) == MAX_DURATION
        )
        self._recent.append(_Press(timestamp, event.event, event.duration, event.end))
        key = event.key
        if segment or key is None or event.event == FLASH:
            return None
        return Digit(key, timestamp)


# -- SIP INFO ------------------------------------------------------------------------------------

DTMF_RELAY = "application/dtmf-relay"
DTMF = "application/dtmf"
_SIGNAL_ALIASES = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


def _key_of(text: str) -> str:
    value = text.strip()
    value = _SIGNAL_ALIASES.get(value, value).upper()
    if len(value) != 1 or value not in _KEY_EVENTS or value == "!":
        raise SipError(400, "Bad DTMF Signal")
    return value


def parse_info(content_type: str, body: bytes) -> Digit:
    """The key press in a SIP INFO body of type application/dtmf-relay or application/dtmf.

    Raises SipError 415 for another content type and 400 for a body without a valid key.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise SipError(400, "Bad DTMF body") from None
    if kind == DTMF:
        return Digit(_key_of(text))
    if kind != DTMF_RELAY:
        raise SipError(415, "Unsupported Media Type", headers=(("Accept", f"{DTMF_RELAY}, {DTMF}"),))
    key: str | None = None
    duration: int | None = None
    for line in text.splitlines():
        name, eq, value = line.partition("=")
        if not eq:
            continue
        name = name.strip().lower()
        if name == "signal":
            key = _key_of(value)
        elif name == "duration":
            digits = value.strip()
            # A phone that writes a silly duration still pressed the key; keep the key.
            duration = int(digits) if digits.isascii() and digits.isdigit() and len(digits) < 9 else None
    if key is None:
        raise SipError(400, "DTMF body without Signal")
    return Digit(key, None, duration)

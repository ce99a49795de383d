"""A carrier's end of the audio: one UDP socket that records the G.711 it receives and talks back.

SIPp plays the carrier's signalling in the trunk tests, but it cannot record what it hears. Its
scenarios put this peer's address in their SDP instead (``-key rtp_ip``, ``-key rtp_port``), so
the audio Sentral's relay sends to "the carrier" arrives here. The peer keeps every PCMU or PCMA
payload as 16-bit PCM, in arrival order, and writes it out as a WAV that the media tests' tone
checks read. While ``talk`` is on it sends a tone of its own every 20 ms, as PCMU: to the address
it was told (``send_to``: the relay address in the SDP Sentral sent, for early media before any
packet came) or else to where the last packet came from (symmetric RTP, as carriers do).

Keys travel as RFC 4733 telephone-events: the peer notes each event it receives (``digits``), and
``press`` sends one with the payload type the offer the carrier received names for them.
"""

from __future__ import annotations

import contextlib
import math
import random
import socket
import struct
import threading
import time
import wave
from pathlib import Path

from sentral.media import g711
from sentral.media.rtp import RtpError, RtpHeader, build_rtp, parse_rtp
from tests.system.peers import LOOPBACK, free_port

FRAME = 160  # samples in 20 ms at 8 kHz
_EVENT_CODES = "0123456789*#ABCD"  # RFC 4733 §3.2: event codes 0-15


class RtpPeer:
    """A UDP socket on (host, port) that records the G.711 audio it receives and may send a tone."""

    def __init__(self, host: str = LOOPBACK, port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, self.port))
        self._sock.settimeout(0.02)
        self._lock = threading.Lock()
        self._pcm = bytearray()
        self._packets = 0
        self._source: tuple[str, int] | None = None
        self._target: tuple[str, int] | None = None
        self._tone: bytes | None = None
        self._digits: list[str] = []
        self._event_stamps: set[tuple[int, int]] = set()
        # Event packets waiting to go, one per 20 ms: (payload type, payload, marker).
        self._presses: list[tuple[int, bytes, bool]] = []
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"rtp-peer-{self.port}", daemon=True)
        self._thread.start()

    def __enter__(self) -> RtpPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def packets(self) -> int:
        """G.711 packets received so far."""
        with self._lock:
            return self._packets

    @property
    def source(self) -> tuple[str, int] | None:
        """Where the last packet came from."""
        with self._lock:
            return self._source

    @property
    def digits(self) -> list[str]:
        """The keys received as telephone-events, one per event, in order."""
        with self._lock:
            return list(self._digits)

    def press(self, key: str, payload_type: int) -> None:
        """Send ``key`` as a telephone-event (RFC 4733 §2.5: three packets while it is held, three
        final ones with the E bit) with ``payload_type``: the one the offer to the carrier names."""
        code = _EVENT_CODES.index(key)
        # One event, in the peer's own stream (its SSRC and sequence), timestamped at its start.
        packets = [
            (payload_type, struct.pack("!BBH", code, (0x80 if n >= 3 else 0) | 10, FRAME * (min(n, 3) + 1)), n == 0)
            for n in range(6)
        ]
        with self._lock:
            self._presses.extend(packets)

    def send_to(self, host: str, port: int) -> None:
        """Send to this address from now on, rather than to where packets come from."""
        with self._lock:
            self._target = (host, port)

    def talk(self, hz: float) -> None:
        """Send a sine tone of ``hz`` (PCMU, 20 ms packets) until ``silence``."""
        samples = [round(12000 * math.sin(2 * math.pi * hz * n / 8000)) for n in range(FRAME * 50)]
        with self._lock:
            self._tone = g711.encode(struct.pack(f"<{len(samples)}h", *samples), g711.PCMU)

    def silence(self) -> None:
        with self._lock:
            self._tone = None

    def forget(self) -> None:
        """Drop what was recorded so far: the next WAV holds only what comes after this."""
        with self._lock:
            self._pcm.clear()

    def write_wav(self, path: Path) -> Path:
        """What the peer heard, as a 16-bit mono 8 kHz WAV."""
        with self._lock:
            pcm = bytes(self._pcm)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(pcm)
        return path

    def close(self) -> None:
        self._running = False
        self._thread.join(2.0)
        self._sock.close()

    def _run(self) -> None:
        seq = random.randrange(1 << 16)
        ssrc = random.randrange(1 << 32)
        offset = 0
        event_stamp = 0
        next_send = time.monotonic()
        while self._running:
            with contextlib.suppress(TimeoutError, BlockingIOError):
                data, source = self._sock.recvfrom(2048)
                self._keep(data, source)
            now = time.monotonic()
            if now < next_send:
                continue
            next_send = max(next_send + 0.02, now - 0.1)
            with self._lock:
                tone, where = self._tone, self._target or self._source
                press = self._presses.pop(0) if self._presses and where is not None else None
            if press is not None and where is not None:
                payload_type, event, first = press
                if first:
                    event_stamp = (seq * FRAME) & 0xFFFFFFFF
                header = RtpHeader(payload_type, seq, event_stamp, ssrc, marker=first)
                seq = (seq + 1) & 0xFFFF
                with contextlib.suppress(OSError):
                    self._sock.sendto(build_rtp(header, event), where)
                continue
            if tone is None or where is None:
                continue
            payload = tone[offset : offset + FRAME]
            offset = (offset + FRAME) % len(tone)
            packet = build_rtp(RtpHeader(g711.PCMU, seq, (seq * FRAME) & 0xFFFFFFFF, ssrc), payload)
            seq = (seq + 1) & 0xFFFF
            with contextlib.suppress(OSError):  # the far end not there (yet): ICMP refusals
                self._sock.sendto(packet, where)

    def _keep(self, data: bytes, source: tuple[str, int]) -> None:
        try:
            packet = parse_rtp(data)
        except RtpError:
            return  # RTCP or noise
        payload_type = packet.header.payload_type
        if payload_type not in (g711.PCMU, g711.PCMA):
            if payload_type >= 96 and len(packet.payload) >= 4:  # a telephone-event
                key = (payload_type, packet.header.timestamp)
                with self._lock:
                    if key not in self._event_stamps and packet.payload[0] < len(_EVENT_CODES):
                        self._event_stamps.add(key)
                        self._digits.append(_EVENT_CODES[packet.payload[0]])
            return  # comfort noise and events carry no tone
        pcm = g711.decode(packet.payload, packet.header.payload_type)
        with self._lock:
            self._pcm += pcm
            self._packets += 1
            self._source = source

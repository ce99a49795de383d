"""Audio crosses the B2BUA through Sentral's relay: two softphones talk and each hears the other.

Each phone plays its own tone into the call (440 Hz from A, 1000 Hz from B) and records what the
call delivers to it. A recording passes when, in most quarter-second windows, the far end's tone
is loud and clearly stronger than the phone's own tone and than frequencies nobody sends: so
silence fails, an echo of one's own voice fails, and audio that dies after the first moment fails.
"Three times stronger in 60 % of the windows" rather than "in all of them" leaves room for the
first window of a recording and for jitter-buffer adjustments.

Media is anchored: the SDP each phone receives (read from the phone's own SIP log) names
Sentral's relay address and a port of the server's --media-ports range, never the other phone's
port. The phones negotiate G.711, which Sentral's offers list first.

The sounds every server here needs (music on hold, prompts) are built once per test run
(``sounds``) unless $SENTRAL_SOUNDS already holds them, as under `make test`.
"""

from __future__ import annotations

import math
import random
import re
import socket
import struct
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sentral.pbx.sip.sdp import SessionDescription, parse_sdp
from tests.system.audio import write_tone
from tests.system.peers import LOOPBACK, Softphone
from tests.system.server import SentralServer
from tests.system.test_calls import dial, phone_for, records, start_clinic

A_TONE = 440.0
B_TONE = 1000.0
ELSEWHERE = (300.0, 700.0, 1500.0, 2000.0)  # frequencies neither phone sends
LISTEN_SECONDS = 3.0


def media_range(size: int = 40) -> tuple[int, int]:
    """A block of relay ports nothing on the machine holds now, where no other program picks ports
    by itself: below the default relay range (10000-20000, which other servers sweep through),
    the softphones' media ports (20000 and up) and the kernel's ephemeral ports."""
    for _ in range(100):
        first = random.randrange(6000, 9900 - size, 2)
        if all(udp_free(port) for port in range(first, first + size)):
            return first, first + size - 1
    raise AssertionError("no free block of UDP ports for the relay")


def udp_free(port: int) -> bool:
    """True when UDP ``port`` on the loopback address can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def start_media_clinic(
    tmp_path: Path, sounds: Path, *extra: str, size: int = 40
) -> tuple[SentralServer, tuple[int, int]]:
    """A clinic whose relay uses a port block of its own (``size`` ports); the block comes with it."""
    first, last = media_range(size)
    server = start_clinic(
        tmp_path, "--sounds", str(sounds), "--media-ports", f"{first}-{last}", "--drain-timeout", "3", *extra
    )
    return server, (first, last)


@dataclass(frozen=True, slots=True)
class SipSeen:
    """One SIP message in a softphone's log: received ("RX") or sent ("TX")."""

    way: str
    summary: str  # "Request msg INVITE/cseq=1" or "Response msg 200/INVITE/cseq=7"
    text: str

    @property
    def sdp(self) -> SessionDescription | None:
        head, _, body = self.text.partition("\n\n")  # read with universal newlines
        if "application/sdp" not in head.lower() or not body.strip():
            return None
        return parse_sdp("".join(f"{line}\r\n" for line in body.strip().splitlines()).encode())


_LOGGED = re.compile(r"[ .](RX|TX) \d+ bytes ((?:Request|Response) msg \S+) .*?:\n(.*?)\n--end msg--", re.S)


def sip_log(phone: Softphone) -> list[SipSeen]:
    """Every SIP message the phone logged, in order (pjsua2 logs them whole at level 4). The log
    is written in blocks: read it once the phone has quit."""
    assert phone.pj_log_path is not None, "the softphone keeps no log"
    text = phone.pj_log_path.read_text(errors="replace")
    return [SipSeen(way, summary, body) for way, summary, body in _LOGGED.findall(text)]


def sdps(phone: Softphone, way: str) -> list[SessionDescription]:
    """The SDP bodies the phone received ("RX") or sent ("TX")."""
    return [sdp for seen in sip_log(phone) if seen.way == way and (sdp := seen.sdp) is not None]


def media_address(sdp: SessionDescription) -> tuple[str, int]:
    """Where the SDP asks audio to be sent: its first audio stream's address and port."""
    audio = next(m for m in sdp.media if m.media == "audio")
    connection = sdp.media_connection(audio)
    assert connection is not None
    return connection.address, audio.port


def assert_anchored(phone: Softphone, other: Softphone, ports: tuple[int, int]) -> None:
    """Every SDP ``phone`` received names Sentral's relay: the loopback address and a port of the
    relay's range, never a port ``other`` offered for its own media."""
    received = sdps(phone, "RX")
    assert received, f"{phone.name} received no SDP"
    others = {media_address(sdp)[1] for sdp in sdps(other, "TX")}
    for sdp in received:
        address, port = media_address(sdp)
        assert address == LOOPBACK and ports[0] <= port <= ports[1], (phone.name, address, port, ports)
        assert port not in others, f"{phone.name} was told {other.name}'s own port {port}"


@pytest.fixture
def anchored(tmp_path: Path, sounds: Path) -> Iterator[tuple[SentralServer, tuple[int, int]]]:
    server, ports = start_media_clinic(tmp_path, sounds)
    try:
        yield server, ports
    finally:
        server.stop()


@pytest.fixture
def clinic(anchored: tuple[SentralServer, tuple[int, int]]) -> SentralServer:
    return anchored[0]


def amplitude(window: tuple[int, ...], hz: float, rate: int) -> float:
    """The amplitude of one frequency in a window of samples (Goertzel: a single DFT bin)."""
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for sample in window:
        s1, s2 = sample + coeff * s1 - s2, s1
    power = max(s1 * s1 + s2 * s2 - coeff * s1 * s2, 0.0)
    return 2 * math.sqrt(power) / len(window)


def hearing(path: Path, expected: float, others: tuple[float, ...]) -> tuple[float, list[dict[float, int]]]:
    """The share of quarter-second windows in which ``expected`` is loud (amplitude over 1000 of the
    12000 sent) and at least three times any of ``others``; and every window's amplitudes, for the
    failure message."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2), f"{path} is not 16-bit mono"
        rate = wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    size = rate // 4
    windows = [samples[i : i + size] for i in range(0, len(samples) - size + 1, size)]
    assert len(windows) >= 4, f"{path} holds only {len(samples) / rate:.2f}s of audio"
    table = [{hz: amplitude(w, hz, rate) for hz in (expected, *others)} for w in windows]
    good = [row[expected] > 1000 and all(row[expected] >= 3 * row[hz] for hz in others) for row in table]
    return sum(good) / len(good), [{hz: round(a) for hz, a in row.items()} for row in table]


def listen(
    alice: Softphone,
    a_call: str,
    bob: Softphone,
    b_call: str,
    tones: dict[str, Path],
    heard: Path,
    label: str,
) -> tuple[Path, Path]:
    """Both phones play their tone on a loop and record for a few seconds; returns the recordings."""
    a_heard, b_heard = heard / f"{label}-a-heard.wav", heard / f"{label}-b-heard.wav"
    alice.play(a_call, tones["a"], loop=True)
    bob.play(b_call, tones["b"], loop=True)
    alice.record(a_call, a_heard)
    bob.record(b_call, b_heard)
    time.sleep(LISTEN_SECONDS)
    assert alice.stop_media(a_call) == [str(a_heard)]
    assert bob.stop_media(b_call) == [str(b_heard)]
    return a_heard, b_heard


def assert_hears(path: Path, who: str, expected: float, own: float) -> None:
    share, table = hearing(path, expected, (own, *ELSEWHERE))
    assert share >= 0.6, (
        f"{who} heard the other's {expected:g} Hz in only {share:.0%} of the windows: {table}"
    )


def answered_call(
    clinic: SentralServer, factory: Callable[..., Softphone]
) -> tuple[Softphone, str, Softphone, str]:
    alice = phone_for(factory, clinic, "1001")
    bob = phone_for(factory, clinic, "1002")
    a_call = alice.call("1001", dial(clinic, "1002"))
    b_call = bob.wait_incoming("1002")["call"]
    bob.answer(b_call)
    alice.wait_call_state(a_call, "CONFIRMED")
    bob.wait_call_state(b_call, "CONFIRMED")
    alice.wait_event("media_state", call=a_call, status="active")
    bob.wait_event("media_state", call=b_call, status="active")
    return alice, a_call, bob, b_call


def test_each_phone_hears_the_others_tone_through_sentral(
    anchored: tuple[SentralServer, tuple[int, int]],
    clinic: SentralServer,
    softphone_factory: Callable[..., Softphone],
    tmp_path: Path,
) -> None:
    tones = {
        "a": write_tone(tmp_path / "a-440.wav", A_TONE),
        "b": write_tone(tmp_path / "b-1000.wav", B_TONE),
    }
    alice, a_call, bob, b_call = answered_call(clinic, softphone_factory)

    a_heard, b_heard = listen(alice, a_call, bob, b_call, tones, tmp_path, "talk")
    assert_hears(a_heard, "A", B_TONE, A_TONE)
    assert_hears(b_heard, "B", A_TONE, B_TONE)

    alice.hangup(a_call)
    bob.wait_call_state(b_call, "DISCONNECTED")
    [row] = records(clinic, 1)
    assert row["disposition"] == "answered" and row["hangup_by"] == "caller"
    assert row["ended_at_epoch"] - row["answered_at_epoch"] >= LISTEN_SECONDS
    # The phones write their SIP log in blocks: all of it is there once they have quit.
    alice.close()
    bob.close()
    _, ports = anchored
    assert_anchored(alice, bob, ports)
    assert_anchored(bob, alice, ports)


def test_audio_flows_again_after_hold_and_unhold(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    tones = {
        "a": write_tone(tmp_path / "a-440.wav", A_TONE),
        "b": write_tone(tmp_path / "b-1000.wav", B_TONE),
    }
    alice, a_call, bob, b_call = answered_call(clinic, softphone_factory)
    a_heard, b_heard = listen(alice, a_call, bob, b_call, tones, tmp_path, "before")
    assert_hears(a_heard, "A before hold", B_TONE, A_TONE)
    assert_hears(b_heard, "B before hold", A_TONE, B_TONE)

    alice.hold(a_call)
    alice.wait_event("media_state", call=a_call, status="local_hold")
    bob.wait_event("media_state", call=b_call, status="remote_hold")
    # On hold, A's offer is sendonly and B answers recvonly: B sends nothing, so A hears nothing of B.
    a_held, _ = listen(alice, a_call, bob, b_call, tones, tmp_path, "held")
    share, table = hearing(a_held, B_TONE, (A_TONE, *ELSEWHERE))
    assert share == 0, f"A still heard B while holding the call: {table}"

    alice.unhold(a_call)
    alice.wait_event("media_state", call=a_call, status="active")
    bob.wait_event("media_state", call=b_call, status="active")
    a_heard, b_heard = listen(alice, a_call, bob, b_call, tones, tmp_path, "after")
    assert_hears(a_heard, "A after unhold", B_TONE, A_TONE)
    assert_hears(b_heard, "B after unhold", A_TONE, B_TONE)

    bob.hangup(b_call)
    alice.wait_call_state(a_call, "DISCONNECTED")
    [row] = records(clinic, 1)
    assert row["disposition"] == "answered" and row["hangup_by"] == "callee"

"""Audio crosses the B2BUA: two softphones registered to Sentral talk and each hears the other.

Each phone plays its own tone into the call (440 Hz from A, 1000 Hz from B) and records what the
call delivers to it. A recording passes when, in most quarter-second windows, the far end's tone
is loud and clearly stronger than the phone's own tone and than frequencies nobody sends: so
silence fails, an echo of one's own voice fails, and audio that dies after the first moment fails.

The phones negotiate their first codec, Speex wideband, which renders a pure tone with some
warble (a window now and then where the tone dips or other frequencies rise, at the same places
in every run): hence "three times stronger in 60 % of the windows" rather than "in all of them".
"""

from __future__ import annotations

import math
import struct
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.system.audio import write_tone
from tests.system.peers import Softphone
from tests.system.server import SentralServer
from tests.system.test_calls import dial, phone_for, records, start_clinic

A_TONE = 440.0
B_TONE = 1000.0
ELSEWHERE = (300.0, 700.0, 1500.0, 2000.0)  # frequencies neither phone sends
LISTEN_SECONDS = 3.0


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[SentralServer]:
    server = start_clinic(tmp_path, "--drain-timeout", "3")
    try:
        yield server
    finally:
        server.stop()


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
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tmp_path: Path
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

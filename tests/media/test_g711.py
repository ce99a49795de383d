"""G.711 µ-law and A-law against the code points of ITU-T G.711 and its round-trip error bounds."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentral.media import g711


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(data) // 2}h", data)


# (sample, µ-law code): silence, both extremes, and the segment boundaries either side of zero.
ULAW_POINTS = [(0, 0xFF), (-1, 0x7F), (32767, 0x80), (-32768, 0x00), (8031, 0xA0), (-8031, 0x20)]


@pytest.mark.parametrize(("sample", "code"), ULAW_POINTS)
def test_ulaw_code_points(sample: int, code: int) -> None:
    assert g711.ulaw_encode(pcm(sample)) == bytes((code,))


def test_ulaw_decoded_values() -> None:
    assert samples(g711.ulaw_decode(bytes((0xFF, 0x7F, 0x80, 0x00, 0xFE, 0x7E)))) == (
        0,
        0,
        32124,
        -32124,
        8,
        -8,
    )


def test_alaw_code_points() -> None:
    # Silence encodes to 0xD5 (positive) and 0x55 (negative) after the even-bit inversion.
    assert g711.alaw_encode(pcm(0, -1, 32767, -32768)) == bytes((0xD5, 0x55, 0xAA, 0x2A))
    assert samples(g711.alaw_decode(bytes((0xD5, 0x55, 0xAA, 0x2A)))) == (8, -8, 32256, -32256)


def test_every_code_survives_decode_then_encode() -> None:
    # Each code's decoded value lies inside its own step, so it encodes back to the same code;
    # µ-law has two zeros (0xFF, 0x7F), which both decode to 0 and come back as 0xFF.
    codes = bytes(range(256))
    again = g711.ulaw_encode(g711.ulaw_decode(codes))
    assert again == codes.replace(b"\x7f", b"\xff")
    assert g711.alaw_encode(g711.alaw_decode(codes)) == codes


def test_transcoding_tables_agree_with_linear() -> None:
    codes = bytes(range(256))
    assert g711.ulaw_to_alaw(codes) == g711.alaw_encode(g711.ulaw_decode(codes))
    assert g711.alaw_to_ulaw(codes) == g711.ulaw_encode(g711.alaw_decode(codes))


def _half_step(sample: int, law: str) -> int:
    """Half the quantisation step at ``sample``'s magnitude (16-bit scale): the decoder returns
    the middle of each step, so no sample may come back further away than this."""
    if law == "ulaw":
        # Segment s holds biased magnitudes 2**(s+7) .. 2**(s+8) in steps of 2**(s+3).
        segment = (abs(sample) + 132).bit_length() - 8
        return 1 << (segment + 2)
    magnitude = (sample if sample >= 0 else -sample - 1) >> 3
    # 13-bit steps of 2 in segments 0 and 1, then doubling: 16 at the 16-bit scale, doubling.
    segment = 0 if magnitude < 32 else magnitude.bit_length() - 5
    return 8 if segment <= 1 else 1 << (segment + 2)


@given(st.integers(-32768, 32767))
def test_ulaw_round_trip_error_is_within_half_a_step(sample: int) -> None:
    back = samples(g711.ulaw_decode(g711.ulaw_encode(pcm(sample))))[0]
    if abs(sample) <= 32635:
        assert abs(back - sample) <= _half_step(sample, "ulaw")
    else:
        assert back == (32124 if sample > 0 else -32124)  # clipped to the largest code


@given(st.integers(-32768, 32767))
def test_alaw_round_trip_error_is_within_half_a_step(sample: int) -> None:
    back = samples(g711.alaw_decode(g711.alaw_encode(pcm(sample))))[0]
    assert abs(back - sample) <= _half_step(sample, "alaw")


def test_signal_to_noise_of_a_tone() -> None:
    # G.711 gives about 38 dB SNR for a loud sine; anything far below means a broken table.
    tone = [round(16000 * math.sin(2 * math.pi * 1000 * n / 8000 + 0.3)) for n in range(800)]
    for encode, decode in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        back = samples(decode(encode(pcm(*tone))))
        signal = sum(s * s for s in tone)
        noise = sum((s - b) ** 2 for s, b in zip(tone, back, strict=True))
        assert 10 * math.log10(signal / noise) > 33


def test_frames_keep_length_and_refuse_half_samples() -> None:
    frame = pcm(*range(-160, 160, 2))
    assert len(g711.ulaw_encode(frame)) == 160
    assert len(g711.alaw_decode(g711.alaw_encode(frame))) == 320
    with pytest.raises(ValueError, match="whole 16-bit samples"):
        g711.ulaw_encode(b"\x00\x01\x02")


def test_encode_by_payload_type() -> None:
    frame = pcm(100, -100)
    assert g711.encode(frame, 0) == g711.ulaw_encode(frame)
    assert g711.encode(frame, 8) == g711.alaw_encode(frame)
    assert g711.decode(g711.encode(frame, 8), 8) == g711.alaw_decode(g711.alaw_encode(frame))
    with pytest.raises(ValueError, match=r"not G\.711"):
        g711.encode(frame, 9)


@pytest.mark.parametrize("law", [g711.PCMU, g711.PCMA])
def test_the_silence_code_is_what_a_zero_sample_encodes_to(law: int) -> None:
    assert g711.encode(b"\x00\x00", law) == bytes((g711.SILENCE[law],))

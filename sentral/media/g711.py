"""G.711 µ-law (PCMU) and A-law (PCMA): 16-bit linear PCM to 8-bit codes and back (ITU-T G.711).

Theory of operation: both laws are piecewise-linear companders. A sample's magnitude falls in one
of eight segments, each twice as wide as the one before; the code holds the sign, the segment
number (three bits) and four bits of position inside the segment. µ-law works on 14-bit
magnitudes with a bias of 33 (132 at 16-bit scale) so that its segments start at powers of two;
A-law works on 13-bit magnitudes and its first two segments share one step size. Codes are sent
inverted: all bits for µ-law, the even bits (XOR 0x55) for A-law, which keeps line signals busy.

Every 16-bit sample value is mapped once, when a table is first needed, into a 65,536-entry
encoding table; decoding uses a 256-entry table of ready-made two-byte little-endian samples.
Frames are then converted with one table look-up per sample and no arithmetic. PCM is 16-bit
little-endian, as WAV files hold it.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Callable, Sequence
from functools import cache

_UL_BIAS = 0x84  # 33 at the 14-bit scale the standard uses, shifted to the 16-bit scale
_UL_CLIP = 32635  # the largest magnitude whose biased value still fits the top segment


def ulaw_encode_sample(sample: int) -> int:
    """The µ-law code of one 16-bit sample (-32768..32767)."""
    sign = 0x80 if sample < 0 else 0x00
    magnitude = min(-sample if sample < 0 else sample, _UL_CLIP) + _UL_BIAS
    # The segment is the position of the highest set bit above bit 7 (the bias guarantees bit 7).
    segment = magnitude.bit_length() - 8
    mantissa = (magnitude >> (segment + 3)) & 0x0F
    return ~(sign | (segment << 4) | mantissa) & 0xFF


def ulaw_decode_sample(code: int) -> int:
    """The 16-bit sample a µ-law code stands for (the middle of its step)."""
    code = ~code & 0xFF
    segment = (code >> 4) & 0x07
    magnitude = ((((code & 0x0F) << 3) + _UL_BIAS) << segment) - _UL_BIAS
    return -magnitude if code & 0x80 else magnitude


def alaw_encode_sample(sample: int) -> int:
    """The A-law code of one 16-bit sample (-32768..32767)."""
    if sample >= 0:
        sign = 0x80
        magnitude = sample >> 3
    else:
        # One's complement keeps -1..-8 in the smallest step beside 0..7, symmetric about -0.5.
        sign = 0x00
        magnitude = (-sample - 1) >> 3
    if magnitude < 32:
        segment, mantissa = 0, magnitude >> 1
    else:
        segment = magnitude.bit_length() - 5  # 13-bit magnitudes top out in segment 7
        mantissa = (magnitude >> segment) & 0x0F
    return (sign | (segment << 4) | mantissa) ^ 0x55


def alaw_decode_sample(code: int) -> int:
    """The 16-bit sample an A-law code stands for (the middle of its step)."""
    code ^= 0x55
    segment = (code >> 4) & 0x07
    mantissa = code & 0x0F
    # The middle of the step: segment 0 has steps of 2 from 0; segment s steps of 2**s from 2**(s+4).
    magnitude = (mantissa << 1) | 1 if segment == 0 else ((0x10 | mantissa) << segment) | (1 << (segment - 1))
    magnitude <<= 3
    return magnitude if code & 0x80 else -magnitude


# -- tables --------------------------------------------------------------------------------------


def _unsigned_order(encode_one: Callable[[int], int]) -> bytes:
    """Codes for every 16-bit value, indexed by the value read as unsigned (0x8000 is -32768)."""
    return bytes(encode_one(u - 0x10000 if u & 0x8000 else u) for u in range(0x10000))


@cache
def _ulaw_encode_table() -> bytes:
    return _unsigned_order(ulaw_encode_sample)


@cache
def _alaw_encode_table() -> bytes:
    return _unsigned_order(alaw_encode_sample)


@cache
def _ulaw_decode_table() -> tuple[bytes, ...]:
    return tuple(ulaw_decode_sample(c).to_bytes(2, "little", signed=True) for c in range(256))


@cache
def _alaw_decode_table() -> tuple[bytes, ...]:
    return tuple(alaw_decode_sample(c).to_bytes(2, "little", signed=True) for c in range(256))


@cache
def _ulaw_to_alaw() -> bytes:
    return bytes(alaw_encode_sample(ulaw_decode_sample(c)) for c in range(256))


@cache
def _alaw_to_ulaw() -> bytes:
    return bytes(ulaw_encode_sample(alaw_decode_sample(c)) for c in range(256))


def _samples(pcm: bytes | bytearray | memoryview) -> Sequence[int]:
    """The 16-bit little-endian samples of ``pcm`` as unsigned ints, without copying if possible."""
    if len(pcm) % 2:
        raise ValueError(f"PCM of {len(pcm)} bytes does not hold whole 16-bit samples")
    if sys.byteorder == "little":
        return memoryview(pcm).cast("B").cast("H")
    swapped = array.array("H", bytes(pcm))
    swapped.byteswap()
    return swapped


# -- frames --------------------------------------------------------------------------------------


def ulaw_encode(pcm: bytes | bytearray | memoryview) -> bytes:
    """µ-law codes for 16-bit little-endian PCM, one byte per sample."""
    return bytes(map(_ulaw_encode_table().__getitem__, _samples(pcm)))


def alaw_encode(pcm: bytes | bytearray | memoryview) -> bytes:
    """A-law codes for 16-bit little-endian PCM, one byte per sample."""
    return bytes(map(_alaw_encode_table().__getitem__, _samples(pcm)))


def ulaw_decode(codes: bytes | bytearray | memoryview) -> bytes:
    """16-bit little-endian PCM for µ-law codes."""
    return b"".join(map(_ulaw_decode_table().__getitem__, bytes(codes)))


def alaw_decode(codes: bytes | bytearray | memoryview) -> bytes:
    """16-bit little-endian PCM for A-law codes."""
    return b"".join(map(_alaw_decode_table().__getitem__, bytes(codes)))


def ulaw_to_alaw(codes: bytes | bytearray | memoryview) -> bytes:
    """A-law codes for µ-law codes, sample by sample (G.711 §3 tables, through linear)."""
    return bytes(codes).translate(_ulaw_to_alaw())


def alaw_to_ulaw(codes: bytes | bytearray | memoryview) -> bytes:
    """µ-law codes for A-law codes, sample by sample."""
    return bytes(codes).translate(_alaw_to_ulaw())


PCMU = 0  # static RTP payload types (RFC 3551 §6)
PCMA = 8
SILENCE = {PCMU: 0xFF, PCMA: 0xD5}  # the code for a zero sample in each law, by payload type


def encode(pcm: bytes | bytearray | memoryview, payload_type: int) -> bytes:
    """G.711 codes for ``pcm`` in the law of RTP payload type 0 (PCMU) or 8 (PCMA)."""
    if payload_type == PCMU:
        return ulaw_encode(pcm)
    if payload_type == PCMA:
        return alaw_encode(pcm)
    raise ValueError(f"payload type {payload_type} is not G.711 (PCMU is 0, PCMA is 8)")


def decode(codes: bytes | bytearray | memoryview, payload_type: int) -> bytes:
    """16-bit PCM for G.711 codes of RTP payload type 0 (PCMU) or 8 (PCMA)."""
    if payload_type == PCMU:
        return ulaw_decode(codes)
    if payload_type == PCMA:
        return alaw_decode(codes)
    raise ValueError(f"payload type {payload_type} is not G.711 (PCMU is 0, PCMA is 8)")

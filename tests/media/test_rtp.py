"""RTP header parsing and building (RFC 3550 §5.1), RTCP recognition (RFC 5761 §4), sequence wrap."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentral.media.rtp import (
    RtpError,
    RtpHeader,
    build_rtp,
    is_rtcp,
    parse_rtp,
    rtcp_sender_ssrc,
    seq_add,
    seq_diff,
    seq_newer,
)

# A PCMU packet as a desk phone sends it: V=2, marker, PT 0, seq 0x1234, ts 0xdeadbeef, SSRC 0x01020304.
PHONE_PACKET = bytes.fromhex("80801234deadbeef01020304") + b"\xff" * 160
# An RTCP sender report header (PT 200) with sender SSRC 0x0a0b0c0d.
SENDER_REPORT = bytes.fromhex("80c80006 0a0b0c0d".replace(" ", "")) + bytes(20)


def test_parse_phone_packet() -> None:
    packet = parse_rtp(PHONE_PACKET)
    assert packet.header == RtpHeader(
        payload_type=0, sequence=0x1234, timestamp=0xDEADBEEF, ssrc=0x01020304, marker=True
    )
    assert packet.payload == b"\xff" * 160


def test_csrc_extension_and_padding() -> None:
    raw = (
        bytes.fromhex("b2 08 0001 00000010 00000099".replace(" ", ""))  # P, X, CC=2, PT 8
        + bytes.fromhex("0000000a0000000b")  # two CSRCs
        + bytes.fromhex("bede0001")  # RFC 8285 one-byte extension profile, one word
        + b"\x10\xaa\x00\x00"
        + b"abc"
        + b"\x00\x00\x03"  # three octets of padding, the last counting them
    )
    packet = parse_rtp(raw)
    assert packet.header.csrcs == (10, 11)
    assert packet.header.extension == (0xBEDE, b"\x10\xaa\x00\x00")
    assert packet.header.padding
    assert packet.payload == b"abc"
    assert packet.header.size == 12 + 8 + 8


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x80\x00", "shorter"),
        (bytes.fromhex("400012340000000000000001"), "version 1"),
        (bytes.fromhex("820012340000000000000001"), "CSRC"),
        (bytes.fromhex("900012340000000000000001bede0004"), "extension"),
        (bytes.fromhex("a00012340000000000000001") + b"ab\x09", "padding"),
        (bytes.fromhex("a00012340000000000000001"), "padding"),
    ],
)
def test_malformed_packets_are_refused(raw: bytes, why: str) -> None:
    with pytest.raises(RtpError, match=why):
        parse_rtp(raw)


def test_build_matches_phone_packet() -> None:
    header = RtpHeader(payload_type=0, sequence=0x1234, timestamp=0xDEADBEEF, ssrc=0x01020304, marker=True)
    assert build_rtp(header, b"\xff" * 160) == PHONE_PACKET


def test_build_pads_to_a_multiple() -> None:
    raw = build_rtp(RtpHeader(payload_type=96, sequence=1, timestamp=2, ssrc=3), b"abcde", pad_to=4)
    assert len(raw) == 12 + 8
    assert raw[0] & 0x20
    assert parse_rtp(raw).payload == b"abcde"


def test_build_refuses_impossible_fields() -> None:
    with pytest.raises(ValueError, match="payload type"):
        build_rtp(RtpHeader(payload_type=128, sequence=0, timestamp=0, ssrc=0), b"")
    with pytest.raises(ValueError, match="32-bit words"):
        build_rtp(RtpHeader(payload_type=0, sequence=0, timestamp=0, ssrc=0, extension=(1, b"abc")), b"")


headers = st.builds(
    RtpHeader,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))),
)


@given(headers, st.binary(max_size=300), st.sampled_from([0, 4, 16]))
def test_round_trip(header: RtpHeader, payload: bytes, pad_to: int) -> None:
    packet = parse_rtp(build_rtp(header, payload, pad_to=pad_to))
    assert packet.payload == payload
    got = packet.header
    assert (got.payload_type, got.sequence, got.timestamp, got.ssrc, got.marker) == (
        header.payload_type,
        header.sequence,
        header.timestamp,
        header.ssrc,
        header.marker,
    )
    assert got.csrcs == header.csrcs
    assert got.extension == header.extension
    assert got.padding == (pad_to > 1)


@given(st.binary(max_size=80))
def test_parse_raises_only_rtp_error(data: bytes) -> None:
    with contextlib.suppress(RtpError):
        parse_rtp(data)


def test_rtcp_is_told_from_rtp() -> None:
    assert is_rtcp(SENDER_REPORT)
    assert rtcp_sender_ssrc(SENDER_REPORT) == 0x0A0B0C0D
    assert not is_rtcp(PHONE_PACKET)
    assert rtcp_sender_ssrc(PHONE_PACKET) is None
    # PT 72 with the marker bit set is what RTCP's 200 reads as; PT 96+ is dynamic RTP.
    assert not is_rtcp(bytes.fromhex("80e0000100000000"))
    assert not is_rtcp(b"\x80\xc8")


def test_sequence_wraps() -> None:
    assert seq_diff(2, 65535) == 3
    assert seq_diff(65535, 2) == -3
    assert seq_newer(0, 65535)
    assert not seq_newer(65535, 0)
    assert seq_add(65535, 1) == 0
    assert seq_diff(32768, 0) == -32768


@given(st.integers(0, 0xFFFF), st.integers(-32768, 32767))
def test_seq_diff_inverts_seq_add(start: int, step: int) -> None:
    later = seq_add(start, step)
    assert seq_diff(later, start) == step
    assert seq_newer(later, start) == (step > 0)

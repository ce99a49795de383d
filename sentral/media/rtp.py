"""RTP and RTCP packets (RFC 3550): the header, recognising RTCP, and sequence arithmetic.

Theory of operation: the relay forwards packets without looking inside them; it reads a header
only when it has to decide something (a packet from an unknown address, a DTMF event, the last
sequence number of a stream). So parsing is a function of bytes to a frozen ``RtpHeader`` plus
the offset where the payload starts, and building is the reverse; neither keeps state.

RTP and RTCP can share one port (RFC 5761). They are told apart by the second octet: RTCP packet
types 192..223 put 64..95 in the low seven bits, where RTP would carry its payload type; RFC 5761
§4 reserves that range for this reason.

Sequence numbers are 16 bits and wrap. ``seq_diff`` gives the signed distance in the shorter
direction around the circle (RFC 1982 serial arithmetic), so 2 follows 65535 by 3, and
``seq_newer`` says whether one number comes after another.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 2
HEADER_SIZE = 12
SEQ_MOD = 1 << 16
TIMESTAMP_MOD = 1 << 32

# The fixed part of every RTP header: V/P/X/CC, M/PT, sequence, timestamp, SSRC. Public so that
# the relay's hot path can read fields in place with ``unpack_from`` and build nothing.
FIXED_HEADER = struct.Struct("!BBHII")
_CSRC = struct.Struct("!I")
_EXTENSION = struct.Struct("!HH")
_RTCP_FIRST = struct.Struct("!BBHI")  # V/P/RC, packet type, length, sender SSRC


class RtpError(ValueError):
    """Bytes that are not a well-formed RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fields of an RTP header (RFC 3550 §5.1); ``extension`` is (profile, data) if present."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool = False
    padding: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    version: int = VERSION

    @property
    def size(self) -> int:
        """The header's length on the wire, CSRC list and extension included."""
        size = HEADER_SIZE + 4 * len(self.csrcs)
        if self.extension is not None:
            size += 4 + len(self.extension[1])
        return size


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """A parsed RTP packet: the header and the payload, padding removed."""

    header: RtpHeader
    payload: bytes


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse one RTP packet; RtpError if it is not RTP version 2 or its lengths do not add up."""
    view = memoryview(data)
    if len(view) < HEADER_SIZE:
        raise RtpError(f"RTP packet of {len(view)} bytes is shorter than the 12-byte header")
    first, second, sequence, timestamp, ssrc = FIXED_HEADER.unpack_from(view, 0)
    version = first >> 6
    if version != VERSION:
        raise RtpError(f"RTP version {version}, expected {VERSION}")
    padding = bool(first & 0x20)
    has_extension = bool(first & 0x10)
    csrc_count = first & 0x0F
    offset = HEADER_SIZE
    if len(view) < offset + 4 * csrc_count:
        raise RtpError("RTP packet ends inside its CSRC list")
    csrcs = tuple(_CSRC.unpack_from(view, offset + 4 * i)[0] for i in range(csrc_count))
    offset += 4 * csrc_count
    extension: tuple[int, bytes] | None = None
    if has_extension:
        if len(view) < offset + 4:
            raise RtpError("RTP packet ends inside its header extension")
        profile, words = _EXTENSION.unpack_from(view, offset)
        offset += 4
        if len(view) < offset + 4 * words:
            raise RtpError("RTP header extension is longer than the packet")
        extension = (profile, bytes(view[offset : offset + 4 * words]))
        offset += 4 * words
    end = len(view)
    if padding:
        # RFC 3550 §5.1: the last octet counts the padding octets, itself included.
        if end == offset:
            raise RtpError("RTP padding flag set on a packet without payload")
        pad = view[end - 1]
        if pad == 0 or pad > end - offset:
            raise RtpError("RTP padding count is larger than the payload")
        end -= pad
    header = RtpHeader(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        marker=bool(second & 0x80),
        padding=padding,
        csrcs=csrcs,
        extension=extension,
        version=version,
    )
    return RtpPacket(header, bytes(view[offset:end]))


def build_rtp(header: RtpHeader, payload: bytes, *, pad_to: int = 0) -> bytes:
    """The wire form of ``header`` and ``payload``.

    With ``pad_to`` > 1 the payload is padded to a multiple of it (RFC 3550 §5.1) and the padding
    bit is set; otherwise the header's own padding flag is ignored, as there is nothing to pad.
    """
    if not 0 <= header.payload_type <= 127:
        raise ValueError(f"payload type {header.payload_type} is outside 0..127")
    if len(header.csrcs) > 15:
        raise ValueError("an RTP header holds at most 15 CSRCs")
    pad = 0
    if pad_to > 1:
        pad = pad_to - len(payload) % pad_to or pad_to
    first = (VERSION << 6) | (0x20 if pad else 0) | (0x10 if header.extension else 0) | len(header.csrcs)
    second = (0x80 if header.marker else 0) | header.payload_type
    parts = [
        FIXED_HEADER.pack(
            first, second, header.sequence % SEQ_MOD, header.timestamp % TIMESTAMP_MOD, header.ssrc
        )
    ]
    parts.extend(_CSRC.pack(csrc) for csrc in header.csrcs)
    if header.extension is not None:
        profile, data = header.extension
        if len(data) % 4:
            raise ValueError("an RTP header extension is a whole number of 32-bit words")
        parts.append(_EXTENSION.pack(profile, len(data) // 4))
        parts.append(data)
    parts.append(payload)
    if pad:
        parts.append(bytes(pad - 1) + bytes((pad,)))
    return b"".join(parts)


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` looks like RTCP rather than RTP: version 2 and a packet type 192..223."""
    return len(data) >= 8 and data[0] >> 6 == VERSION and 64 <= (data[1] & 0x7F) <= 95


def rtcp_sender_ssrc(data: bytes | bytearray | memoryview) -> int | None:
    """The SSRC of the sender of an RTCP compound packet (its first packet's), or None."""
    if not is_rtcp(data):
        return None
    ssrc: int = _RTCP_FIRST.unpack_from(data, 0)[3]
    return ssrc


def seq_diff(a: int, b: int) -> int:
    """How far ``a`` is after ``b`` in 16-bit sequence space: -32768..32767."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


def seq_newer(a: int, b: int) -> bool:
    """True if sequence number ``a`` comes after ``b`` (less than half the space ahead)."""
    return seq_diff(a, b) > 0


def seq_add(a: int, n: int) -> int:
    """``a`` advanced by ``n`` packets, wrapped to 16 bits."""
    return (a + n) % SEQ_MOD


def timestamp_add(a: int, n: int) -> int:
    """RTP timestamp ``a`` advanced by ``n`` clock ticks, wrapped to 32 bits."""
    return (a + n) % TIMESTAMP_MOD

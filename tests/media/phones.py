"""Fake phones for relay tests: real UDP sockets on loopback that send and collect RTP."""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct

from sentral.media.rtp import RtpHeader, build_rtp

Address = tuple[str, int]


class Phone:
    """One UDP socket that sends RTP (or RTCP) like a phone and keeps what it receives."""

    rtcp_phone: Phone  # a second socket standing for the phone's RTCP port, where a test needs one

    def __init__(self, host: str = "127.0.0.1", *, ssrc: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.seq = secrets.randbelow(1000)
        self.timestamp = 0
        self.received: list[tuple[bytes, Address]] = []

    @property
    def address(self) -> Address:
        host, port = self.sock.getsockname()
        return host, port

    def rtp(
        self, payload: bytes = b"\xff" * 160, *, payload_type: int = 0, timestamp: int | None = None
    ) -> bytes:
        """The next packet of this phone's stream."""
        header = RtpHeader(
            payload_type=payload_type,
            sequence=self.seq,
            timestamp=self.timestamp if timestamp is None else timestamp,
            ssrc=self.ssrc,
        )
        self.seq = (self.seq + 1) % 65536
        self.timestamp = (self.timestamp + 160) % (1 << 32)
        return build_rtp(header, payload)

    def rtcp(self) -> bytes:
        """An RTCP receiver report with this phone's SSRC (no report blocks)."""
        return struct.pack("!BBHI", 0x80, 201, 1, self.ssrc)

    def send(self, to: Address, data: bytes) -> None:
        self.sock.sendto(data, to)

    def send_audio(self, to: Address, count: int = 1, payload: bytes = b"\xff" * 160) -> list[bytes]:
        sent = [self.rtp(payload) for _ in range(count)]
        for packet in sent:
            self.send(to, packet)
        return sent

    def collect(self) -> list[tuple[bytes, Address]]:
        """Read what has arrived so far into ``received``; return the new packets."""
        new: list[tuple[bytes, Address]] = []
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except BlockingIOError:
                break
            new.append((data, (addr[0], addr[1])))
        self.received.extend(new)
        return new

    async def expect(self, count: int, timeout: float = 2.0) -> list[tuple[bytes, Address]]:
        """Wait until ``count`` more packets have arrived (or the timeout); return them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        got: list[tuple[bytes, Address]] = []
        while len(got) < count and loop.time() < deadline:
            await asyncio.sleep(0.005)
            got.extend(self.collect())
        return got

    async def quiet(self, seconds: float = 0.1) -> list[tuple[bytes, Address]]:
        """Let the loop run for ``seconds``; return whatever arrived meanwhile."""
        await asyncio.sleep(seconds)
        return self.collect()

    def close(self) -> None:
        self.sock.close()

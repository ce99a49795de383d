"""Playing audio into a call: G.711 audio cut into 20 ms RTP packets, sent on the loop's clock.

Theory of operation: ``Player`` is the pure part. It holds G.711 codes (one byte per sample at
8 kHz) and a schedule anchored at a start time: packet *k* is due at ``start + k * 0.02`` and
carries timestamp ``t0 + 160 * k``. Because every due time is computed from the start and not
from the previous send, late wake-ups never accumulate into drift. SSRC, first sequence number
and first timestamp are random (RFC 3550 §5.1, so that a known plaintext start is avoided and a
receiver sees a new source); the first packet has the marker bit, which RFC 3551 §4.1 asks for
at the start of a talk spurt. Music loops without a seam: the audio is read cyclically, so a file
whose length is not a whole number of packets still wraps in the middle of a packet.

If the loop stalls for longer than ``max_late`` (a burst of packets sent all at once would only
overflow the phone's jitter buffer), the overdue packets are skipped: their timestamps are
jumped over, as if the source had paused, the sequence numbers run on without a gap (nothing was
lost), and the next packet carries the marker bit again.

``Playback`` is the IO part: it asks the player what is due whenever the loop's timer fires,
hands each packet to a send function, and re-arms the timer for the next due time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from sentral.media.g711 import SILENCE
from sentral.media.rtp import FIXED_HEADER, VERSION, seq_add, timestamp_add

PTIME = 0.02
SAMPLES_PER_PACKET = 160  # 20 ms at 8 kHz, one byte per sample in G.711


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One RTP packet and the loop time it is due at."""

    due: float
    packet: bytes


class Player:
    """G.711 audio as a schedule of 20 ms RTP packets (pure: the caller supplies ``now``)."""

    def __init__(
        self,
        audio: bytes,
        payload_type: int,
        *,
        loop: bool = False,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        max_late: float = 0.2,
    ) -> None:
        if payload_type not in SILENCE:
            raise ValueError(f"payload type {payload_type} is not G.711 (PCMU is 0, PCMA is 8)")
        if loop and not audio:
            raise ValueError("cannot loop empty audio")
        self._audio = audio
        self.payload_type = payload_type
        self.loop = loop
        self.max_late = max_late
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence = secrets.randbits(16) if sequence is None else sequence  # of the first packet
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp  # of the first packet
        self._packets = math.inf if loop else math.ceil(len(audio) / SAMPLES_PER_PACKET)
        self._start: float | None = None
        self._index = 0  # the grid slot of the next packet
        self._sent = 0  # packets produced, which numbers them
        self._marker = True

    def begin(self, now: float) -> None:
        """Anchor the schedule: the first packet is due at ``now``."""
        self._start = now

    @property
    def started(self) -> bool:
        """True once ``begin`` has anchored the schedule."""
        return self._start is not None

    @property
    def finished(self) -> bool:
        """True when every packet of non-looping audio has been produced."""
        return self._index >= self._packets

    @property
    def next_due(self) -> float:
        """When the next packet is due (infinity when finished or not begun)."""
        if self._start is None or self.finished:
            return math.inf
        return self._start + self._index * PTIME

    @property
    def sent(self) -> int:
        """How many packets have been produced."""
        return self._sent

    def due(self, now: float) -> list[Scheduled]:
        """Every packet due at or before ``now``, in order; overdue ones beyond ``max_late`` skipped."""
        start = self._start
        if start is None:
            raise RuntimeError("Player.begin() must anchor the schedule first")
        out: list[Scheduled] = []
        while not self.finished:
            due = start + self._index * PTIME
            if due > now + 1e-9:
                break
            if now - due > self.max_late:
                # Resume on the slot that is due now; the skipped slots' audio is not played.
                behind = int((now - due) / PTIME)
                self._index = int(min(self._index + behind, self._packets))
                self._marker = True
                continue
            out.append(Scheduled(due, self._packet()))
        return out

    def _payload(self, index: int) -> bytes:
        audio = self._audio
        size = len(audio)
        offset = index * SAMPLES_PER_PACKET
        if self.loop:
            offset %= size
            chunk = audio[offset : offset + SAMPLES_PER_PACKET]
            while len(chunk) < SAMPLES_PER_PACKET:
                chunk += audio[: SAMPLES_PER_PACKET - len(chunk)]
            return chunk
        chunk = audio[offset : offset + SAMPLES_PER_PACKET]
        if len(chunk) < SAMPLES_PER_PACKET:
            chunk += bytes((SILENCE[self.payload_type],)) * (SAMPLES_PER_PACKET - len(chunk))
        return chunk

    def _packet(self) -> bytes:
        index = self._index
        header = FIXED_HEADER.pack(
            VERSION << 6,
            (0x80 if self._marker else 0) | self.payload_type,
            seq_add(self.sequence, self._sent),
            timestamp_add(self.timestamp, index * SAMPLES_PER_PACKET),
            self.ssrc,
        )
        self._marker = False
        self._index = index + 1
        self._sent += 1
        return header + self._payload(index)


class Playback:
    """Sends a ``Player``'s packets through ``send`` when they fall due on the event loop's clock."""

    def __init__(
        self,
        player: Player,
        send: Callable[[bytes], object],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        on_done: Callable[[], object] | None = None,
    ) -> None:
        self.player = player
        self.send = send
        self._loop = loop
        self._on_done = on_done
        self._handle: asyncio.TimerHandle | None = None

    @property
    def playing(self) -> bool:
        """True from ``start`` until the audio ends or ``stop`` is called."""
        return self._handle is not None

    def start(self) -> None:
        """Begin sending now (the first packet goes out at once)."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        if not self.player.started:
            self.player.begin(loop.time())
        self._tick()

    def stop(self) -> None:
        """Stop sending; nothing more goes out, ``on_done`` is not called."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        player = self.player
        send = self.send
        for item in player.due(loop.time()):
            send(item.packet)
        if player.finished:
            self._handle = None
            if self._on_done is not None:
                self._on_done()
            return
        self._handle = loop.call_at(player.next_due, self._tick)


async def play_to(player: Player, sock: socket.socket, address: tuple[str, int]) -> int:
    """Play ``player`` (which must not loop) from ``sock`` to ``address``; the packets sent."""
    if player.loop:
        raise ValueError("play_to would never end with a looping player")
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def send(packet: bytes) -> None:
        # A full send buffer loses one packet of audio, as the network might.
        with contextlib.suppress(BlockingIOError, InterruptedError):
            sock.sendto(packet, address)

    def finished() -> None:
        if not done.done():
            done.set_result(None)

    playback = Playback(player, send, loop=loop, on_done=finished)
    playback.start()
    try:
        await done
    finally:
        playback.stop()
    return player.sent

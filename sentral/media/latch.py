"""Relay ports and symmetric-RTP latching: the decisions of the media relay, without sockets.

Theory of operation. ``PortPool`` hands out RTP ports from a range: always even, with the odd
port above kept for RTCP (RFC 3550 §11). Free ports are used round-robin, so a port released at
the end of one call is the last to be handed out again, and stray packets of the old call rarely
reach a new one.

``Latch`` decides which source address a phone's media is accepted from and where media for that
phone is sent. It starts from the address in the phone's SDP. A phone behind NAT sends from an
address it cannot know, so the relay learns: in the learning state every packet is accepted and
its source becomes the destination, until five packets have come or two seconds have passed
since the first one; a packet from the very address the SDP named ends learning at once (the
phone is where it said it is). Once latched, packets from any other source are dropped: that
is the protection against "RTP bleed", where a stranger spraying relay ports would otherwise
take over a call's audio.

NAT bindings do change mid-call (a router reboots, a mobile phone moves). A stranger is therefore
followed when its packet carries the latched stream's SSRC and a sequence number just ahead of
the last one seen (within ``max_rebind_gap``): only someone who sees the stream could guess both.
RTCP has no sequence numbers; an RTCP stranger is followed when its sender SSRC is the one the
latched RTCP source used. A new SDP from the phone (a re-INVITE) reopens learning.

The relay's hot path does not call into this module for packets from the latched source: it
compares the packet's address with ``Latch.source`` (None while learning, so every packet is
brought here) and tells the latch the last SSRC and sequence number it forwarded with ``note``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sentral.media.rtp import seq_diff

# (host, port) for IPv4; for IPv6 the socket module's (host, port, flowinfo, scope_id), kept as
# received so that the relay can compare a packet's address with the latched one as it comes.
Address = tuple[Any, ...]

DEFAULT_PORTS = (10000, 20000)


class PortsExhausted(Exception):
    """Every RTP port of the pool is in use."""


class PortPool:
    """Even RTP ports (RTCP on the odd port above) from ``first`` to ``last`` inclusive."""

    def __init__(self, first: int = DEFAULT_PORTS[0], last: int = DEFAULT_PORTS[1]) -> None:
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"RTP port range {first}-{last} is not within 1-65535 with first <= last")
        start = first + (first % 2)
        if start + 1 > last:
            raise ValueError(f"RTP port range {first}-{last} holds no even/odd port pair")
        self.first = first
        self.last = last
        self._free: deque[int] = deque(range(start, last, 2))
        self._in_use: set[int] = set()
        self._resting: set[int] = set()

    @property
    def capacity(self) -> int:
        """How many port pairs the range holds."""
        return len(self._free) + len(self._in_use) + len(self._resting)

    @property
    def in_use(self) -> int:
        """How many port pairs are handed out."""
        return len(self._in_use)

    @property
    def available(self) -> int:
        """How many port pairs are free."""
        return len(self._free)

    @property
    def resting(self) -> int:
        """How many port pairs are kept open between calls (see ``rest``)."""
        return len(self._resting)

    def allocate(self) -> int:
        """An even RTP port; PortsExhausted when none is free."""
        if not self._free:
            raise PortsExhausted(
                f"all {self.capacity} RTP port pairs in {self.first}-{self.last} are in use; "
                "widen the RTP port range or wait for calls to end"
            )
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Give ``port`` back, in use or resting; it goes to the end of the queue."""
        if port in self._in_use:
            self._in_use.discard(port)
        elif port in self._resting:
            self._resting.discard(port)
        else:
            raise ValueError(f"RTP port {port} was not handed out by this pool")
        self._free.append(port)

    def rest(self, port: int) -> None:
        """``port``'s call is over but its owner keeps it (bound, for a later call): neither in use
        nor free until ``wake`` or ``release``."""
        if port not in self._in_use:
            raise ValueError(f"RTP port {port} is not in use")
        self._in_use.discard(port)
        self._resting.add(port)

    def wake(self, port: int) -> None:
        """A resting ``port`` serves a call again."""
        if port not in self._resting:
            raise ValueError(f"RTP port {port} is not resting")
        self._resting.discard(port)
        self._in_use.add(port)


class LatchState(Enum):
    """Whether a latch still learns the phone's source address."""

    LEARNING = "learning"
    LATCHED = "latched"


@dataclass(frozen=True, slots=True)
class LatchPolicy:
    """How long a latch learns, and how far a rebinding stream may have moved on."""

    window: float = 2.0  # seconds after the first packet
    packets: int = 5
    max_rebind_gap: int = 256  # about five seconds of 20 ms packets


DEFAULT_POLICY = LatchPolicy()


class Latch:
    """Where one phone's media comes from and goes to (one per RTP or RTCP port)."""

    def __init__(self, expected: Address | None = None, policy: LatchPolicy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self.expected: Address | None = None
        self.destination: Address | None = None
        self.source: Address | None = None
        self.state = LatchState.LEARNING
        self.ssrc: int | None = None
        self.last_seq: int | None = None
        self.rebinds = 0
        self._first_at: float | None = None
        self._learned = 0
        self.reset(expected)

    def reset(self, expected: Address | None) -> None:
        """A new SDP named ``expected``: send there, and learn the real source again.

        If the SDP names the same address as before, what was learned stays the destination:
        a held phone behind NAT may send no RTP at all, and must still hear the music.
        """
        if expected is None or expected != self.expected or self.destination is None:
            self.destination = expected
        self.expected = expected
        self.source = None
        self.state = LatchState.LEARNING
        self._first_at = None
        self._learned = 0

    def note(self, ssrc: int, seq: int | None) -> None:
        """The SSRC and sequence number of the last packet forwarded from the latched source."""
        self.ssrc = ssrc
        self.last_seq = seq

    def admit(self, source: Address, ssrc: int | None, seq: int | None, now: float) -> bool:
        """Whether a packet from ``source`` is accepted; learning and following happen here.

        ``ssrc`` and ``seq`` come from the packet (``seq`` is None for RTCP, ``ssrc`` None if the
        packet is too short to carry one).
        """
        if self.state is LatchState.LEARNING:
            if self._first_at is None:
                self._first_at = now
            if now - self._first_at <= self.policy.window:
                self._learn(source, ssrc, seq)
                return True
            # The window closed while the phone was quiet: what was learned stands.
            self._close()
        if source == self.source:
            return True
        if ssrc is None or ssrc != self.ssrc:
            return False
        if seq is not None:
            last = self.last_seq
            if last is None or not 0 < seq_diff(seq, last) <= self.policy.max_rebind_gap:
                return False
        # The same stream from a new address: the phone's NAT binding moved.
        self.source = self.destination = source
        self.last_seq = seq
        self.rebinds += 1
        return True

    def _learn(self, source: Address, ssrc: int | None, seq: int | None) -> None:
        self.destination = source
        if ssrc is not None:
            self.ssrc = ssrc
            self.last_seq = seq
        self._learned += 1
        expected = self.expected
        if (expected is not None and source[:2] == expected[:2]) or self._learned >= self.policy.packets:
            self._close()

    def _close(self) -> None:
        self.state = LatchState.LATCHED
        # Nothing learned (cannot happen once a packet came, kept for safety): the SDP address.
        self.source = self.destination

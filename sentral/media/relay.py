"""The RTP relay: sockets Sentral owns between two phones, forwarding RTP and RTCP both ways.

Theory of operation. An ``Endpoint`` is one phone's side of a call: an even local port for RTP
and the odd one above it for RTCP, both taken from a ``PortPool``, and a ``Latch`` per port that
knows where the phone's media really comes from. Two endpoints are paired: a packet the phone
of endpoint A sends to A's port leaves through the same kind of port of endpoint B towards B's
phone. Each phone therefore sends to and receives from one address, the one in the SDP it was
given (symmetric RTP), which is what lets phones behind NAT work and what latching relies on.

The hot path is ``_Channel.on_readable``, called by the event loop when a socket is readable. It
drains the socket with ``recvfrom_into`` into one buffer shared by the whole relay (the loop runs
one callback at a time, so nothing else touches it) and sends each packet on with ``sendto`` of
a slice of that buffer: no bytes object is made per packet. A packet whose source is the latched
address is forwarded without being parsed; anything else goes to the latch, which learns or
drops it. Counters are kept in local variables and added once per wake-up, with one clock read.
The payload type byte is checked against the stream's telephone-event types so that DTMF is
seen without slowing ordinary audio. Nothing is logged per packet.

Music on hold or a prompt replaces one direction: ``Endpoint.play`` sends a ``Player``'s packets
to that endpoint's phone from its own port, and while it plays the packets of the peer towards
that phone are dropped (still counted as received). The other direction is untouched, so the
held party's audio, if any, still reaches the other phone. When the player stops or ends, relaying
resumes with the next packet.

Dead media is for the owner to judge: each endpoint records, on the monotonic clock, when its
phone last sent anything on either port.

Sockets outlive endpoints. Opening a port pair costs a dozen system calls (two sockets, bind,
registering them with the loop, and as many to undo it), which an anchored call paid on each leg.
So a closed endpoint's sockets rest, bound and registered, and a later endpoint takes the pair
that has rested longest once it has rested ``reuse_after`` seconds: the old call's phone has had
that long to stop sending, and whatever it sent is read and dropped as it comes and once more
just before reuse, so that no stale packet can be the first a new latch learns from. Resting
pairs still hold their ports; the relay closes them for real when the range has no other pair
free or the process no file descriptor left, so that resting never refuses a call, and keeps at
most ``max_resting`` of them (the range, and half the process's file descriptors). As many pairs
rest as legs end in ``reuse_after`` seconds: 4,000 at 1,000 calls a second. A cap at half the
range (2,500 pairs of the default 10000-20000) left every fourth leg at 800 calls a second to
close a pair for real and bind a fresh one, some twenty system calls each.

A pair that has rested ``retire_after`` seconds is closed for real too. Each new endpoint takes at
most one resting pair, so without it every moment when calls ended faster than new ones began
(a burst of hang-ups, a pause in new calls) would leave the pool larger for good, until it held
``max_resting`` pairs of sockets and their handles that the call rate never needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import resource
import socket
import termios
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

import structlog

from sentral.media.dtmf import Digit, DtmfDetector
from sentral.media.latch import (
    DEFAULT_POLICY,
    Address,
    Latch,
    LatchPolicy,
    LatchState,
    PortPool,
    PortsExhausted,
)
from sentral.media.player import Playback, Player
from sentral.media.rtp import FIXED_HEADER, RtpError, parse_rtp

log = structlog.get_logger("sentral.media")

BUFFER_SIZE = 65_535
DRAIN_BATCH = 512  # datagrams read per wake-up at most, so one busy socket cannot starve the rest
_NO_BYTES = bytes(4)  # a FIONREAD answer of nothing queued (a C int of 0)
REUSE_AFTER = 2.0  # seconds a closed endpoint's sockets rest before another endpoint takes them
RETIRE_AFTER = 2 * REUSE_AFTER  # seconds after which a resting pair nobody took is closed for real
_RTCP_TYPES = range(64, 96)  # RTCP packet types 192..223 as they read in the RTP payload-type bits
_unpack_header = FIXED_HEADER.unpack_from

DtmfHandler = Callable[["Endpoint", Digit], None]


@dataclass(frozen=True, slots=True)
class Counters:
    """Packets and bytes received from a phone on one port, sent to it, and dropped."""

    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    dropped: int


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """What one endpoint has seen: counters per port, where its phone is, the last packet's time."""

    port: int
    rtp: Counters
    rtcp: Counters
    rtp_address: Address | None  # where media for the phone goes: learned, or from its SDP
    rtcp_address: Address | None
    latched: bool  # True once the phone's RTP source is learned and strangers are dropped
    last_received: float | None  # time.monotonic() of the last packet from the phone, any port


class _Bound:
    """One bound relay socket, registered with the loop from its bind to its close: the channel of
    the endpoint it serves reads it, and while it rests between endpoints, it drops what comes."""

    def __init__(self, sock: socket.socket, buffer: bytearray) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.buffer = buffer
        self.channel: _Channel | None = None

    def on_readable(self) -> None:
        channel = self.channel
        if channel is not None:
            channel.on_readable()
        else:
            self.drain()

    def empty(self) -> bool:
        """True when nothing waits to be read, asked without reading: a pair taken from rest is
        almost always empty, and a read that finds nothing raises, which costs several times the
        system call. FIONREAD gives the size of the next datagram, so one of no bytes passes for
        nothing; the channel that reads it next drops it as no RTP."""
        try:
            return fcntl.ioctl(self.fd, termios.FIONREAD, _NO_BYTES) == _NO_BYTES
        except OSError:
            return False

    def drain(self) -> bool:
        """Read and drop what is queued (a wake-up's worth at most); True once nothing is left."""
        recv = self.sock.recv_into
        buf = self.buffer
        for _ in range(DRAIN_BATCH):
            try:
                recv(buf)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                continue  # an ICMP error from an earlier send
        return False


class _Channel:
    """One local socket of an endpoint (its RTP or its RTCP port) and the latch in front of it."""

    def __init__(self, relay: Relay, endpoint: Endpoint, bound: _Bound, *, is_rtcp: bool) -> None:
        self.relay = relay
        # None once the endpoint is closed: the two refer to each other only while it is open, so
        # that a closed endpoint is freed at once rather than left for the cyclic collector.
        self.endpoint: Endpoint | None = endpoint
        self.bound = bound
        sock = bound.sock
        self.fd = bound.fd
        self.recv = sock.recvfrom_into
        self.sendto = sock.sendto
        self.is_rtcp = is_rtcp
        self.buffer = relay.buffer
        self.view = relay.view
        self.dtmf: frozenset[int] = frozenset()  # telephone-event payload types, RTP port only
        self.muted = False  # True while a player, not the peer, feeds this port's phone
        self.latch = Latch(None, relay.policy)
        self.peer: _Channel | None = None  # the same kind of port of the paired endpoint
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.dropped = 0
        self.last_rx = 0.0
        bound.channel = self

    def counters(self) -> Counters:
        return Counters(self.packets_in, self.bytes_in, self.packets_out, self.bytes_out, self.dropped)

    def on_readable(self) -> None:
        """Drain the socket: forward what the latch accepts to the peer's phone, drop the rest."""
        buf = self.buffer
        view = self.view
        recv = self.recv
        latch = self.latch
        source = latch.source
        peer = self.peer
        out: Callable[[memoryview, Address], int] | None = None
        dest: Address = ()
        if peer is not None and not peer.muted and peer.latch.destination is not None:
            dest = peer.latch.destination
            out = peer.sendto
        dtmf = self.dtmf
        received = 0
        received_bytes = 0
        sent = 0
        sent_bytes = 0
        dropped = 0
        last_ok = False
        n = 0
        for _ in range(DRAIN_BATCH):
            try:
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # An ICMP error from an earlier send (the phone's port closed) surfaces here.
                continue
            if addr != source:
                if not self._admit(addr, n):
                    dropped += 1
                    last_ok = False
                    continue
                source = latch.source
            received += 1
            received_bytes += n
            last_ok = True
            if out is not None:
                try:
                    out(view[:n], dest)
                    sent += 1
                    sent_bytes += n
                except OSError:
                    pass  # a full send buffer or an unreachable phone: this packet is lost, as on a network
            if dtmf and n > 12 and buf[1] & 0x7F in dtmf:
                # The key press is relayed before it is acted on: what it does (music to the other
                # phone when it parks the call, say) must not overtake it on the way there.
                if sent and peer is not None:
                    peer.packets_out += sent
                    peer.bytes_out += sent_bytes
                    sent = sent_bytes = 0
                self._dtmf(n)
                if self.endpoint is None:
                    return  # the digit ended the call
                # It may have muted or re-paired the other side: look again for the next packets.
                peer = self.peer
                out = None
                if peer is not None and not peer.muted and peer.latch.destination is not None:
                    dest = peer.latch.destination
                    out = peer.sendto
        if received:
            self.packets_in += received
            self.bytes_in += received_bytes
            self.last_rx = time.monotonic()
            if sent and peer is not None:
                peer.packets_out += sent
                peer.bytes_out += sent_bytes
            if last_ok and n >= 12:
                # Where the latched stream is, so that a NAT rebinding can be recognised; written
                # straight into the latch (what ``Latch.note`` does) to spare a call per wake-up.
                if self.is_rtcp:
                    latch.ssrc = _unpack_header(buf, 0)[3]  # RTCP's sender SSRC sits at bytes 4..8
                    latch.last_seq = None
                elif buf[1] & 0x7F not in _RTCP_TYPES:
                    _, _, latch.last_seq, _, latch.ssrc = _unpack_header(buf, 0)
        if dropped:
            self.dropped += dropped

    def _admit(self, addr: Address, n: int) -> bool:
        """The slow path: a packet from an address that is not (or not yet) the latched one."""
        buf = self.buffer
        if n < 8 or buf[0] >> 6 != 2:
            return False  # not RTP or RTCP at all: never learn from it
        ssrc: int | None = None
        seq: int | None = None
        rtcp = self.is_rtcp or (buf[1] & 0x7F) in _RTCP_TYPES
        if rtcp:
            ssrc = FIXED_HEADER.unpack_from(buf, 0)[3] if n >= 12 else int.from_bytes(buf[4:8], "big")
        elif n >= 12:
            _, _, seq, _, ssrc = FIXED_HEADER.unpack_from(buf, 0)
        else:
            return False
        if rtcp and not self.is_rtcp and self.latch.source is not None:
            # RTCP multiplexed on the RTP port (RFC 5761) follows the RTP latch, never moves it.
            return addr == self.latch.source
        return self.latch.admit(addr, ssrc, seq, time.monotonic())

    def _dtmf(self, n: int) -> None:
        endpoint = self.endpoint
        if endpoint is None:
            return
        try:
            packet = parse_rtp(self.view[:n])
        except RtpError:
            return
        digit = endpoint.detector.feed(packet.header.timestamp, packet.payload)
        if digit is not None and endpoint.on_dtmf is not None:
            try:
                endpoint.on_dtmf(endpoint, digit)
            except Exception:
                log.exception("dtmf_handler_failed", port=endpoint.port)


class Endpoint:
    """One phone's side of a relayed call: an RTP and an RTCP port, latches, counters, a peer."""

    def __init__(self, relay: Relay, port: int, rtp: _Bound, rtcp: _Bound) -> None:
        self.relay = relay
        self.port = port
        self.rtp = _Channel(relay, self, rtp, is_rtcp=False)
        self.rtcp = _Channel(relay, self, rtcp, is_rtcp=True)
        self.playback: Playback | None = None
        self.detector = DtmfDetector()
        self.on_dtmf: DtmfHandler | None = None
        self.closed = False

    @property
    def rtcp_port(self) -> int:
        """The local RTCP port: one above the RTP port."""
        return self.port + 1

    @property
    def dtmf_payload_types(self) -> frozenset[int]:
        """The telephone-event payload types (RFC 4733) looked for in the phone's RTP."""
        return self.rtp.dtmf

    @dtmf_payload_types.setter
    def dtmf_payload_types(self, types: Collection[int]) -> None:
        self.rtp.dtmf = frozenset(types)

    @property
    def peer(self) -> Endpoint | None:
        """The endpoint this one's media is relayed to."""
        peer = self.rtp.peer
        return peer.endpoint if peer is not None else None

    def set_remote(
        self,
        rtp: Address | None,
        rtcp: Address | None = None,
        *,
        dtmf_payload_types: Collection[int] = (),
    ) -> None:
        """The phone's media address from a new SDP: send there, learn its real source again.

        ``rtcp`` defaults to the RTP port plus one (RFC 3550 §11); ``dtmf_payload_types`` are the
        telephone-event payload types (RFC 4733) the phone may send.
        """
        if rtcp is None and rtp is not None:
            rtcp = (rtp[0], rtp[1] + 1)
        self.rtp.latch.reset(rtp)
        self.rtcp.latch.reset(rtcp)
        self.dtmf_payload_types = frozenset(dtmf_payload_types)
        self.detector.reset()

    @property
    def playing(self) -> bool:
        """True while a player, not the peer, feeds this endpoint's phone."""
        return self.playback is not None

    def play(self, player: Player, *, on_done: Callable[[], object] | None = None) -> None:
        """Send ``player``'s packets to this endpoint's phone instead of the peer's media."""
        if self.closed:
            raise RuntimeError("cannot play to a closed endpoint")
        self.stop_playing()
        channel = self.rtp

        def send(packet: bytes) -> None:
            destination = channel.latch.destination
            if destination is None:
                return
            try:
                channel.sendto(packet, destination)
            except OSError:
                return
            channel.packets_out += 1
            channel.bytes_out += len(packet)

        def finished() -> None:
            self._unmute()
            if on_done is not None:
                on_done()

        self.playback = Playback(player, send, loop=self.relay.loop, on_done=finished)
        # The peer's packets to this phone are dropped from now on, on both ports.
        self.rtp.muted = self.rtcp.muted = True
        self.playback.start()

    def stop_playing(self) -> None:
        """Stop the player; the peer's media flows to this phone again from the next packet."""
        playback = self.playback
        if playback is not None:
            self._unmute()
            playback.stop()

    def _unmute(self) -> None:
        self.playback = None
        self.rtp.muted = self.rtcp.muted = False

    def stats(self) -> EndpointStats:
        """A snapshot of this endpoint's counters and latches."""
        last = max(self.rtp.last_rx, self.rtcp.last_rx)
        return EndpointStats(
            port=self.port,
            rtp=self.rtp.counters(),
            rtcp=self.rtcp.counters(),
            rtp_address=self.rtp.latch.destination,
            rtcp_address=self.rtcp.latch.destination,
            latched=self.rtp.latch.state is LatchState.LATCHED,
            last_received=last if last else None,
        )

    def close(self) -> None:
        """Stop relaying, close both sockets and return the ports to the pool (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.stop_playing()
        self.relay._close(self)


@dataclass(frozen=True, slots=True)
class RelaySession:
    """Two paired endpoints: the media of one call between phone A and phone B."""

    a: Endpoint
    b: Endpoint

    def close(self) -> None:
        """Close both endpoints and free their ports."""
        self.a.close()
        self.b.close()


class Relay:
    """Owns the relay's sockets on one address, their ports and the event-loop readers."""

    def __init__(
        self,
        address: str,
        pool: PortPool,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        policy: LatchPolicy = DEFAULT_POLICY,
        socket_buffer: int = 0,
        reuse_after: float = REUSE_AFTER,
        retire_after: float = RETIRE_AFTER,
        max_resting: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        # What pairs rest by (the monotonic clock; a test's own in tests, compiled or not).
        self.clock = clock
        self.pool = pool
        self.policy = policy
        self.socket_buffer = socket_buffer
        self.reuse_after = reuse_after
        self.retire_after = max(retire_after, reuse_after)
        if max_resting is None:
            files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            max_resting = pool.capacity
            if files != resource.RLIM_INFINITY:
                max_resting = min(max_resting, files // 4)  # two descriptors a pair: half of them
        self.max_resting = max_resting
        # Closed endpoints' socket pairs, oldest first: (when it closed, port, RTP, RTCP).
        self._resting: deque[tuple[float, int, _Bound, _Bound]] = deque()
        self._loop = loop
        self.buffer = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.buffer)
        self.endpoints: set[Endpoint] = set()
        # What closed endpoints had counted, so that the totals only ever grow (for metrics).
        self._closed = [0, 0, 0]  # packets in, packets out, dropped
        self._family = socket.AF_INET6 if ":" in address else socket.AF_INET

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the sockets are registered with (the running one by default)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def open(self) -> Endpoint:
        """A new endpoint on a free port pair; PortsExhausted when none can be had."""
        resting = self._resting
        ripe = False
        if resting:
            now = self.clock()
            if resting[0][0] + self.reuse_after <= now:
                self.retire(now)  # the pair taken below is then one still worth keeping
                ripe = bool(resting) and resting[0][0] + self.reuse_after <= now
        if ripe:
            _, port, rtp, rtcp = resting.popleft()
            # What came since the last wake-up is dropped; a pair someone keeps spraying is not reused.
            if (rtp.empty() or rtp.drain()) and (rtcp.empty() or rtcp.drain()):
                self.pool.wake(port)
                endpoint = Endpoint(self, port, rtp, rtcp)
                self.endpoints.add(endpoint)
                return endpoint
            self._discard(port, rtp, rtcp)
        while True:
            try:
                return self._open_fresh()
            except PortsExhausted:
                if not resting:
                    raise
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE) or not resting:
                    raise
            # Every free pair rests, or resting pairs hold the file descriptors a new pair needs:
            # the one that has rested longest is closed for real instead.
            _, port, rtp, rtcp = resting.popleft()
            self._discard(port, rtp, rtcp)

    def retire(self, now: float) -> int:
        """Close for real the resting pairs that have rested ``retire_after`` seconds by ``now``;
        how many were closed."""
        resting = self._resting
        limit = now - self.retire_after
        retired = 0
        while resting and resting[0][0] < limit:
            _, port, rtp, rtcp = resting.popleft()
            self._discard(port, rtp, rtcp)
            retired += 1
        return retired

    def _open_fresh(self) -> Endpoint:
        loop = self.loop
        pool = self.pool
        # Ports bound by other programs are skipped; after a full round the range is used up.
        for _ in range(max(pool.available, 1)):
            port = pool.allocate()  # PortsExhausted when every pair is taken by calls
            try:
                rtp = self._bind(port)
            except OSError as exc:
                pool.release(port)
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            try:
                rtcp = self._bind(port + 1)
            except OSError as exc:
                rtp.close()
                pool.release(port)
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            rtp_bound, rtcp_bound = _Bound(rtp, self.buffer), _Bound(rtcp, self.buffer)
            endpoint = Endpoint(self, port, rtp_bound, rtcp_bound)
            loop.add_reader(rtp_bound.fd, rtp_bound.on_readable)
            loop.add_reader(rtcp_bound.fd, rtcp_bound.on_readable)
            self.endpoints.add(endpoint)
            return endpoint
        raise PortsExhausted(
            f"no RTP port pair in {pool.first}-{pool.last} could be bound on {self.address}: "
            f"{pool.in_use} are in use by calls and the rest by other programs"
        )

    def pair(self, a: Endpoint, b: Endpoint) -> None:
        """Relay ``a``'s phone to ``b``'s and back. Earlier pairings of either are replaced."""
        if a is b:
            raise ValueError("an endpoint cannot be paired with itself")
        a.rtp.peer, b.rtp.peer = b.rtp, a.rtp
        a.rtcp.peer, b.rtcp.peer = b.rtcp, a.rtcp

    def session(self) -> RelaySession:
        """Two new endpoints, paired."""
        a = self.open()
        try:
            b = self.open()
        except PortsExhausted:
            a.close()
            raise
        self.pair(a, b)
        return RelaySession(a, b)

    def close(self) -> None:
        """Close every endpoint and every socket."""
        for endpoint in list(self.endpoints):
            endpoint.close()
        resting = self._resting
        while resting:
            _, port, rtp, rtcp = resting.popleft()
            self._discard(port, rtp, rtcp)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            if self.socket_buffer:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.socket_buffer)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_buffer)
            sock.bind((self.address, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def totals(self) -> tuple[int, int, int]:
        """Packets received from phones, sent to them, and dropped, since the relay began."""
        packets_in, packets_out, dropped = self._closed
        for endpoint in self.endpoints:
            for channel in (endpoint.rtp, endpoint.rtcp):
                packets_in += channel.packets_in
                packets_out += channel.packets_out
                dropped += channel.dropped
        return packets_in, packets_out, dropped

    def _close(self, endpoint: Endpoint) -> None:
        self.endpoints.discard(endpoint)
        closed = self._closed
        for channel in (endpoint.rtp, endpoint.rtcp):
            closed[0] += channel.packets_in
            closed[1] += channel.packets_out
            closed[2] += channel.dropped
            peer = channel.peer
            if peer is not None and peer.peer is channel:
                peer.peer = None
            channel.peer = None
            channel.endpoint = None
            channel.bound.channel = None  # what comes now is dropped
        loop = self._loop
        rtp, rtcp = endpoint.rtp.bound, endpoint.rtcp.bound
        if len(self._resting) < self.max_resting and loop is not None and not loop.is_closed():
            self._resting.append((self.clock(), endpoint.port, rtp, rtcp))
            self.pool.rest(endpoint.port)
        else:
            self._discard(endpoint.port, rtp, rtcp)

    def _discard(self, port: int, rtp: _Bound, rtcp: _Bound) -> None:
        """Close a pair's sockets for real and give its port back to the pool."""
        loop = self._loop
        for bound in (rtp, rtcp):
            if loop is not None and not loop.is_closed():
                # Its result goes unread: uvloop returns None where asyncio's signature says bool,
                # which compiled code would otherwise check and refuse.
                remove_reader: Callable[[int], object] = loop.remove_reader
                remove_reader(bound.fd)
            bound.sock.close()
        self.pool.release(port)

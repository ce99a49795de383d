"""A browser's audio and the relay's, joined: one WebRTC peer (aiortc, DTLS-SRTP, Opus or G.711
as the browser and aiortc agree) on one side, plain RTP with G.711 on a UDP port of its own on the
other, where the relay sends a call's audio as it would to a desk phone.

aiortc decodes what the browser sends into PCM frames (48 kHz for Opus); ``AudioBridge`` resamples
them to 8 kHz, encodes them with the law the SIP side agreed on and sends them in 20 ms packets.
RTP from the relay is queued for ``RelayedAudio``, the track aiortc sends the browser (as G.711
codes when the browser was answered with G.711, else decoded for aiortc to encode as Opus):
during a call it hands aiortc a frame every 20 ms, the oldest queued or silence. After running dry
it waits until ``PREBUFFER`` frames are queued again before playing on (40 ms of playout delay,
which absorbs the relay's packets arriving a little late, as any phone's jitter buffer does). The
queue holds at most ``JITTER_FRAMES``: a relay that sends faster than real time loses its oldest
audio, not the call's timing. Between calls the track sends nothing at all, so an open page that
is not in a call costs no encoding.

Nothing here knows SIP: the owner says where the relay's audio for a call comes from
(``connect``), and when the call is over (``disconnect``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import secrets
import time
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler, Packet

from sentral.media.g711 import PCMA, PCMU, SILENCE, alaw_to_ulaw, decode, encode, ulaw_to_alaw
from sentral.media.rtp import RtpError, RtpHeader, build_rtp, parse_rtp
from sentral.pbx.sip.sdp import parse_sdp

RATE = 8000
PTIME = 0.020
SAMPLES = int(RATE * PTIME)  # 160 samples a packet
JITTER_FRAMES = 10  # 200 ms of the relay's audio queued for the browser at most
PREBUFFER = 2  # frames queued before playing on after the queue ran dry


_SILENCE = {law: bytes((code,)) * SAMPLES for law, code in SILENCE.items()}  # 20 ms of it
_TIME_BASE = fractions.Fraction(1, RATE)


def answered_law(sdp: str) -> int | None:
    """The G.711 law an SDP answer to the browser chose for its audio (0 PCMU, 8 PCMA), or None
    (Opus, or no audio)."""
    for media in parse_sdp(sdp.encode()).media:
        if media.media == "audio":
            first = media.formats[0] if media.formats else ""
            return {"0": PCMU, "8": PCMA}.get(first)
    return None


def _packet(codes: bytes, pts: int) -> Packet[Any]:
    packet = Packet(codes)
    packet.pts = pts
    packet.time_base = _TIME_BASE
    return packet


def _frame(pcm: bytes, pts: int) -> AudioFrame:
    frame = AudioFrame(format="s16", layout="mono", samples=SAMPLES)
    frame.planes[0].update(pcm)
    frame.pts = pts
    frame.sample_rate = RATE
    frame.time_base = _TIME_BASE
    return frame


class RelayedAudio(MediaStreamTrack):
    """The track the browser hears: 20 ms frames, paced by the clock, from what the relay sent.

    With ``law`` set (the browser was answered with G.711) the queue holds G.711 codes in that
    law and each is handed to aiortc as an encoded packet, which it only packetizes: no decoding,
    resampling or encoding on the way, and no hop through aiortc's encoding thread. Otherwise the
    queue holds 16-bit PCM for aiortc to encode (Opus)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.law: int | None = None
        self.queue: collections.deque[bytes] = collections.deque(maxlen=JITTER_FRAMES)
        self.active = asyncio.Event()  # set while a call is up
        self._silence = bytes(SAMPLES * 2)
        self._start = 0.0
        self._pts = -1
        self._priming = True

    async def recv(self) -> AudioFrame | Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.active.is_set():
            await self.active.wait()  # no call: nothing to send, nothing to encode
            self._start = 0.0
        now = time.monotonic()
        if self._pts < 0:
            self._pts = 0
            self._start = now
        else:
            self._pts += SAMPLES
            if not self._start:  # the first frame of a call: the clock starts again here
                self._start = now - self._pts / RATE
            wait = self._start + self._pts / RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
        queue = self.queue
        if self._priming and len(queue) >= PREBUFFER:
            self._priming = False
        law = self.law
        if self._priming or not queue:
            self._priming = True
            return _frame(self._silence, self._pts) if law is None else _packet(_SILENCE[law], self._pts)
        chunk = queue.popleft()
        return _frame(chunk, self._pts) if law is None else _packet(chunk, self._pts)


class _RtpSide(asyncio.DatagramProtocol):
    def __init__(self, bridge: AudioBridge) -> None:
        self.bridge = bridge

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.bridge._from_relay(data, addr)


class AudioBridge:
    """One browser phone's audio: the WebRTC track out, RTP on ``port`` towards the relay."""

    def __init__(self) -> None:
        self.track = RelayedAudio()
        self.port = 0
        self.host = ""
        self._transport: asyncio.DatagramTransport | None = None
        self._remote: tuple[str, int] | None = None
        self._payload_type = PCMU
        self._ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._pending = bytearray()
        self._consumer: asyncio.Task[None] | None = None

    async def open(self, host: str) -> AudioBridge:
        """Bind the RTP port on ``host`` (OSError when none can be had)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _RtpSide(self), local_addr=(host, 0))
        self._transport = transport
        self.host, self.port = transport.get_extra_info("sockname")[:2]
        return self

    def speak_to_browser(self, law: int | None) -> None:
        """The browser was answered with G.711 of ``law`` (None: Opus), which the track hands on."""
        self.track.law = law
        self.track.queue.clear()

    def connect(self, host: str, port: int, payload_type: int) -> None:
        """Send to the relay at ``host``:``port`` from now on, in G.711 of ``payload_type``."""
        if payload_type not in (PCMU, PCMA):
            raise ValueError(f"payload type {payload_type} is not G.711")
        self._remote = (host, port)
        self._payload_type = payload_type
        self.track.active.set()

    def disconnect(self) -> None:
        """The call is over: send nothing, and let the browser hear silence."""
        self._remote = None
        self.track.active.clear()
        self.track.queue.clear()
        self._pending.clear()

    def consume(self, track: MediaStreamTrack) -> None:
        """Carry ``track`` (the browser's microphone, as aiortc decodes it) to the relay."""
        if self._consumer is not None:
            self._consumer.cancel()
        self._consumer = asyncio.create_task(self._carry(track), name="webrtc-audio-in")

    async def _carry(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        while True:
            try:
                frame: Any = await track.recv()
            except MediaStreamError:
                return
            if self._remote is None:
                continue
            if frame.sample_rate == RATE and frame.format.name == "s16" and frame.layout.name == "mono":
                self._pending += bytes(frame.planes[0])[: frame.samples * 2]  # G.711 decoded: as is
            else:
                for pcm_frame in resampler.resample(frame):
                    self._pending += bytes(pcm_frame.planes[0])[: pcm_frame.samples * 2]
            while len(self._pending) >= SAMPLES * 2:
                chunk = bytes(self._pending[: SAMPLES * 2])
                del self._pending[: SAMPLES * 2]
                self._send(encode(chunk, self._payload_type))

    def _send(self, payload: bytes) -> None:
        remote, transport = self._remote, self._transport
        if remote is None or transport is None:
            return
        header = RtpHeader(self._payload_type, self._sequence, self._timestamp, self._ssrc)
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + SAMPLES) & 0xFFFFFFFF
        transport.sendto(build_rtp(header, payload), remote)

    def _from_relay(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._remote is None:
            return
        try:
            packet = parse_rtp(data)
        except RtpError:
            return  # RTCP or noise on the port
        if packet.header.payload_type not in (PCMU, PCMA) or not packet.payload:
            return  # telephone-event and comfort noise are not audio to play
        law, queue = self.track.law, self.track.queue
        received = packet.header.payload_type
        if law is None:  # for aiortc to encode: 16-bit PCM, two bytes a sample
            audio, size = decode(packet.payload, received), SAMPLES * 2
        elif received == law:
            audio, size = packet.payload, SAMPLES
        else:
            audio, size = (ulaw_to_alaw if law == PCMA else alaw_to_ulaw)(packet.payload), SAMPLES
        for start in range(0, len(audio) - size + 1, size):
            queue.append(audio[start : start + size])

    async def close(self) -> None:
        self.disconnect()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._consumer
        self.track.stop()
        if self._transport is not None:
            self._transport.close()

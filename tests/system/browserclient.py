"""A browser phone for system tests, made of aiortc as a browser's WebRTC stack would be.

``BrowserClient`` signs in as a member of staff, opens ``/api/browser-phone`` and sends a WebRTC
offer whose microphone is a sine tone, all on an event loop of its own on a thread, so that a
synchronous test can drive pjsua2 phones beside it. What it hears (the track Sentral sends it,
decoded by aiortc) is kept as 8 kHz PCM while recording, to be written as a WAV for the same tone
check the desk phones' recordings get.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import math
import struct
import threading
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

RATE = 48000
PTIME = 0.02


class PacedTrack(MediaStreamTrack):
    """An audio track that hands out one 20 ms frame at a time, paced by the clock, as a
    microphone does."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = int(RATE * PTIME)
        self._pts = -1
        self._start = 0.0

    async def _next_pts(self) -> int:
        """Wait until the next frame is due; its timestamp, in samples at RATE."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._pts < 0:
            self._start, self._pts = time.monotonic(), 0
        else:
            self._pts += self._samples
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        return self._pts


class ToneTrack(PacedTrack):
    """A microphone that hears a sine tone (amplitude 12000 of 32767)."""

    def __init__(self, hz: float) -> None:
        super().__init__()
        self.hz = hz

    async def recv(self) -> AudioFrame:
        n0 = await self._next_pts()
        pcm = struct.pack(
            f"<{self._samples}h",
            *(int(12000 * math.sin(2 * math.pi * self.hz * (n0 + i) / RATE)) for i in range(self._samples)),
        )
        frame = AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(pcm)
        frame.pts = self._pts
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class BrowserClient:
    """One signed-in member of staff's browser phone, driven from a synchronous test."""

    def __init__(
        self, url: str, domain: str, extension: str, password: str, *, tone_hz: float,
        codecs: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        """``codecs`` (such as ``("audio/opus",)``) limits what the offer holds, in that order."""
        self.url = url
        self.codecs = codecs
        self.credentials = {"extension": extension, "domain": domain, "password": password}
        self.tone_hz = tone_hz
        self.messages: list[dict[str, Any]] = []
        self.heard = bytearray()
        self.recording = False
        self.frames_received = 0
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._run(),), daemon=True
        )
        self._thread.start()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                async with session.post(self.url + "/api/session", json=self.credentials) as response:
                    if response.status != 200:
                        raise AssertionError(f"sign-in answered {response.status}: {await response.text()}")
                ws_url = self.url.replace("http", "ws", 1) + "/api/browser-phone"
                async with session.ws_connect(ws_url) as ws:
                    self._ws = ws
                    peer.addTrack(ToneTrack(self.tone_hz))
                    if self.codecs:
                        offered = RTCRtpSender.getCapabilities("audio").codecs
                        for transceiver in peer.getTransceivers():
                            transceiver.setCodecPreferences(
                                [c for name in self.codecs for c in offered if c.mimeType == name]
                            )
                    peer.on("track", lambda track: asyncio.ensure_future(self._hear(track)))
                    await peer.setLocalDescription(await peer.createOffer())
                    await ws.send_str(json.dumps({"type": "offer", "sdp": peer.localDescription.sdp}))
                    reader = asyncio.ensure_future(self._read(ws, peer))
                    await self._stop.wait()
                    reader.cancel()
        except BaseException as exc:  # reported to the test through wait()
            self._error = exc
            with self._changed:
                self._changed.notify_all()
        finally:
            await peer.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, peer: RTCPeerConnection) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            if body.get("type") == "sdp":
                await peer.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
            with self._changed:
                self.messages.append(body)
                self._changed.notify_all()
        with self._changed:
            self.messages.append({"type": "closed"})
            self._changed.notify_all()

    async def _hear(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=8000)
        while True:
            try:
                frame: Any = await track.recv()
            except MediaStreamError:
                return
            self.frames_received += 1
            if not self.recording:
                continue
            for out in resampler.resample(frame):
                self.heard += bytes(out.planes[0])[: out.samples * 2]

    # -- from the test's thread ------------------------------------------------------------------

    def send(self, kind: str, **fields: Any) -> None:
        async def send() -> None:
            assert self._ws is not None
            await self._ws.send_str(json.dumps({"type": kind, **fields}))

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(5)

    def wait(self, kind: str, timeout: float = 10.0, after: int = 0) -> dict[str, Any]:
        """The first message of ``kind`` from index ``after`` on."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self.messages[after:]:
                    if message.get("type") == kind:
                        return message
                if self._error is not None:
                    raise AssertionError(f"the browser phone failed: {self._error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind!r} message in {timeout}s; got {self.messages}")
                self._changed.wait(left)

    def record(self, seconds: float, path: Path) -> Path:
        """Record what the phone hears for ``seconds`` into a 16-bit 8 kHz WAV."""
        self.heard.clear()
        self.recording = True
        time.sleep(seconds)
        self.recording = False
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(bytes(self.heard))
        return path

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> BrowserClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""WebRTC-to-SIP audio calls held at once with no loss: N browser phones each calling a SIP phone
that echoes their audio back, through a server as a clinic runs it (target at least 50).

The server runs serve's defaults (media anchored at the relay, calls logged at info) with ``--web``,
the sounds and a relay port block of its own, and holds staff 2001, 2002, ... (one a browser
phone) and 1002, a SIPp uas registered to it that answers every call (built-in ``uas`` scenario)
and echoes every RTP packet it gets back to its sender (``-rtp_echo``). Each browser phone is an
aiortc peer, as a browser's WebRTC stack is: it signs in (POST /api/session), opens
/api/browser-phone, offers a microphone that plays a sine tone of its own (400 Hz, 450 Hz, ... a
whole number of cycles in 20 ms, so one precomputed frame serves every 20 ms) and waits for
``registered`` and its peer connected (ICE and DTLS done). All N run on one asyncio loop in this
process, not a thread each.

Then all N dial 1002 at once and, once every call is ``connected`` and a second has passed for
the echo to come round, the calls are held for ``--seconds``. The browser hears its own tone back
through the whole path: aiortc (SRTP over DTLS) -> Sentral's WebRTC bridge -> RTP -> relay ->
SIPp echo -> relay -> bridge -> aiortc. The clients offer what a browser does (Opus first, G.711
too), so the browser phone answers G.711 and nothing is transcoded; ``--opus`` offers Opus only,
which the bridge transcodes to and from G.711 both ways. Per call, over the held window, every
frame aiortc decodes from the server's track is counted and sorted: silent (RMS under 300 of
32767: the bridge plays silence when it has nothing queued), the call's own tone (at least half
the frame's energy at its frequency), or other (anything else: a glitch, or another call's
tone). A call is clean when the audio received covers at least ``--min-share`` (98 %) of the
window and its own tone covers at least as much. Figures per step: calls connected, clean
calls, the lowest and median share of audio received and of own tone heard, the frames silent
and other over all calls, the server's CPU over the window (/proc utime + stime, all threads)
and this process's (the N clients: codecs both ways, SRTP, ICE consent), and how late this
process's event loop ran (a 10 ms timer; late clients hear late audio). The figure is the highest
N with every call clean. The calls are hung up and the pages closed between steps, on one server.

On two shared cores the clients, SIPp and the server compete for the same CPU: a client process
that cannot keep up shows as a late loop, and the calls held are then a lower bound of what the
server alone would hold; its CPU per call at the lowest step says what it needs.

    .venv/bin/python bench/bench_browser_phone.py [--calls 10,25,50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import os
import shlex
import statistics
import struct
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
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
from av import AudioFrame, Packet
from loadrun import DOMAIN, bench_password, call_server, mode_name, print_run, process_cpu, register_extension

from sentral.media import g711
from sentral.media.g711 import PCMA, PCMU
from sentral.media.webrtc import answered_law
from tests.system.browserclient import RATE, PacedTrack
from tests.system.peers import LOOPBACK, Sipp, free_port, wait_until
from tests.system.server import SentralServer, tcp_accepts
from tests.system.test_call_media import media_range

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # C loops for RMS and projections; the standard library has it up to 3.12

ROOT = Path(__file__).resolve().parent.parent
CALLEE = "1002"
FIRST_STAFF = 2001
AMPLITUDE = 12000
SILENCE_RMS = 300  # of 32767: the bridge's silence decodes to a few units at most
OWN_TONE = 0.5  # share of a frame's energy at the call's own frequency that makes it its tone
REFERENCE = 16000  # amplitude of the cosine and sine a frame is projected on
SETTLE = 1.0  # seconds from the last call connected to the window: the echo path fills


def tone_hz(index: int) -> float:
    """The tone of the ``index``-th phone: 400 Hz, 450 Hz, ... 2,850 Hz, then again."""
    return 400.0 + 50.0 * (index % 50)


class ToneTrack(PacedTrack):
    """A microphone hearing a sine tone at a multiple of 50 Hz (amplitude 12000 of 32767), 20 ms
    a frame, paced by the clock. A whole number of cycles fits in 20 ms, so every frame is the
    same one, computed once. Once the answer chose G.711 (``law``) the frame goes out already
    encoded, as a packet aiortc only packetizes: a browser encodes in native code, and the
    clients should cost this machine as little as they can."""

    def __init__(self, hz: float) -> None:
        super().__init__()
        self.law: int | None = None
        self._pcm = struct.pack(
            f"<{self._samples}h",
            *(int(AMPLITUDE * math.sin(2 * math.pi * hz * i / RATE)) for i in range(self._samples)),
        )
        narrow = struct.pack(
            "<160h", *(int(AMPLITUDE * math.sin(2 * math.pi * hz * i / 8000)) for i in range(160))
        )
        self._codes = {PCMU: g711.encode(narrow, PCMU), PCMA: g711.encode(narrow, PCMA)}

    async def recv(self) -> AudioFrame | Packet[Any]:
        await self._next_pts()
        if self.law is not None:
            packet = Packet(self._codes[self.law])
            packet.pts = self._pts // (RATE // 8000)
            packet.time_base = fractions.Fraction(1, 8000)
            return packet
        frame = AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(self._pcm)
        frame.pts = self._pts
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class Ear:
    """Sorts the frames a phone hears into silent, its own tone and other, in seconds of audio."""

    def __init__(self, hz: float) -> None:
        self.hz = hz
        self.counting = False
        self.received = self.silent = self.own = self.other = 0.0
        self._references: dict[tuple[int, int], tuple[bytes, bytes]] = {}

    def reset(self) -> None:
        self.received = self.silent = self.own = self.other = 0.0

    def _reference(self, rate: int, samples: int) -> tuple[bytes, bytes]:
        key = (rate, samples)
        if key not in self._references:
            step = 2 * math.pi * self.hz / rate
            self._references[key] = (
                struct.pack(f"<{samples}h", *(int(REFERENCE * math.cos(step * i)) for i in range(samples))),
                struct.pack(f"<{samples}h", *(int(REFERENCE * math.sin(step * i)) for i in range(samples))),
            )
        return self._references[key]

    def hear(self, frame: AudioFrame) -> None:
        if not self.counting or frame.samples == 0:
            return
        data = bytes(frame.planes[0])
        channels = len(frame.layout.channels)
        data = data[: frame.samples * 2 * channels]
        if channels == 2:
            data = audioop.tomono(data, 2, 1, 0)
        seconds = frame.samples / frame.sample_rate
        self.received += seconds
        rms = audioop.rms(data, 2)
        if rms < SILENCE_RMS:
            self.silent += seconds
            return
        cosine, sine = self._reference(frame.sample_rate, frame.samples)
        # findfactor is the projection <x, r> / <r, r>; over whole cycles cosine and sine are
        # orthogonal, so the tone's amplitude is REFERENCE * |(a, b)| and its power half its square.
        a, b = audioop.findfactor(data, cosine), audioop.findfactor(data, sine)
        share = (REFERENCE**2 * (a * a + b * b) / 2) / (rms * rms)
        if share >= OWN_TONE:
            self.own += seconds
        else:
            self.other += seconds


class BrowserPhone:
    """One member of staff's page: signed in, its WebSocket, its aiortc peer and what it hears."""

    def __init__(self, url: str, extension: str, hz: float, *, opus_only: bool = False) -> None:
        self.url = url
        self.opus_only = opus_only
        self.extension = extension
        self.ear = Ear(hz)
        self.messages: list[dict[str, Any]] = []
        self.ice_failed = False
        self._changed = asyncio.Condition()
        self._connected = asyncio.Event()
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._tasks: list[asyncio.Task[None]] = []
        self._hz = hz
        self._tone: ToneTrack | None = None

    async def start(self, timeout: float) -> None:
        """Sign in, offer, and wait for ``registered`` and the peer connected (ICE and DTLS done)."""
        async with asyncio.timeout(timeout):
            credentials = {
                "extension": self.extension,
                "domain": DOMAIN,
                "password": bench_password(self.extension),
            }
            async with self._session.post(self.url + "/api/session", json=credentials) as response:
                if response.status != 200:
                    raise RuntimeError(
                        f"{self.extension}: sign-in answered {response.status}: {await response.text()}"
                    )
            self._ws = await self._session.ws_connect(
                self.url.replace("http", "ws", 1) + "/api/browser-phone"
            )
            self._tone = ToneTrack(self._hz)
            self._peer.addTrack(self._tone)
            if self.opus_only:
                opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
                for transceiver in self._peer.getTransceivers():
                    transceiver.setCodecPreferences(opus)
            self._peer.on("track", self._on_track)
            self._peer.on("connectionstatechange", self._on_state)
            await self._peer.setLocalDescription(await self._peer.createOffer())
            await self._ws.send_str(json.dumps({"type": "offer", "sdp": self._peer.localDescription.sdp}))
            self._tasks.append(asyncio.create_task(self._read(self._ws)))
            await self.wait("registered")
            await self._connected.wait()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.create_task(self._hear(track)))

    async def _on_state(self) -> None:
        if self._peer.connectionState == "failed":
            self.ice_failed = True
        elif self._peer.connectionState == "connected":
            self._connected.set()

    async def _hear(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, AudioFrame):
                self.ear.hear(frame)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            if body.get("type") == "sdp":
                await self._peer.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
                if self._tone is not None:
                    self._tone.law = answered_law(body["sdp"])
            async with self._changed:
                self.messages.append(body)
                self._changed.notify_all()
        async with self._changed:
            self.messages.append({"type": "closed"})
            self._changed.notify_all()

    def seen(self, kind: str, after: int = 0) -> bool:
        return any(message.get("type") == kind for message in self.messages[after:])

    async def wait(self, kind: str, after: int = 0) -> dict[str, Any]:
        """The first message of ``kind`` from index ``after`` on; an error or a closed page fails."""
        async with self._changed:
            while True:
                for message in self.messages[after:]:
                    if message.get("type") == kind:
                        return message
                    if message.get("type") in ("error", "closed") or (
                        message.get("type") == "ended" and kind != "ended"
                    ):
                        raise RuntimeError(f"{self.extension} waiting for {kind!r}: {message}")
                await self._changed.wait()

    async def send(self, kind: str, **fields: Any) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps({"type": kind, **fields}))

    async def close(self) -> None:
        """Hang up (when a call is up), close the page and the peer."""
        with contextlib.suppress(Exception):
            if (
                self._ws is not None
                and not self._ws.closed
                and self.seen("connected")
                and not self.seen("ended")
            ):
                seen = len(self.messages)
                await self.send("hang-up")
                async with asyncio.timeout(5):
                    await self.wait("ended", after=seen)
        with contextlib.suppress(Exception):
            if self._ws is not None:
                await self._ws.close()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self._peer.close()
        await self._session.close()


@dataclass(slots=True)
class StepResult:
    calls: int
    registered: int = 0
    connected: int = 0
    ended_early: int = 0
    ice_failed: int = 0
    window: float = 0.0
    received: list[float] = field(default_factory=list)  # per call, share of the window
    own: list[float] = field(default_factory=list)
    silent: float = 0.0  # seconds over all calls
    other: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    late_p99: float = 0.0
    late_max: float = 0.0
    problem: str = ""

    def clean(self, min_share: float) -> int:
        return sum(
            1
            for got, own in zip(self.received, self.own, strict=True)
            if got >= min_share and own >= min_share
        )

    def row(self, min_share: float) -> str:
        if not self.received:
            return f"{self.calls:>5} {self.registered:>5} {self.connected:>5}   not run: {self.problem}"

        def low_median(values: list[float]) -> str:
            return f"{min(values) * 100:5.1f}/{statistics.median(values) * 100:5.1f}%"

        return (
            f"{self.calls:>5} {self.registered:>5} {self.connected:>5} {self.clean(min_share):>5} "
            f"{low_median(self.received):>13} {low_median(self.own):>13} {self.silent:>7.2f} {self.other:>7.2f} "
            f"{self.server_cpu / self.window * 100:>6.0f}% {self.client_cpu / self.window * 100:>6.0f}% "
            f"{self.late_p99 * 1000:>5.0f}/{self.late_max * 1000:<5.0f}"
        )


HEADER = (
    f"{'calls':>5} {'regd':>5} {'conn':>5} {'clean':>5} {'received min/med':>13} {'own tone min/med':>13} "
    f"{'silent':>7} {'other':>7} {'server':>7} {'client':>7} {'loop late ms':>11}"
)
LEGEND = (
    "regd: phones registered; conn: calls connected; clean: calls with no loss; received: audio "
    "received as a share of the window; own tone: the call's own tone heard as a share of the window; "
    "silent, other: seconds of frames over all calls; server, client: CPU over the window as a share "
    "of one core; loop late: the clients' event loop, p99/max"
)


async def watch_loop(lateness: list[float], stop: asyncio.Event) -> None:
    """How late a 10 ms timer of the clients' loop fires, while ``stop`` is not set."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.01)
        lateness.append(loop.time() - before - 0.01)


async def run_step(
    url: str, server_pid: int, calls: int, seconds: float, batch: int, *, opus_only: bool = False
) -> StepResult:
    """Start ``calls`` browser phones, have them all call the echo, hold the calls, measure, close."""
    result = StepResult(calls)
    phones = [BrowserPhone(url, str(FIRST_STAFF + i), tone_hz(i), opus_only=opus_only) for i in range(calls)]
    try:
        for start in range(0, calls, batch):
            outcomes = await asyncio.gather(
                *(phone.start(60.0) for phone in phones[start : start + batch]), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    result.problem = result.problem or f"a phone did not register: {outcome!r}"
                else:
                    result.registered += 1
        if result.registered < calls:
            return result
        marks = [len(phone.messages) for phone in phones]
        await asyncio.gather(*(phone.send("dial", number=CALLEE) for phone in phones))
        answered = await asyncio.gather(
            *(
                asyncio.wait_for(phone.wait("connected", after), 20.0 + calls * 0.2)
                for phone, after in zip(phones, marks, strict=True)
            ),
            return_exceptions=True,
        )
        up = [
            phone
            for phone, answer in zip(phones, answered, strict=True)
            if not isinstance(answer, BaseException)
        ]
        result.connected = len(up)
        for answer in answered:
            if isinstance(answer, BaseException):
                result.problem = result.problem or f"a call did not connect: {answer!r}"
        if not up:
            return result
        await asyncio.sleep(SETTLE)
        lateness: list[float] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_loop(lateness, stop))
        loop = asyncio.get_running_loop()
        server_before, client_before = process_cpu(server_pid), process_cpu(os.getpid())
        began = loop.time()
        for phone in up:
            phone.ear.reset()
            phone.ear.counting = True
        held = [len(phone.messages) for phone in up]
        await asyncio.sleep(seconds)
        for phone in up:
            phone.ear.counting = False
        result.window = loop.time() - began
        result.server_cpu = process_cpu(server_pid) - server_before
        result.client_cpu = process_cpu(os.getpid()) - client_before
        stop.set()
        await watcher
        lateness.sort()
        if lateness:
            result.late_p99 = lateness[min(len(lateness) - 1, int(0.99 * len(lateness)))]
            result.late_max = lateness[-1]
        for phone, after in zip(up, held, strict=True):
            ear = phone.ear
            result.received.append(ear.received / result.window)
            result.own.append(ear.own / result.window)
            result.silent += ear.silent
            result.other += ear.other
            result.ended_early += phone.seen("ended", after)
            result.ice_failed += phone.ice_failed
        # Calls that never connected count as calls with nothing heard.
        result.received += [0.0] * (calls - len(up))
        result.own += [0.0] * (calls - len(up))
        return result
    finally:
        await asyncio.gather(*(phone.close() for phone in phones), return_exceptions=True)


def start_server(work: Path, staff: int, sounds: Path, media_ports: str | None) -> tuple[SentralServer, str]:
    """The server as a clinic runs it, with the web API: staff for the phones and the callee."""
    extensions = [CALLEE, *(str(FIRST_STAFF + i) for i in range(staff))]
    server = call_server(work, extensions)
    if media_ports is None:
        # Each call is two relay endpoints of two ports (RTP, RTCP); room for resting pairs too.
        first, last = media_range(max(200, staff * 8))
        media_ports = f"{first}-{last}"
    web_port = free_port()
    server.extra_args += [
        "--web", f"{LOOPBACK}:{web_port}", "--sounds", str(sounds), "--media-ports", media_ports,
    ]  # fmt: skip
    server.start(timeout=30.0)
    wait_until(lambda: tcp_accepts(LOOPBACK, web_port), 10, "the web listener")
    return server, f"http://{LOOPBACK}:{web_port}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", default="10,25,50", help="browser phones calling at once, in steps")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="how long the calls are held and measured"
    )
    parser.add_argument(
        "--min-share", type=float, default=0.98, help="received and own tone share for a clean call"
    )
    parser.add_argument("--batch", type=int, default=10, help="phones signing in and offering at once")
    parser.add_argument(
        "--sounds",
        type=Path,
        default=Path(os.environ.get("SENTRAL_SOUNDS") or ROOT / "sounds"),
        help="the server's --sounds (default $SENTRAL_SOUNDS, else ./sounds)",
    )
    parser.add_argument("--media-ports", help="the relay's port range (default: a free block below 10000)")
    parser.add_argument(
        "--opus", action="store_true", help="offer Opus only, so that the bridge transcodes both ways"
    )
    args = parser.parse_args()
    steps = [int(part) for part in args.calls.split(",") if part.strip()]
    if not steps or min(steps) < 1:
        parser.error("--calls takes positive numbers")
    command = "python bench/bench_browser_phone.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rows = [HEADER]
    results: list[StepResult] = []
    with tempfile.TemporaryDirectory(prefix="sentral-bench-") as tmp:
        work = Path(tmp)
        server, url = start_server(work, max(steps), args.sounds, args.media_ports)
        assert server.proc is not None
        try:
            sipp = Sipp(work / "sipp")
            uas_port = free_port()
            registered = register_extension(sipp, server, work, CALLEE, uas_port)
            if registered.successful != 1:
                print(f"the callee did not register:\n{registered}")
                return 1
            with sipp.running(None, "uas", local_port=uas_port, timeout=3600, extra=("-rtp_echo",)) as uas:
                uas.wait_listening()
                print(HEADER, flush=True)
                for calls in steps:
                    result = asyncio.run(
                        run_step(url, server.proc.pid, calls, args.seconds, args.batch, opus_only=args.opus)
                    )
                    results.append(result)
                    rows.append(result.row(args.min_share))
                    print(rows[-1], flush=True)
                    if not result.received:
                        break
                    time.sleep(3.0)  # the pages' unregistrations and the relay's ports settle
        finally:
            server.stop()

    rows += ["", LEGEND, ""]
    for result in results:
        notes = []
        if result.problem:
            notes.append(result.problem)
        if result.ended_early:
            notes.append(f"{result.ended_early} calls ended during the window")
        if result.ice_failed:
            notes.append(f"{result.ice_failed} peers' connections failed")
        if result.received:
            notes.append(
                f"window {result.window:.1f} s; server {result.server_cpu / result.window * 100 / result.calls:.1f} % "
                f"and client {result.client_cpu / result.window * 100 / result.calls:.1f} % of a core per call"
            )
        rows.append(f"{result.calls} calls: " + "; ".join(notes))
    clean = [r.calls for r in results if r.received and r.clean(args.min_share) == r.calls]
    rows.append(
        f"highest N with every call clean (received and own tone >= {args.min_share:.0%} of the window): "
        + (str(max(clean)) if clean else "none")
        + " (target 50)"
    )
    print_run(
        f"WebRTC-to-SIP audio calls held at once, echoed by a SIP phone "
        f"({'Opus, transcoded' if args.opus else 'G.711 end to end'}), {mode_name(False)}",
        command,
        rows,
    )
    return 0 if results and all(r.received for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""A phone behind NAT whose RTP source port moves mid-call, as the other phone hears it.

SIPp places the call (signalling only); the test sends the caller's RTP itself from Python sockets,
so that it can move the source the way a NAT rebinding does: the same stream (SSRC, sequence
numbers running on) from a new port. The relay must follow it there, both ways, and must not let a
stranger with a stream of its own in at the same time.
"""

from __future__ import annotations

import math
import re
import secrets
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from sentral.media import g711
from sentral.media.rtp import RtpHeader, build_rtp
from tests.system.audio import write_tone
from tests.system.conftest import SCENARIOS
from tests.system.peers import LOOPBACK, Sipp, Softphone, wait_until, write_users_csv
from tests.system.server import SentralServer
from tests.system.test_call_media import amplitude, start_media_clinic
from tests.system.test_calls import DOMAIN, phone_for
from tests.system.test_media import windows

CALLER_TONE = 1800.0
BOB_TONE = 1000.0
STRANGER_TONE = 600.0
HALF = 100  # packets (2 s) from each source port


def _tone_payload(hz: float, seq: int) -> bytes:
    pcm = struct.pack(
        "<160h", *(round(12000 * math.sin(2 * math.pi * hz * (160 * seq + n) / 8000)) for n in range(160))
    )
    return g711.encode(pcm, g711.PCMU)


_OK_SDP = re.compile(r"SIP/2\.0 200 OK.*?m=audio (\d+) ", re.DOTALL)


def _relay_port(messages: Path) -> int | None:
    """The relay port Sentral's 200 OK told the caller to send to, once SIPp has logged it."""
    found = _OK_SDP.search(messages.read_text(errors="replace")) if messages.is_file() else None
    return int(found.group(1)) if found is not None else None


def test_the_relay_follows_a_rebound_source_and_keeps_a_stranger_out(
    tmp_path: Path, sounds: Path, sipp: Sipp, softphone_factory: Callable[..., Softphone]
) -> None:
    server, _ = start_media_clinic(tmp_path, sounds)
    try:
        server.reconfigure("clinic", "set", DOMAIN, "--digest", "md5")  # SIPp speaks MD5 only
        _rebinding(server, sipp, softphone_factory, tmp_path)
    finally:
        server.stop()


def _rebinding(
    server: SentralServer, sipp: Sipp, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    bob = phone_for(softphone_factory, server, "1002")
    users = write_users_csv(tmp_path / "caller.csv", [("1001", "secret-1001", DOMAIN, "1002")])
    messages = tmp_path / "caller-messages.log"
    extra = ["-d", "12000", "-trace_msg", "-message_file", str(messages)]
    with sipp.running(
        server.address, SCENARIOS / "call_talk_uac.xml", users=users, calls=1, auth_uri=DOMAIN, extra=extra
    ):
        b_call = bob.wait_incoming("1002")["call"]
        bob.answer(b_call)
        bob.wait_event("media_state", call=b_call, status="active")
        wait_until(lambda: _relay_port(messages) is not None, 5, "SIPp to log the 200 OK")
        port = _relay_port(messages)
        assert port is not None
        relay = (LOOPBACK, port)
        heard = tmp_path / "bob.wav"
        bob.record(b_call, heard)
        bob.play(b_call, write_tone(tmp_path / "bob-tone.wav", BOB_TONE), loop=True)
        ssrc, stranger_ssrc = secrets.randbits(32), secrets.randbits(32)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as before,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as after,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
        ):
            for sock in (before, after, stranger):
                sock.bind((LOOPBACK, 0))
                sock.setblocking(False)
            for seq in range(2 * HALF):
                source = before if seq < HALF else after
                source.sendto(
                    build_rtp(RtpHeader(0, seq, 160 * seq, ssrc), _tone_payload(CALLER_TONE, seq)), relay
                )
                if seq >= HALF:
                    # Someone else's stream to the same port, while the phone sends from its new one.
                    packet = build_rtp(
                        RtpHeader(0, 5000 + seq, 160 * seq, stranger_ssrc), _tone_payload(STRANGER_TONE, seq)
                    )
                    stranger.sendto(packet, relay)
                time.sleep(0.02)
            to_new_port = _drain(after)
            to_stranger = _drain(stranger)
        assert str(heard) in bob.stop_media(b_call)
        rate, parts = windows(heard)
        tone = [amplitude(w, CALLER_TONE, rate) > 1000 for w in parts]
        stranger_heard = [round(amplitude(w, STRANGER_TONE, rate)) for w in parts]
        # The caller's tone on both sides of the move (each half is 2 s, eight windows).
        first, second = tone[: len(tone) // 2], tone[len(tone) // 2 :]
        assert sum(first) >= 4 and sum(second) >= 4, tone
        assert all(a < 300 for a in stranger_heard), stranger_heard
        # Bob's audio went to where the caller sends from now, never to the stranger.
        assert to_new_port > 20 and to_stranger == 0, (to_new_port, to_stranger)
        bob.hangup(b_call)


def _drain(sock: socket.socket) -> int:
    """How many packets wait on ``sock``."""
    count = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1

"""The player's packets and schedule (fake clock), WAV reading, and real pacing on the loop."""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
import struct
import wave
from pathlib import Path

import pytest

from sentral.media import g711
from sentral.media.player import Player, play_to
from sentral.media.rtp import parse_rtp, seq_diff
from sentral.media.wav import SoundError, duration, read_wav, write_wav
from tests.media.conftest import Runner


def tone(seconds: float, hz: float = 440.0) -> bytes:
    n = int(8000 * seconds)
    return struct.pack(f"<{n}h", *(round(8000 * math.sin(2 * math.pi * hz * i / 8000)) for i in range(n)))


def test_packets_carry_20ms_of_audio_with_consecutive_numbers() -> None:
    audio = g711.ulaw_encode(tone(0.1))  # five packets exactly
    player = Player(audio, 0, ssrc=7, sequence=65534, timestamp=4_294_967_000)
    player.begin(100.0)
    out = player.due(100.0 + 0.08)
    assert [round(s.due - 100.0, 6) for s in out] == [0.0, 0.02, 0.04, 0.06, 0.08]
    packets = [parse_rtp(s.packet) for s in out]
    assert [p.header.sequence for p in packets] == [65534, 65535, 0, 1, 2]
    assert [p.header.timestamp for p in packets] == [(4_294_967_000 + 160 * i) % (1 << 32) for i in range(5)]
    assert [p.header.marker for p in packets] == [True, False, False, False, False]
    assert {p.header.ssrc for p in packets} == {7}
    assert {p.header.payload_type for p in packets} == {0}
    assert b"".join(p.payload for p in packets) == audio
    assert player.finished
    assert player.next_due == math.inf


def test_nothing_is_due_before_its_time() -> None:
    player = Player(b"\x55" * 1600, 8)
    player.begin(0.0)
    assert len(player.due(0.0)) == 1
    assert player.due(0.019) == []
    assert len(player.due(0.02)) == 1
    assert player.next_due == pytest.approx(0.04)


def test_schedule_does_not_drift_with_late_wakeups() -> None:
    player = Player(b"\xff" * 160, 0, loop=True)
    player.begin(0.0)
    now = 0.0
    sent = 0
    for _ in range(3000):  # one minute of wake-ups, each 3 ms late
        now = player.next_due + 0.003
        sent += len(player.due(now))
    # Every slot up to `now` was sent once: none lost to drift, none doubled.
    assert sent == math.floor(now / 0.02) + 1


def test_last_packet_is_padded_with_silence() -> None:
    player = Player(b"\x01" * 170, 8, sequence=0, timestamp=0)
    player.begin(0.0)
    packets = [parse_rtp(s.packet) for s in player.due(0.02)]
    assert len(packets) == 2
    assert packets[1].payload == b"\x01" * 10 + b"\xd5" * 150


def test_music_loops_across_packet_boundaries() -> None:
    audio = bytes(range(250))  # not a whole number of packets
    player = Player(audio, 0, loop=True, sequence=0, timestamp=0)
    player.begin(0.0)
    payload = b"".join(parse_rtp(s.packet).payload for s in player.due(0.2))
    assert len(payload) == 160 * 11
    assert payload == (audio * 8)[: 160 * 11]
    assert not player.finished


def test_a_stalled_loop_skips_rather_than_bursts() -> None:
    player = Player(b"\xff" * 160, 0, loop=True, sequence=10, timestamp=0)
    player.begin(0.0)
    player.due(0.04)  # three packets
    late = [parse_rtp(s.packet).header for s in player.due(1.0)]  # the loop slept a second
    assert len(late) <= 11  # at most max_late's worth, not fifty
    assert late[0].marker
    assert late[0].sequence == 13  # no gap in sequence: nothing was lost
    assert late[-1].timestamp == 50 * 160  # time moved on: the slot due at 1.0 s


def test_random_start_values_differ() -> None:
    players = [Player(b"\xff", 0) for _ in range(4)]
    assert len({p.ssrc for p in players}) == 4


def test_player_refuses_other_codecs_and_an_unbegun_schedule() -> None:
    with pytest.raises(ValueError, match=r"not G\.711"):
        Player(b"", 9)
    with pytest.raises(RuntimeError, match="begin"):
        Player(b"\xff", 0).due(0.0)
    with pytest.raises(ValueError, match="empty"):
        Player(b"", 0, loop=True)


def test_wav_round_trip(tmp_path: Path) -> None:
    pcm = tone(0.5)
    path = tmp_path / "t.wav"
    write_wav(path, pcm)
    assert read_wav(path) == pcm
    assert duration(pcm) == 0.5


def test_wav_of_another_format_is_refused_with_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "hold.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(bytes(400))
    with pytest.raises(SoundError, match=r"hold.wav is 44100 Hz, 16-bit, 2 channel\(s\).*sox"):
        read_wav(path)
    (tmp_path / "x.wav").write_bytes(b"ID3 not a wav")
    with pytest.raises(SoundError, match="not a PCM WAV"):
        read_wav(tmp_path / "x.wav")
    with pytest.raises(SoundError, match="does not exist"):
        read_wav(tmp_path / "missing.wav")


def test_playback_paces_packets_on_the_loop(run: Runner[None]) -> None:
    run(_paced())


async def _paced() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        player = Player(g711.ulaw_encode(tone(1.0)), 0)
        started = loop.time()
        sent = await play_to(player, sender, receiver.getsockname())
        elapsed = loop.time() - started
        packets = []
        while True:
            try:
                packets.append(parse_rtp(receiver.recv(2048)))
            except BlockingIOError:
                break
    finally:
        receiver.close()
        sender.close()
    assert sent == len(packets) == 50
    # 50 packets at 20 ms: the last is due 0.98 s after the first.
    assert 0.95 <= elapsed <= 1.5
    steps = {(b.header.timestamp - a.header.timestamp) % (1 << 32) for a, b in itertools.pairwise(packets)}
    assert steps == {160}
    assert all(seq_diff(b.header.sequence, a.header.sequence) == 1 for a, b in itertools.pairwise(packets))

"""What Sentral's relay does to calls, as the phones hear it: music on hold, a feature code's
prompt, music for a caller waiting in a queue, strangers' packets kept out, dead media hung up,
and every relay port free again once the calls are over.

Each test starts the real server with a relay port block of its own and drives pjsua2 softphones
that play tones and record what they hear. "Music" here is what a recording holds when it is
loud in most quarter-second windows and the other phone's tone is not in it; the tones the
phones play (1800 and 2400 Hz) lie above every note of the hold music (which stays below about
1100 Hz), so a tone that leaks through is told from the music at once.
"""

from __future__ import annotations

import math
import secrets
import socket
import struct
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sentral.media import g711
from sentral.media.rtp import RtpHeader, build_rtp
from tests.system.audio import write_tone
from tests.system.peers import LOOPBACK, Softphone, SoftphoneError, free_port, wait_until
from tests.system.server import SentralServer, sentral_command
from tests.system.test_call_media import (
    amplitude,
    assert_anchored,
    assert_hears,
    media_address,
    sdps,
    start_media_clinic,
    udp_free,
)
from tests.system.test_calls import dial, phone_for, records, talking
from tests.system.test_metrics import scrape

A_TONE = 1800.0
B_TONE = 2400.0
STRANGER_TONE = 600.0
LISTEN_SECONDS = 3.0


def windows(path: Path) -> tuple[int, list[tuple[int, ...]]]:
    """The sample rate of a recording and its quarter-second windows of samples."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2), f"{path} is not 16-bit mono"
        rate = wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    size = rate // 4
    return rate, [samples[i : i + size] for i in range(0, len(samples) - size + 1, size)]


def rms(window: tuple[int, ...]) -> float:
    return math.sqrt(sum(v * v for v in window) / len(window))


def assert_music(path: Path, who: str, absent: tuple[float, ...]) -> None:
    """The recording is loud in most windows and none of the ``absent`` tones is in it."""
    rate, parts = windows(path)
    assert len(parts) >= 4, f"{who}: {path} holds only {len(parts) / 4:.2f}s of audio"
    loud = [rms(w) for w in parts]
    leaked = [{hz: round(amplitude(w, hz, rate)) for hz in absent} for w in parts]
    assert sum(level > 300 for level in loud) >= 0.75 * len(parts), (
        f"{who} heard near silence: window levels {[round(v) for v in loud]}"
    )
    assert all(a < 500 for row in leaked for a in row.values()), f"{who} heard a phone's tone: {leaked}"


def assert_announced(path: Path) -> None:
    """The recording holds the position prompt (its tones in order: prompt, digit 1, prompt) and
    music after it."""
    rate, parts = windows(path)
    table = [{hz: amplitude(w, hz, rate) for hz in (PROMPT_TONE, DIGIT_1_TONE)} for w in parts]
    prompt = [i for i, row in enumerate(table) if row[PROMPT_TONE] > 1000]
    digit = [i for i, row in enumerate(table) if row[DIGIT_1_TONE] > 1000]
    summary = [{hz: round(a) for hz, a in row.items()} for row in table]
    assert prompt and digit, f"no position prompt heard: {summary}"
    assert min(prompt) < min(digit) < max(prompt), f"not 'number 1 in the queue': {summary}"
    after = parts[max(prompt) + 1 :]
    assert sum(rms(w) > 300 for w in after) >= 2, (
        f"no music after the prompt: {[round(rms(w)) for w in after]}"
    )


def record(phone: Softphone, call: str, heard: Path, seconds: float) -> Path:
    phone.record(call, heard)
    time.sleep(seconds)
    assert phone.stop_media(call) == [str(heard)]
    return heard


@pytest.fixture
def tones(tmp_path: Path) -> dict[str, Path]:
    return {
        "a": write_tone(tmp_path / "a.wav", A_TONE),
        "b": write_tone(tmp_path / "b.wav", B_TONE),
    }


# The clinic's own recordings of the queue position prompts: tones, so that a recording shows which
# prompt played when ("you are number" and "in the queue" high, the digit 1 lower).
PROMPT_TONE = 2600.0
DIGIT_1_TONE = 2000.0


@pytest.fixture
def clinic(tmp_path: Path, sounds: Path) -> Iterator[SentralServer]:
    own = tmp_path / "clinic-sounds" / "nb"
    own.mkdir(parents=True)
    for name, hz in (
        ("you_are_number", PROMPT_TONE),
        ("in_the_queue", PROMPT_TONE),
        ("digit_1", DIGIT_1_TONE),
    ):
        write_tone(own / f"{name}.wav", hz, seconds=0.5)
    server, _ = start_media_clinic(
        tmp_path, sounds, "--no-answer-timeout", "20", "--clinic-sounds", str(own.parent)
    )
    try:
        yield server
    finally:
        server.stop()


def test_the_held_phone_hears_music_until_the_call_is_resumed(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tones: dict[str, Path], tmp_path: Path
) -> None:
    alice, a_call, bob, b_call = talking(clinic, softphone_factory)
    alice.hold(a_call)
    alice.wait_event("media_state", call=a_call, status="local_hold")
    bob.wait_event("media_state", call=b_call, status="remote_hold")
    # Alice keeps playing her tone while she holds: Bob must hear music, not her.
    alice.play(a_call, tones["a"], loop=True)
    held = record(bob, b_call, tmp_path / "held.wav", LISTEN_SECONDS)
    alice.stop_media(a_call)
    assert_music(held, "Bob on hold", (A_TONE, B_TONE))

    alice.unhold(a_call)
    alice.wait_event("media_state", call=a_call, status="active")
    bob.wait_event("media_state", call=b_call, status="active")
    alice.play(a_call, tones["a"], loop=True)
    bob.play(b_call, tones["b"], loop=True)
    a_heard, b_heard = tmp_path / "a-after.wav", tmp_path / "b-after.wav"
    alice.record(a_call, a_heard)
    bob.record(b_call, b_heard)
    time.sleep(LISTEN_SECONDS)
    assert alice.stop_media(a_call) == [str(a_heard)]
    assert bob.stop_media(b_call) == [str(b_heard)]
    assert_hears(b_heard, "Bob after the hold", A_TONE, B_TONE)
    assert_hears(a_heard, "Alice after the hold", B_TONE, A_TONE)
    alice.hangup(a_call)
    bob.wait_call_state(b_call, "DISCONNECTED")


def test_a_feature_code_call_hears_its_prompt_and_sentral_hangs_up(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    clinic.cli("function", "add", "reception", "--number", "600", "--member", "1001")
    time.sleep(0.8)
    phone = phone_for(softphone_factory, clinic, "1001")
    code = phone.call("1001", dial(clinic, "*45"))
    phone.wait_call_state(code, "CONFIRMED")
    phone.wait_event("media_state", call=code, status="active")
    heard = tmp_path / "prompt.wav"
    phone.record(code, heard)
    ended = phone.wait_call_state(code, "DISCONNECTED", timeout=10)  # nobody hangs up but Sentral
    phone.wait_event("record_done", call=code)
    _, parts = windows(heard)
    levels = [round(rms(w)) for w in parts]
    assert sum(level > 500 for level in levels) >= 3, f"the prompt was not heard: {levels}"
    [row] = records(clinic, 1)
    assert row["hangup_by"] == "system" and row["disposition"] == "answered", row
    assert row["hangup_reason"].startswith("logged in"), row
    # It lasted as long as the prompt ("Du er logget inn."), not a fixed second.
    assert row["ended_at_epoch"] - row["answered_at_epoch"] >= 1.5, (row, ended)
    shown = clinic.cli_json("function", "show", "reception")
    assert [m["logged_in"] for m in shown["members"]] == [True], shown


def test_a_queued_caller_hears_music_then_is_connected_on_the_same_relay_port(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], tones: dict[str, Path], tmp_path: Path
) -> None:
    clinic.cli(
        "function", "add", "reception", "--number", "600", "--member", "1003", "--announce-position", "10"
    )
    clinic.cli("login", "1003", "reception")
    time.sleep(0.8)
    reception = phone_for(softphone_factory, clinic, "1003")
    other = phone_for(softphone_factory, clinic, "1002")
    caller = phone_for(softphone_factory, clinic, "1001")
    busy = other.call("1002", dial(clinic, "600"))
    first = reception.wait_incoming("1003")["call"]
    reception.answer(first)
    other.wait_call_state(busy, "CONFIRMED")

    waiting = caller.call("1001", dial(clinic, "600"))
    assert caller.wait_call_state(waiting, "EARLY")["code"] == 183
    caller.wait_event("media_state", call=waiting, status="active")
    music = record(caller, waiting, tmp_path / "queue.wav", LISTEN_SECONDS)
    assert_music(music, "the waiting caller", (A_TONE, B_TONE))
    assert len(reception.events("incoming_call", account="1003")) == 1  # nobody rang for it yet
    # About four seconds into the wait: "you are number 1 in the queue", then the music again.
    announced = record(caller, waiting, tmp_path / "announced.wav", 4.5)
    assert_announced(announced)

    reception.hangup(first)
    incoming = reception.wait_incoming("1003")
    assert "1001" in incoming["remote_uri"]
    reception.answer(incoming["call"])
    caller.wait_call_state(waiting, "CONFIRMED")
    reception.wait_event("media_state", call=incoming["call"], status="active")
    reception.play(incoming["call"], tones["b"], loop=True)
    caller.play(waiting, tones["a"], loop=True)
    heard = record(caller, waiting, tmp_path / "connected.wav", LISTEN_SECONDS)
    assert_hears(heard, "the caller once connected", B_TONE, A_TONE)
    caller.hangup(waiting)
    reception.wait_call_state(incoming["call"], "DISCONNECTED")
    # The caller's relay port was the same from the music to the conversation.
    caller.close()
    told = {media_address(sdp) for sdp in sdps(caller, "RX")}
    assert len(told) == 1, told


def test_a_stranger_spraying_the_relay_ports_is_never_heard(
    tmp_path: Path, sounds: Path, softphone_factory: Callable[..., Softphone], tones: dict[str, Path]
) -> None:
    server, (first, last) = start_media_clinic(tmp_path, sounds)
    try:
        alice, a_call, bob, b_call = talking(server, softphone_factory)
        alice.play(a_call, tones["a"], loop=True)
        bob.play(b_call, tones["b"], loop=True)
        time.sleep(0.5)  # the relay has latched on to both phones by now
        heard = tmp_path / "b-heard.wav"
        bob.record(b_call, heard)
        # A loud 600 Hz tone, in proper RTP, to every RTP and RTCP port of the relay, for 3 s.
        pcm = struct.pack(
            "<160h", *(round(12000 * math.sin(2 * math.pi * STRANGER_TONE * n / 8000)) for n in range(160))
        )
        payload = g711.encode(pcm, g711.PCMU)
        ssrc = secrets.randbits(32)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind((LOOPBACK, 0))
            for seq in range(150):
                packet = build_rtp(RtpHeader(0, seq, 160 * seq, ssrc), payload)
                for port in range(first, last + 1):
                    stranger.sendto(packet, (LOOPBACK, port))
                time.sleep(0.02)
        assert bob.stop_media(b_call) == [str(heard)]
        assert_hears(heard, "Bob while a stranger sprays the relay", A_TONE, STRANGER_TONE)
        rate, parts = windows(heard)
        assert all(amplitude(w, STRANGER_TONE, rate) < 300 for w in parts)
        alice.hangup(a_call)
        bob.wait_call_state(b_call, "DISCONNECTED")
    finally:
        server.stop()


def test_a_relay_on_every_address_tells_each_phone_the_address_it_reaches(
    tmp_path: Path, sounds: Path, softphone_factory: Callable[..., Softphone], tones: dict[str, Path]
) -> None:
    server, ports = start_media_clinic(tmp_path, sounds, "--media-address", "0.0.0.0")
    try:
        alice, a_call, bob, b_call = talking(server, softphone_factory)
        alice.play(a_call, tones["a"], loop=True)
        bob.play(b_call, tones["b"], loop=True)
        heard = record(bob, b_call, tmp_path / "b-heard.wav", LISTEN_SECONDS)
        assert_hears(heard, "Bob through a wildcard relay", A_TONE, B_TONE)
        alice.hangup(a_call)
        bob.wait_call_state(b_call, "DISCONNECTED")
        alice.close()
        bob.close()
        assert_anchored(alice, bob, ports)  # 127.0.0.1, never 0.0.0.0
        assert_anchored(bob, alice, ports)
    finally:
        server.stop()


def test_a_call_the_relay_has_no_ports_for_is_refused_with_503(
    tmp_path: Path, sounds: Path, softphone_factory: Callable[..., Softphone]
) -> None:
    server, _ = start_media_clinic(tmp_path, sounds, size=4)  # two port pairs: one call
    try:
        alice, a_call, bob, b_call = talking(server, softphone_factory)
        carol = phone_for(softphone_factory, server, "1003")
        refused = carol.call("1003", dial(server, "1002"))
        assert carol.wait_call_state(refused, "DISCONNECTED")["code"] == 503
        assert len(bob.events("incoming_call")) == 1  # nobody rang for it
        alice.hangup(a_call)
        bob.wait_call_state(b_call, "DISCONNECTED")
        # The ports are back: the next call goes through.
        again = carol.call("1003", dial(server, "1002"))
        bob.answer(bob.wait_incoming("1002")["call"])
        carol.wait_call_state(again, "CONFIRMED")
        carol.hangup(again)
        rows = records(server, 3)
        assert sorted(row["status_to_caller"] for row in rows) == [200, 200, 503], rows
    finally:
        server.stop()


def hold_back(phone: Softphone, call: str, within: float = 5.0) -> None:
    """Put ``call`` on hold from a phone that is held itself: pjsua refuses while the other side's
    re-INVITE is still settling on its end, so try again for a while."""
    deadline = time.monotonic() + within
    while True:
        try:
            phone.hold(call)
            return
        except SoftphoneError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_call_whose_phones_send_nothing_is_hung_up_for_dead_media(
    tmp_path: Path, sounds: Path, softphone_factory: Callable[..., Softphone]
) -> None:
    server, _ = start_media_clinic(tmp_path, sounds, "--dead-media", "2", "--dead-media-on-hold", "4")
    try:
        alice, a_call, bob, b_call = talking(server, softphone_factory)
        # Each holds the other: both streams end up inactive and no phone sends RTP.
        alice.hold(a_call)
        alice.wait_event("media_state", call=a_call, status="local_hold")
        bob.wait_event("media_state", call=b_call, status="remote_hold")
        hold_back(bob, b_call)
        bob.wait_event("media_state", call=b_call, status="local_hold")
        silent_since = time.monotonic()
        ended = alice.wait_call_state(a_call, "DISCONNECTED", timeout=20)
        bob.wait_call_state(b_call, "DISCONNECTED", timeout=5)
        waited = time.monotonic() - silent_since
        # On hold, the longer limit applies (4 s here, not 2), checked every second or so.
        assert 3.0 <= waited <= 9.0, (waited, ended)
        [row] = records(server, 1)
        assert row["hangup_by"] == "system" and row["hangup_reason"] == "no media", row
        assert row["disposition"] == "answered"
    finally:
        server.stop()


def test_no_relay_port_is_held_for_a_call_once_the_calls_are_over(
    tmp_path: Path, sounds: Path, softphone_factory: Callable[..., Softphone]
) -> None:
    """Each port is free again, or rests bound for a later call as the relay reports."""
    metrics = f"{LOOPBACK}:{free_port()}"
    server, (first, last) = start_media_clinic(
        tmp_path, sounds, "--no-answer-timeout", "2", "--metrics", metrics
    )
    try:
        alice = phone_for(softphone_factory, server, "1001")
        bob = phone_for(softphone_factory, server, "1002")
        desk = phone_for(softphone_factory, server, "1002", name="desk")  # forked: one leg loses

        # Answered on one phone (the other fork is cancelled), then hung up with BYE.
        out = alice.call("1001", dial(server, "1002"))
        on_bob = bob.wait_incoming("1002")["call"]
        desk.wait_incoming("1002")
        bob.answer(on_bob)
        alice.wait_call_state(out, "CONFIRMED")
        bob.wait_event("media_state", call=on_bob, status="active")
        time.sleep(0.5)
        bob.hangup(on_bob)
        alice.wait_call_state(out, "DISCONNECTED")
        # Rejected; cancelled by the caller; not answered before the no-answer timeout.
        out = alice.call("1001", dial(server, "1002"))
        bob.hangup(bob.wait_incoming("1002")["call"], code=486)
        alice.wait_call_state(out, "DISCONNECTED")
        out = alice.call("1001", dial(server, "1002"))
        alice.wait_call_state(out, "EARLY")
        alice.hangup(out)
        alice.wait_call_state(out, "DISCONNECTED")
        out = alice.call("1001", dial(server, "1002"))
        assert alice.wait_call_state(out, "DISCONNECTED", timeout=8)["code"] == 480

        records(server, 4)
        wait_until(lambda: server.cli_json("calls") == [], 5, "no calls left", interval=0.2)
        # The block was free before the server started (media_range); the server's own check of
        # the range at start-up rests one pair too.
        # Bound: the RTP and RTCP port of each resting pair, and nothing else. Pairs rest a few
        # seconds only, so the ports and the metric are read until a sweep did not come between.
        for _ in range(10):
            held = [port for port in range(first, last + 1) if not udp_free(port)]
            seen = scrape(metrics)
            resting = seen[("sentral_relay_ports_resting", ())]
            if held == [port for port in range(first, last + 1) if not udp_free(port)]:
                break
            time.sleep(0.2)
        assert seen[("sentral_relay_streams", ())] == 0
        assert len(held) == 2 * resting, (
            f"relay ports bound after every call ended: {held}, {resting} resting"
        )
        assert all(port % 2 == 0 and port + 1 in held for port in held[::2]), held
        alice.close()
        used = {media_address(sdp)[1] for sdp in sdps(alice, "RX")}
        assert used and all(first <= port <= last for port in used), used
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (
            ("--sounds", "{empty}"),
            1,
            "sentral: the sounds directory {empty} lacks music, done_tone, ringback, logged_in",
        ),
        (("--media-ports", "20000-10000"), 2, "--media-ports '20000-10000': the ports must run upwards"),
        (("--media-ports", "10001-10001"), 2, "must hold an even port and the one above it"),
        (("--media-address", "pbx.clinic.test"), 2, "--media-address 'pbx.clinic.test': give an IP address"),
        (("--media-address", "192.0.2.55"), 1, "sentral: cannot use --media-address 192.0.2.55: "),
    ],
)
def test_serve_refuses_what_it_cannot_run_with_one_sentence(
    tmp_path: Path, args: tuple[str, ...], code: int, says: str
) -> None:
    empty = tmp_path / "no-sounds"
    empty.mkdir()
    filled = [arg.format(empty=empty) for arg in args]
    command = [
        *sentral_command(),
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        "serve",
        "--listen",
        "udp:127.0.0.1:9",
    ]
    done = subprocess.run([*command, *filled], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == code, done
    assert says.format(empty=empty) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    if "--sounds" in args:
        # Direct media plays nothing and needs no sounds: it gets as far as the (missing) database.
        direct = subprocess.run(
            [*command, *filled, "--direct-media"], capture_output=True, text=True, timeout=30, check=False
        )
        assert "sounds" not in direct.stderr and "database" in direct.stderr, direct.stderr


def test_the_clinics_own_recordings_are_looked_in_before_the_built_sounds(
    tmp_path: Path, sounds: Path
) -> None:
    empty = tmp_path / "no-sounds"
    empty.mkdir()
    command = [
        *sentral_command(), "--db", f"sqlite:///{tmp_path / 'x.db'}", "serve", "--listen", "udp:127.0.0.1:9",
        "--sounds", str(empty),
    ]  # fmt: skip
    # Every sound the server needs is among the clinic's own: it gets as far as the (missing) database.
    done = subprocess.run(
        [*command, "--clinic-sounds", str(sounds)], capture_output=True, text=True, timeout=30
    )
    assert "lacks" not in done.stderr and "database" in done.stderr, done.stderr
    missing = subprocess.run(
        [*command, "--clinic-sounds", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=30
    )
    assert (
        missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )

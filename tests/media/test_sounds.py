"""Sounds: the synthesised hold music, prompts built with espeak-ng and sox, and the library's
lookup order (a clinic's own files first, the language before language-neutral)."""

from __future__ import annotations

import itertools
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sentral.media.sounds import DONE_TONE, PROMPTS, RINGBACK, SoundLibrary, digits, missing, synthesize_music
from sentral.media.wav import SoundError, read_wav, write_wav

ROOT = Path(__file__).resolve().parents[2]


def samples(pcm: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def rms(values: tuple[int, ...]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))


def build(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentral.media.sounds", "build", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_music_loops_without_a_seam_and_stays_in_the_telephone_band() -> None:
    music = samples(synthesize_music(seconds_per_chord=1.0, cycles=1))
    assert len(music) == 4 * 8000
    assert max(abs(v) for v in music) == 9000  # normalised, far from clipping
    assert rms(music) > 1000  # music, not near-silence
    # Across the loop point the waveform moves no more than it does anywhere else.
    steps = [abs(b - a) for a, b in itertools.pairwise(music)]
    assert abs(music[0] - music[-1]) <= max(steps)
    # A first difference scales a tone of f Hz by 2 sin(pi f / 8000): a ratio above that of
    # 300 Hz means the music's power sits where the telephone band is, not below it.
    assert rms(tuple(steps)) / rms(music) > 2 * math.sin(math.pi * 300 / 8000)


def test_library_prefers_the_clinics_file_and_the_language(tmp_path: Path) -> None:
    clinic, built = tmp_path / "clinic", tmp_path / "built"
    for directory in (clinic, built / "nb", built / "en"):
        directory.mkdir(parents=True)
    write_wav(built / "nb" / "please_hold.wav", b"\x01\x00" * 80)
    write_wav(built / "en" / "please_hold.wav", b"\x02\x00" * 80)
    write_wav(built / "music.wav", b"\x03\x00" * 80)
    library = SoundLibrary([clinic, built])
    assert library.path("please_hold", "nb") == built / "nb" / "please_hold.wav"
    assert library.pcm("please_hold", "en") == b"\x02\x00" * 80
    assert library.path("music", "nb") == built / "music.wav"  # language-neutral fallback
    # The clinic drops in its own recording of the same name: it wins from then on.
    write_wav(clinic / "music.wav", b"\x04\x00" * 80)
    assert library.path("music") == clinic / "music.wav"
    library.forget()
    assert library.pcm("music") == b"\x04\x00" * 80
    assert library.sequence(["music", "music"], gap=0.01) == b"\x04\x00" * 80 + bytes(160) + b"\x04\x00" * 80


def test_library_errors_say_what_to_do(tmp_path: Path) -> None:
    library = SoundLibrary([tmp_path])
    with pytest.raises(SoundError, match=r"no sound 'please_hold' in language 'sv' in .*sounds build"):
        library.pcm("please_hold", "sv")
    with pytest.raises(SoundError, match="may hold only"):
        library.path("../etc/passwd")
    with pytest.raises(SoundError, match="language tag"):
        library.path("music", "../x")


def test_digits_name_the_digit_prompts() -> None:
    assert digits(307) == ["digit_3", "digit_0", "digit_7"]
    assert all(name in PROMPTS for name in digits("0123456789"))
    with pytest.raises(ValueError, match="not a number"):
        digits("3a")


def test_build_writes_music_and_spoken_prompts(tmp_path: Path) -> None:
    done = build(str(tmp_path), "--prompt", "please_hold", "--prompt", "digit_7")
    assert done.returncode == 0, done.stderr
    assert "wrote 7 sound files" in done.stdout
    library = SoundLibrary([tmp_path])
    assert len(library.pcm("music")) == 32 * 8000 * 2
    tone = samples(library.pcm(DONE_TONE))
    assert 0.2 < len(tone) / 8000 < 0.5 and rms(tone) > 3000
    assert abs(tone[0]) < 500 and abs(tone[-1]) < 500  # soft edges: no click at either end
    ring = samples(library.pcm(RINGBACK))
    assert len(ring) == 5 * 8000  # one cycle: 1 s of tone, 4 s of silence
    assert rms(ring[:8000]) > 3000 and max(abs(v) for v in ring[8000:]) == 0
    assert missing(library, ["music", DONE_TONE, "please_hold", "logged_in"], "nb") == ["logged_in"]
    for language in ("nb", "en"):
        speech = samples(library.pcm("please_hold", language))  # read_wav checks 8 kHz 16-bit mono
        assert 0.3 < len(speech) / 8000 < 3.0
        assert rms(speech) > 1000  # spoken, not silent
        # Trimmed: it starts with the word, not with espeak's lead-in silence.
        assert max(abs(v) for v in speech[: 8000 // 10]) > 1000
    assert read_wav(tmp_path / "nb" / "digit_7.wav") != read_wav(tmp_path / "en" / "digit_7.wav")


def test_build_errors_are_one_sentence_and_exit_1(tmp_path: Path) -> None:
    done = build(str(tmp_path), "--prompt", "no_such_prompt", "--no-music")
    assert done.returncode == 1
    assert done.stderr.startswith("error: unknown prompt(s): no_such_prompt")
    assert "Traceback" not in done.stderr
    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    done = build(str(tmp_path), "--prompt", "please_hold", "--no-music", env=env)
    assert done.returncode == 1
    assert "espeak-ng is not installed" in done.stderr
    assert "Traceback" not in done.stderr

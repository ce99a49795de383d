"""Music on hold and spoken prompts: made at build time, looked up by language and name.

Theory of operation. Nothing recorded by someone else ships with Sentral, so nothing carries a
licence doubt: the hold music is synthesised here in pure Python (a slow I-vi-IV-V chord
progression of soft sine pads with a plucked arpeggio, voiced inside the telephone band, 32
seconds that loop without a seam), so is a short rising two-note tone that confirms something
was done where no spoken prompt fits, and so is the ringing tone a member of staff hears while a
call Sentral placed for them rings (425 Hz, one second in five); the prompts are spoken by
espeak-ng and converted by sox to 8 kHz 16-bit mono. ``python -m sentral.media.sounds build DIR``
writes them:

    DIR/music.wav
    DIR/done_tone.wav
    DIR/ringback.wav
    DIR/<language>/<prompt>.wav      e.g. DIR/nb/please_hold.wav, DIR/en/digit_7.wav

Prompts are short pieces that are played one after another ("you_are_number", "digit_3",
"in_the_queue"), each trimmed of the silence espeak leaves around words.

``SoundLibrary`` finds a sound in a list of directories, first match wins: a clinic puts its own
recording of the same name in a directory listed before the built one to replace it. Inside each
directory the language's subdirectory is tried before the directory itself, where
language-neutral sounds such as the music live. Files are read once and kept. The server
refuses to start when a sound it needs (``REQUIRED``) is missing (``missing``), rather than play
silence to a caller later.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from sentral.media.wav import RATE, SoundError, read_wav, write_wav

MUSIC = "music"
DONE_TONE = "done_tone"
RINGBACK = "ringback"  # the ringing tone a caller hears while a call Sentral placed rings
LANGUAGES = ("nb", "en")
_DIGIT_WORDS = {
    "nb": ("null", "én", "to", "tre", "fire", "fem", "seks", "sju", "åtte", "ni"),
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
}
# What each prompt says, per language. Pieces that are joined at play time are kept short.
PROMPTS: dict[str, dict[str, str]] = {
    "you_are_number": {"nb": "Du er nummer", "en": "You are number"},
    "in_the_queue": {"nb": "i køen", "en": "in the queue"},
    **{f"digit_{d}": {lang: words[d] for lang, words in _DIGIT_WORDS.items()} for d in range(10)},
    "call_parked_on": {"nb": "Samtalen er parkert på", "en": "The call is parked on"},
    "please_hold": {"nb": "Vennligst vent.", "en": "Please hold."},
    "enter_national_id": {
        "nb": "Tast inn fødselsnummeret ditt, og avslutt med firkant.",
        "en": "Please key in your national identity number, followed by hash.",
    },
    "national_id_invalid": {"nb": "Nummeret er ikke gyldig.", "en": "That number is not valid."},
    "logged_in": {"nb": "Du er logget inn.", "en": "You are logged in."},
    "logged_out": {"nb": "Du er logget ut.", "en": "You are logged out."},
    "number_unavailable": {"nb": "Nummeret er ikke tilgjengelig.", "en": "The number is not available."},
    "forwarding_on": {"nb": "Viderekobling er på.", "en": "Call forwarding is on."},
    "forwarding_off": {"nb": "Viderekobling er av.", "en": "Call forwarding is off."},
    "country_closed": {
        "nb": "Samtaler til dette landet er ikke åpne fra denne klinikken.",
        "en": "Calls to this country are not open from this clinic.",
    },
    "not_allowed_out": {"nb": "Du har ikke lov til å ringe dette nummeret.", "en": "You are not allowed to make this call."},
    "clinic_closed": {
        "nb": "Klinikken er stengt. Vennligst ring igjen i åpningstiden.",
        "en": "The clinic is closed. Please call again during opening hours.",
    },
    "outside_cap": {
        "nb": "For mange samtaler til utlandet pågår. Prøv igjen senere.",
        "en": "Too many calls abroad are in progress. Please try again later.",
    },
}
# What the server plays: music on hold and in queues, the feature codes' prompts, and the tone
# for a feature whose outcome no prompt says.
REQUIRED = (
    MUSIC,
    DONE_TONE,
    RINGBACK,
    "logged_in",
    "logged_out",
    "forwarding_on",
    "forwarding_off",
    "country_closed",
    "not_allowed_out",
    "clinic_closed",
    "outside_cap",
)
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})?\Z")


def _check_name(name: str) -> None:
    # Names become file names: nothing that could climb out of the directory.
    if not _NAME_RE.match(name):
        raise SoundError(f"sound name {name!r} may hold only a-z, 0-9, '_' and '-'")


def digits(number: int | str) -> list[str]:
    """The prompt names that say ``number`` digit by digit ("31" -> digit_3, digit_1)."""
    text = str(number)
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{number!r} is not a number to read out")
    return [f"digit_{d}" for d in text]


class SoundLibrary:
    """Sounds found in ``dirs`` by language and name; the first directory that has one wins."""

    def __init__(self, dirs: Iterable[str | Path]) -> None:
        self.dirs = tuple(Path(d) for d in dirs)
        self._pcm: dict[tuple[str, str | None], bytes] = {}

    def path(self, name: str, language: str | None = None) -> Path:
        """The file of sound ``name`` in ``language`` (or language-neutral); SoundError if none."""
        _check_name(name)
        if language is not None and not _LANGUAGE_RE.match(language):
            raise SoundError(f"language {language!r} is not a language tag such as 'nb' or 'en'")
        for directory in self.dirs:
            if language is not None:
                candidate = directory / language / f"{name}.wav"
                if candidate.is_file():
                    return candidate
            candidate = directory / f"{name}.wav"
            if candidate.is_file():
                return candidate
        where = ", ".join(str(d) for d in self.dirs) or "no directories"
        lang = f" in language {language!r}" if language else ""
        raise SoundError(
            f"no sound {name!r}{lang} in {where}; build them with: python -m sentral.media.sounds build DIR"
        )

    def pcm(self, name: str, language: str | None = None) -> bytes:
        """The 16-bit 8 kHz PCM of sound ``name`` (read once, then kept)."""
        key = (name, language)
        pcm = self._pcm.get(key)
        if pcm is None:
            pcm = self._pcm[key] = read_wav(self.path(name, language))
        return pcm

    def sequence(self, names: Sequence[str], language: str | None = None, *, gap: float = 0.1) -> bytes:
        """The PCM of several sounds one after another, with ``gap`` seconds of silence between."""
        silence = bytes(2 * round(gap * RATE))
        return silence.join(self.pcm(name, language) for name in names)

    def forget(self) -> None:
        """Drop what was read, so that replaced files are read again."""
        self._pcm.clear()


def missing(library: SoundLibrary, names: Iterable[str], language: str) -> list[str]:
    """The sounds of ``names`` that ``library`` cannot give in ``language`` (or unreadable ones)."""
    absent: list[str] = []
    for name in names:
        try:
            library.pcm(name, language)
        except SoundError:
            absent.append(name)
    return absent


# -- music ---------------------------------------------------------------------------------------

_A4 = 440.0


def _hz(semitones_from_a4: int) -> float:
    return float(_A4 * 2.0 ** (semitones_from_a4 / 12))


# I-vi-IV-V in C, each chord as semitones from A4, voiced between A3 (220 Hz) and C5, so that
# nothing important falls below the 300 Hz where the telephone band starts.
_PROGRESSION: tuple[tuple[int, ...], ...] = (
    (-9, -5, -2, 3),  # C: C4 E4 G4 C5
    (-12, -9, -5, 0),  # Am: A3 C4 E4 A4
    (-12, -9, -4, 0),  # F: A3 C4 F4 A4
    (-10, -7, -2, 2),  # G: B3 D4 G4 B4
)
_ARPEGGIO = (0, 1, 2, 3, 2, 1, 2, 3)  # chord-tone order of the eighth notes in each bar


def synthesize_music(seconds_per_chord: float = 4.0, cycles: int = 2, level: float = 9000.0) -> bytes:
    """A calm, seamlessly looping piece of hold music as 16-bit 8 kHz PCM."""
    chords = list(_PROGRESSION) * cycles
    segment = round(seconds_per_chord * RATE)
    total = segment * len(chords)
    out = [0.0] * total
    overlap = round(0.6 * RATE)
    two_pi = 2 * math.pi
    for index, chord in enumerate(chords):
        # The pad: each chord swells in and out with a raised-cosine envelope that overlaps its
        # neighbours, wrapping around the end so that the loop has no seam.
        start = index * segment - overlap
        length = segment + 2 * overlap
        for note in chord:
            step = two_pi * _hz(note) / RATE
            for i in range(length):
                envelope = 0.5 - 0.5 * math.cos(two_pi * i / length)
                out[(start + i) % total] += 0.16 * envelope * math.sin(step * i)
        # The arpeggio: eight soft plucks an octave up, each decaying well before the next.
        pluck_gap = segment // len(_ARPEGGIO)
        for beat, tone in enumerate(_ARPEGGIO):
            frequency = _hz(chord[tone] + 12)
            step = two_pi * frequency / RATE
            begin = index * segment + beat * pluck_gap
            for i in range(round(1.2 * pluck_gap)):
                decay = math.exp(-4.0 * i / pluck_gap) * min(1.0, i / 40)
                out[(begin + i) % total] += 0.22 * decay * math.sin(step * i)
    peak = max(abs(v) for v in out) or 1.0
    scale = level / peak
    return struct.pack(f"<{total}h", *(round(v * scale) for v in out))


def synthesize_tone(
    notes: Sequence[float] = (660.0, 880.0), note: float = 0.15, level: float = 8000.0
) -> bytes:
    """A short rising tone, one sine note after another with soft edges, as 16-bit 8 kHz PCM."""
    length = round(note * RATE)
    edge = round(0.01 * RATE)  # 10 ms ramps, so that no note starts or ends with a click
    out: list[int] = []
    for frequency in notes:
        step = 2 * math.pi * frequency / RATE
        for i in range(length):
            ramp = min(1.0, i / edge, (length - 1 - i) / edge)
            out.append(round(level * ramp * math.sin(step * i)))
    return struct.pack(f"<{len(out)}h", *out)


def synthesize_ringback(
    frequency: float = 425.0, on: float = 1.0, off: float = 4.0, level: float = 6000.0
) -> bytes:
    """One cycle of the ringing tone as 16-bit 8 kHz PCM: ``frequency`` for ``on`` seconds, then
    silence for ``off`` (425 Hz, 1 s in 5: the tone of Norway and most of Europe, ITU-T E.180)."""
    length, edge = round(on * RATE), round(0.005 * RATE)
    step = 2 * math.pi * frequency / RATE
    tone = [
        round(level * min(1.0, i / edge, (length - 1 - i) / edge) * math.sin(step * i)) for i in range(length)
    ]
    return struct.pack(f"<{length}h", *tone) + bytes(2 * round(off * RATE))


# -- prompts -------------------------------------------------------------------------------------


class BuildError(Exception):
    """A sound could not be built (a tool missing or failing)."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"{name} is not installed; install it with: apt-get install espeak-ng sox")
    return path


def speak(text: str, language: str, *, espeak: str | None = None, sox: str | None = None) -> bytes:
    """``text`` spoken in ``language`` by espeak-ng, as 8 kHz 16-bit mono PCM trimmed of silence."""
    espeak = espeak or _tool("espeak-ng")
    sox = sox or _tool("sox")
    with tempfile.TemporaryDirectory(prefix="sentral-sound-") as tmp:
        raw = Path(tmp) / "raw.wav"
        final = Path(tmp) / "final.wav"
        _run([espeak, "-v", language, "-s", "150", "-w", str(raw), text])
        # Resample with sox's band-limited filter, cut the silence espeak leaves at both ends,
        # and leave a short breath so that joined pieces do not run into each other.
        _run(
            [
                sox, str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(final),
                "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse",
                "norm", "-3", "pad", "0.02", "0.05",
            ]
        )  # fmt: skip
        return read_wav(final)


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{Path(command[0]).name} failed: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BuildError(f"{Path(command[0]).name} failed: {detail[-1] if detail else done.returncode}")


def build(
    directory: str | Path,
    languages: Sequence[str] = LANGUAGES,
    names: Sequence[str] | None = None,
    *,
    music: bool = True,
) -> list[Path]:
    """Write the music, the tone and the prompts (all, or ``names``) in ``languages``; the files written."""
    root = Path(directory)
    wanted = list(PROMPTS) if names is None else list(names)
    unknown = [n for n in wanted if n not in PROMPTS]
    if unknown:
        raise BuildError(f"unknown prompt(s): {', '.join(unknown)}; known: {', '.join(PROMPTS)}")
    missing = [lang for lang in languages if lang not in LANGUAGES]
    if missing:
        raise BuildError(
            f"no prompt texts for language(s) {', '.join(missing)}; known: {', '.join(LANGUAGES)}"
        )
    espeak, sox = (_tool("espeak-ng"), _tool("sox")) if wanted and languages else ("", "")
    written: list[Path] = []
    root.mkdir(parents=True, exist_ok=True)
    if music:
        path = root / f"{MUSIC}.wav"
        write_wav(path, synthesize_music())
        written.append(path)
        path = root / f"{DONE_TONE}.wav"
        write_wav(path, synthesize_tone())
        written.append(path)
        path = root / f"{RINGBACK}.wav"
        write_wav(path, synthesize_ringback())
        written.append(path)
    for language in languages:
        (root / language).mkdir(exist_ok=True)
        for name in wanted:
            path = root / language / f"{name}.wav"
            write_wav(path, speak(PROMPTS[name][language], language, espeak=espeak, sox=sox))
            written.append(path)
    return written


@click.group()
def main() -> None:
    """Sentral's sounds: music on hold and prompts."""


@main.command("build")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--language", "languages", multiple=True, help="Only these languages (default: nb and en).")
@click.option("--prompt", "names", multiple=True, help="Only these prompts (default: all).")
@click.option("--no-music", is_flag=True, help="Do not write music.wav and done_tone.wav.")
def build_command(
    directory: Path, languages: tuple[str, ...], names: tuple[str, ...], no_music: bool
) -> None:
    """Write music.wav, done_tone.wav and the prompts (espeak-ng and sox) into DIRECTORY."""
    try:
        written = build(directory, languages or LANGUAGES, names or None, music=not no_music)
    except (BuildError, SoundError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {len(written)} sound files to {directory}")


if __name__ == "__main__":
    main()

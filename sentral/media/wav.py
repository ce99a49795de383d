"""WAV files of telephone audio: 8 kHz, 16-bit, mono PCM, read whole and written whole.

Theory of operation: prompts and music are short, so a file is read into memory once and its
PCM bytes (16-bit little-endian, as WAV stores them) are what the rest of the media layer
handles. Only the one format a G.711 call can play without resampling is accepted; anything
else is refused with a sentence that says what the file is and how to convert it, because a
clinic replacing a prompt with its own recording is the usual way a wrong file arrives.
"""

from __future__ import annotations

import wave
from pathlib import Path

RATE = 8000
SAMPLE_WIDTH = 2
CHANNELS = 1
_CONVERT = "convert it with: sox IN.wav -r 8000 -c 1 -b 16 OUT.wav"


class SoundError(ValueError):
    """A sound file that is missing or not 8 kHz 16-bit mono PCM WAV."""


def read_wav(path: str | Path) -> bytes:
    """The PCM frames of an 8 kHz 16-bit mono WAV file; SoundError for any other file."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            if (channels, width, rate) != (CHANNELS, SAMPLE_WIDTH, RATE):
                raise SoundError(
                    f"{path.name} is {rate} Hz, {8 * width}-bit, {channels} channel(s); "
                    f"Sentral plays 8000 Hz 16-bit mono PCM: {_CONVERT}"
                )
            frames = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise SoundError(f"sound file {path} does not exist") from None
    except IsADirectoryError:
        raise SoundError(f"sound file {path} is a directory") from None
    except (wave.Error, EOFError) as exc:
        raise SoundError(f"{path.name} is not a PCM WAV file ({exc}): {_CONVERT}") from None
    # A truncated data chunk can end mid-sample; drop the odd byte rather than refuse the file.
    return frames[: len(frames) - len(frames) % SAMPLE_WIDTH]


def write_wav(path: str | Path, pcm: bytes) -> None:
    """Write 16-bit little-endian PCM as an 8 kHz mono WAV file."""
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError(f"PCM of {len(pcm)} bytes does not hold whole 16-bit samples")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(RATE)
        wav.writeframes(pcm)


def duration(pcm: bytes) -> float:
    """Seconds of audio in ``pcm``."""
    return len(pcm) / (SAMPLE_WIDTH * RATE)

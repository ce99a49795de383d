"""Test audio: tones that softphones play into calls."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path


def write_tone(path: Path, hz: float, seconds: float = 2.0, rate: int = 8000) -> Path:
    """A 16-bit mono sine WAV; a whole number of periods, so that it loops without a click."""
    frames = b"".join(
        struct.pack("<h", round(12000 * math.sin(2 * math.pi * hz * n / rate)))
        for n in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return path

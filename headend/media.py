"""Media the headend serves to nodes. The ESP32 profile is 16 kHz mono 16-bit PCM WAV."""

from __future__ import annotations

from pathlib import Path

from pydub import AudioSegment
from pydub.generators import Sine

ESP32_RATE = 16000
TEST_TONE_HZ = 1000
TEST_TONE = "test-tone.wav"


def write_test_tone(media_dir: Path, name: str = TEST_TONE, freq: int = TEST_TONE_HZ,
                    seconds: float = 3.0) -> Path:
    """A sine tone at -12 dBFS with short fades, in the ESP32 profile's format."""
    tone: AudioSegment = (
        Sine(freq, sample_rate=ESP32_RATE, bit_depth=16).to_audio_segment(
            duration=int(seconds * 1000), volume=-12.0)
        .set_channels(1).fade_in(20).fade_out(20)
    )
    path = media_dir / name
    tmp = path.with_suffix(".tmp")
    tone.export(tmp, format="wav")
    tmp.replace(path)
    return path

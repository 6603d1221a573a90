"""Checks on the PCM a simulated node's audio output received, and test tones."""

from __future__ import annotations

import numpy as np
from pydub import AudioSegment


def sine(freq: float, duration: int, volume: float = 0.0, sample_rate: int = 44100,
         bit_depth: int = 16) -> AudioSegment:
    """The samples of pydub's Sine(freq, sample_rate, bit_depth).to_audio_segment(duration,
    volume), made with numpy: pydub builds them one by one in Python (2.5 s for 90 s)."""
    peak = 2 ** (bit_depth - 1) - 1
    n = int(sample_rate * (duration / 1000.0))
    wave = np.sin(freq * 2 * np.pi / sample_rate * np.arange(n)) * peak * 10 ** (volume / 20)
    dtype = {16: "<i2", 32: "<i4"}[bit_depth]
    return AudioSegment(data=wave.astype(dtype).tobytes(), sample_width=bit_depth // 8,
                        frame_rate=sample_rate, channels=1)


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def rms_dbfs(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    return float(20 * np.log10(np.sqrt(np.mean(samples**2)) + 1e-12))


class BytesReader:
    """What firmware.wav.read_header reads from (async read(n)), over bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out

"""Media the headend serves to nodes: the node audio profile and a content-addressed store.

The ESP32 node profile is PCM WAV, 16 kHz, 16-bit, mono: stock MicroPython has no MP3 decoder,
so the node streams PCM straight to I2S. That is 256 kbit/s, about 115 MB an hour of 4G data, so
relays and long programmes cost real money on a metered SIM; short local bulletins are what this
profile is for. A Raspberry Pi node can play MP3 at 32 kbit/s (about 14 MB an hour) with a normal
player; that profile is for later.

Media files are named by their content (the first 16 hex digits of the SHA-256), so a node that
already holds a file never fetches it again, and an edited bulletin is a new file, never a
changed one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pydub import AudioSegment
from pydub.generators import Sine


class AudioProfile(NamedTuple):
    rate: int  # samples per second
    bits: int  # per sample
    channels: int

    @property
    def kbit_per_s(self) -> float:
        return self.rate * self.bits * self.channels / 1000

    @property
    def mb_per_hour(self) -> float:
        return self.kbit_per_s * 1000 / 8 * 3600 / 1e6


# The ESP32 profile (see the module docstring): 256 kbit/s, about 115 MB an hour.
NODE_WAV = AudioProfile(rate=16000, bits=16, channels=1)
ESP32_RATE = NODE_WAV.rate

TEST_TONE_HZ = 1000
TEST_TONE = "test-tone.wav"
HASH_CHARS = 16  # 64 bits of SHA-256: no accidental collision among a province's media


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


def wav_for_nodes(segment: AudioSegment, profile: AudioProfile = NODE_WAV) -> bytes:
    """The segment as a plain 44-byte-header PCM WAV in the node profile (resampled, mono)."""
    seg = (segment.set_frame_rate(profile.rate).set_channels(profile.channels)
           .set_sample_width(profile.bits // 8))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(profile.channels)
        w.setsampwidth(profile.bits // 8)
        w.setframerate(profile.rate)
        w.writeframes(seg.raw_data)
    return buf.getvalue()


@dataclass(frozen=True)
class StoredMedia:
    name: str  # <16 hex digits of the SHA-256><suffix>: the name nodes fetch it by
    sha256: str  # full hex digest
    size: int
    path: Path


def store_media(media_dir: Path, data: bytes, suffix: str = ".wav") -> StoredMedia:
    """Store ``data`` under its content name; atomic (temp file + rename) and idempotent.

    A file already there with the right content is left alone; a damaged one is replaced.
    """
    if not suffix.startswith(".") or "/" in suffix or os.sep in suffix:
        raise ValueError(f"bad media suffix: {suffix!r}")
    digest = hashlib.sha256(data).hexdigest()
    name = digest[:HASH_CHARS] + suffix
    path = media_dir / name
    stored = StoredMedia(name=name, sha256=digest, size=len(data), path=path)
    if _has_content(path, len(data), digest):
        return stored
    media_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=media_dir, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the media server may run as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return stored


def _has_content(path: Path, size: int, digest: str) -> bool:
    try:
        if path.stat().st_size != size:
            return False
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest() == digest
    except FileNotFoundError:
        return False


class WavFormatError(ValueError):
    pass


def _wav_chunks(head: bytes, total: int) -> tuple[int, int, int]:
    """(format tag, byte rate, data bytes present) from a WAV file's first bytes."""
    if len(head) < 12 or head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise WavFormatError("not a WAV file")
    pos, tag, byte_rate = 12, 0, 0
    while pos + 8 <= len(head):
        cid = head[pos:pos + 4]
        size = int.from_bytes(head[pos + 4:pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            tag = int.from_bytes(head[body:body + 2], "little")
            byte_rate = int.from_bytes(head[body + 8:body + 12], "little")
        elif cid == b"data":
            if not byte_rate:
                raise WavFormatError("data before fmt")
            return tag, byte_rate, min(size, total - body)
        pos = body + size + (size & 1)
    raise WavFormatError("no data chunk")


def wav_duration_ms(data_or_path: bytes | Path) -> int:
    """Duration of a PCM WAV file from its header (data capped at the bytes actually there)."""
    if isinstance(data_or_path, bytes):
        head, total = data_or_path[:65536], len(data_or_path)
    else:
        with data_or_path.open("rb") as f:
            head = f.read(65536)
        total = data_or_path.stat().st_size
    _, byte_rate, size = _wav_chunks(head, total)
    return size * 1000 // byte_rate


def is_pcm_wav(data: bytes) -> bool:
    """A PCM WAV (format 1), which nodes play as it is."""
    try:
        return _wav_chunks(data[:65536], len(data))[0] == 1
    except WavFormatError:
        return False

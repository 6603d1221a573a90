"""One audio pipeline for every bulletin: an uploaded file, a browser recording or spoken text.

What comes in: an uploaded file (mp3, wav, m4a, ogg, webm/ogg-opus from a browser's
MediaRecorder) or text that ``headend.media.tts`` speaks. What goes out: one file per node profile
(``PROFILES``), stored content-addressed in the media directory by
``headend.media.store.store_media``
only at the very end, so a refusal or a failure leaves nothing half-saved.

**Layers**: ``headend.media.probe`` checks and decodes an upload, ``headend.media.signal``
does the signal work; this module encodes the result once per profile and stores it.

**Profiles** (``PROFILES``), each encoded once from the finished signal by ffmpeg:

| name  | file | format                                  | kbit/s | MB/h | why                     |
| ----- | ---- | --------------------------------------- | ------ | ---- | ----------------------- |
| esp32 | .wav | PCM 16 kHz 16-bit mono, 44-byte header  | 256    | 115  | no MP3 decoder in stock |
|       |      |                                         |        |      | MicroPython: PCM to I2S |
| rpi   | .mp3 | MP3 CBR 32 kbit/s 22.05 kHz mono (LAME, | 32     | 14   | metered 4G; any player  |
|       |      | with its Info tag)                      |        |      | on a Pi plays MP3       |

LAME at 32 kbit/s CBR comes out 0.4-0.5 dB quieter than what it is given (tones and speech,
by ffmpeg's ebur128 and by LAME's own decoder), so the MP3 is encoded with +0.4 dB
(``OutputProfile.makeup_db``) and both nodes play at the target.

**Chime**: see ``headend.media.signal``.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from pydub import AudioSegment

from headend.media.probe import (
    AudioPipelineError,
    AudioRejected,
    Samples,
    check_file,
    decode_upload,
    error_lines,
    ffmpeg_path,
    segment_samples,
)
from headend.media.signal import (
    integrated_lufs,
    make_chime,
    peak_dbfs,
    to_target,
    trim_silence,
)
from headend.media.store import NODE_WAV, StoredMedia, store_media, wav_for_nodes
from headend.media.tts import SpeechEngine, TtsError, default_engine

CHIME_GAP_MS: Final = 300
_ENCODE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class OutputProfile:
    """What one kind of node is sent."""

    name: str  # key of PreparedAudio.files
    suffix: str
    codec: str  # ffmpeg codec name as ffprobe reports it
    rate: int  # Hz
    channels: int
    kbit_per_s: int
    why: str
    makeup_db: float = 0.0  # what the encoder loses in level, given back when encoding

    @property
    def mb_per_hour(self) -> float:
        return self.kbit_per_s * 1000 / 8 * 3600 / 1e6


ESP32 = OutputProfile(
    name="esp32", suffix=".wav", codec="pcm_s16le", rate=NODE_WAV.rate,
    channels=NODE_WAV.channels, kbit_per_s=int(NODE_WAV.kbit_per_s),
    why="stock MicroPython has no MP3 decoder, so the ESP32 streams 16-bit PCM straight to I2S")
RPI = OutputProfile(
    name="rpi", suffix=".mp3", codec="mp3", rate=22050, channels=1, kbit_per_s=32,
    why="a Pi plays MP3 with any player; 32 kbit/s CBR mono speech is ~14 MB an hour on 4G",
    # LAME in CBR mode comes out 0.4-0.5 dB quieter than its input (speech and tones, measured
    # with ffmpeg's ebur128 and with LAME's own decoder), so the Pi would play below the target.
    makeup_db=0.4)
PROFILES: Final[tuple[OutputProfile, ...]] = (ESP32, RPI)


@dataclass(frozen=True)
class PreparedAudio:
    """A bulletin ready for the nodes: one stored file per profile, and what was done."""

    duration_ms: int
    source_lufs: float  # of the (mono) input
    lufs: float  # of the result, chimes included
    peak_dbfs: float  # sample peak of the result
    gain_db: float  # applied to the bulletin (before any limiting)
    limited: bool  # the peak limiter had to act
    trimmed_ms: tuple[int, int]  # silence removed (lead, tail)
    chime: bool
    files: Mapping[str, StoredMedia]  # by profile name ("esp32", "rpi")


# --- Encoding and the pipeline ------------------------------------------------------------

def _run_ffmpeg(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, timeout=_ENCODE_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        why = error_lines(proc.stderr)
        raise AudioPipelineError(f"ffmpeg failed ({proc.returncode}): "
                                 f"{why[-1] if why else ''}")


def _encode(work: Path, rate: int, profile: OutputProfile) -> bytes:
    """One profile's file from the finished signal (mono float32 in the file ``work``)."""
    out = work.with_name(profile.name + profile.suffix)
    cmd = [ffmpeg_path(), "-v", "error", "-nostdin", "-hide_banner",
           "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", str(work),
           "-ar", str(profile.rate), "-ac", str(profile.channels), "-map_metadata", "-1"]
    if profile.makeup_db:
        cmd += ["-af", f"volume={profile.makeup_db}dB"]
    if profile.codec == "pcm_s16le":
        _run_ffmpeg([*cmd, "-c:a", "pcm_s16le", "-f", "s16le", "-y", str(out)])
        segment = AudioSegment(data=out.read_bytes(), sample_width=2, frame_rate=profile.rate,
                               channels=profile.channels)
        return wav_for_nodes(segment)  # the plain 44-byte header the firmware expects
    if profile.codec == "mp3":
        # Into a real file, so the muxer can fill in the Info tag (frame count, encoder delay).
        _run_ffmpeg([*cmd, "-c:a", "libmp3lame", "-b:a", f"{profile.kbit_per_s}k",
                     "-id3v2_version", "0", "-write_id3v1", "0", "-f", "mp3", "-y", str(out)])
        return out.read_bytes()
    raise ValueError(f"no encoder for profile {profile.name}")


def prepare_samples(x: Samples, rate: int, media_dir: Path, *, chime: bool = False
                    ) -> PreparedAudio:
    """The pipeline on decoded mono samples: trim, level, chime, encode, store."""
    x = (x - np.float32(x.mean(dtype=np.float64))).astype(np.float32, copy=False)
    source_lufs = integrated_lufs(x, rate)
    if not math.isfinite(source_lufs):
        raise AudioRejected(
            "Tệp không có tiếng (im lặng hoặc quá nhỏ để nghe). Hãy kiểm tra lại bản ghi.",
            "no sound: everything is below the -70 LUFS gate", "silent")
    start, stop = trim_silence(x, rate, source_lufs)
    y, gain_db, limited = to_target(x[start:stop], rate, source_lufs)
    if chime:
        gap = np.zeros(round(rate * CHIME_GAP_MS / 1000), dtype=np.float32)
        y = np.concatenate((make_chime(rate), gap, y, gap, make_chime(rate, rising=True)))
    with tempfile.TemporaryDirectory(prefix="loaxa-audio-") as tmp, \
            ThreadPoolExecutor(max_workers=len(PROFILES)) as pool:
        work = Path(tmp) / "bulletin.f32"
        y.astype("<f4", copy=False).tofile(work)
        futures = [(p, pool.submit(_encode, work, rate, p)) for p in PROFILES]
        lufs, peak = integrated_lufs(y, rate), peak_dbfs(y)  # while the encoders run
        encoded = {p.name: (f.result(), p.suffix) for p, f in futures}
    files = _store_all(media_dir, encoded)
    return PreparedAudio(
        duration_ms=round(len(y) * 1000 / rate), source_lufs=round(source_lufs, 2),
        lufs=round(lufs, 2), peak_dbfs=round(peak, 2),
        gain_db=round(gain_db, 2), limited=limited,
        trimmed_ms=(round(start * 1000 / rate), round((len(x) - stop) * 1000 / rate)),
        chime=chime, files=files)


def _store_all(media_dir: Path, encoded: Mapping[str, tuple[bytes, str]]
               ) -> dict[str, StoredMedia]:
    """Every profile's file stored, or (on an error such as a full disk) none that is new."""
    files: dict[str, StoredMedia] = {}
    created: list[Path] = []
    before = set(media_dir.iterdir()) if media_dir.exists() else set()
    try:
        for name, (data, suffix) in encoded.items():
            files[name] = store_media(media_dir, data, suffix)
            if files[name].path not in before:
                created.append(files[name].path)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    return files


def prepare(segment: AudioSegment, media_dir: Path, *, chime: bool = False) -> PreparedAudio:
    """A pydub segment (any rate, width, channels) through the pipeline."""
    x, rate = segment_samples(segment)
    return prepare_samples(x, rate, media_dir, chime=chime)


def prepare_upload(path: Path, filename: str, media_dir: Path, *, chime: bool = False
                   ) -> PreparedAudio:
    """An uploaded file: checked, decoded once, prepared and stored. Raises AudioRejected."""
    probe = check_file(path, filename, decode_start=False)  # the full decode follows at once
    x, rate = decode_upload(path, probe)
    return prepare_samples(x, rate, media_dir, chime=chime)


_BILINGUAL = re.compile(r"\s+/\s+")


def prepare_speech(text: str, language: str, media_dir: Path, *,
                   engine: SpeechEngine | None = None, chime: bool = False) -> PreparedAudio:
    """Text spoken by the TTS engine, then the same pipeline. Raises AudioRejected."""
    try:
        speech = (engine or default_engine()).synthesize(text, language)
    except TtsError as e:
        parts = _BILINGUAL.split(str(e), maxsplit=1)
        raise AudioRejected(parts[0], parts[-1], "speech") from e
    return prepare(speech, media_dir, chime=chime)

"""One audio pipeline for every bulletin: an uploaded file, a browser recording or spoken text.

What comes in: an uploaded file (mp3, wav, m4a, ogg, webm/ogg-opus from a browser's
MediaRecorder) or text that ``headend.media.tts`` speaks. What goes out: one file per node profile
(``PROFILES``), stored content-addressed in the media directory by
``headend.media.store.store_media``
only at the very end, so a refusal or a failure leaves nothing half-saved.

**Checking an upload** (``check_upload``), cheapest first: the file name's suffix must be one of
``ALLOWED_SUFFIXES``; the size (from ``stat``, nothing read) at most ``MAX_BYTES``; then ffprobe,
restricted to the demuxers of those formats (``-format_whitelist``, so a playlist renamed .mp3
cannot make ffmpeg open other files) and to local files, must find an audio stream; the
duration the container declares must be at most ``MAX_SECONDS`` (a 2-hour file is refused from
its header, without decoding it); then a truncation check from the file's own structure; and
the first seconds are decoded (``prepare_upload`` skips that step: its one full decode follows at
once and checks more). The suffix only picks what is accepted: the content is what ffmpeg
decodes, so a text file renamed .mp3 is refused.

**Truncation** (a download or a copy that stopped early). Measured with ffmpeg 5.1 on MP3s cut
in half and cut mid-frame: ffmpeg decodes such a file without any error-level message (the
partial last frame is silently dropped), and reports the duration the Xing/Info tag declares
(which ffmpeg's and LAME's encoders both write), so a half file "lasts" 20 s but decodes 10 s.
The rules, each exact rather than a tolerance on a message:

- MP3: walk the frame headers (ID3v2 skipped). A frame whose header promises more bytes than
  the file still holds is a cut mid-frame; fewer whole frames than the Xing/Info tag's frame
  count is a cut (at any point). Junk or an ID3v1/APE tag after the last frame is accepted.
- WAV: fewer bytes than the ``data`` chunk declares (unless it declares "unknown", 0 or ~4 GB).
- Ogg (vorbis, opus): the last page's header or body is incomplete (pages carry their length).
- Every format, when decoding: fewer seconds decoded than the container declared (by more than
  ``TRUNCATION_SLACK_S``; encoder delay and padding differ by ~50 ms), unless ffmpeg says it
  only estimated the duration from the bit rate; and any error-level message from the demuxer
  or decoder ("File ended prematurely" for WebM, "partial file" for MP4/M4A, ...).

An MP3 without a Xing tag (rare: old encoders, stream captures) cut exactly at a frame boundary
is a valid shorter MP3 and is accepted; so is an Ogg cut exactly at a page boundary.

**Decoding once.** ffmpeg decodes the whole file a single time to mono float32 at
``min(source rate, 22050 Hz)`` (the highest rate a profile needs); everything else is numpy on
that array: loudness, trimming, gain and limiting, chimes. Each profile is then encoded once,
both encoders running at the same time.

**Loudness** (``integrated_lufs``): EBU R128 / ITU-R BS.1770-4 integrated loudness of the mono
signal: K-weighting (the BS.1770 high-shelf and high-pass biquads, with coefficients derived for
the actual sample rate as libebur128 does), mean square over 400 ms blocks with 75 % overlap,
an absolute gate at -70 LUFS and a relative gate 10 LU below the absolutely-gated mean. Instead
of running the IIR filters sample by sample, the K-weighted mean square of each 100 ms sub-block
is taken in the frequency domain: one batched real FFT of all sub-blocks (zero-padded to a
2^a 3^b length, which pocketfft does fastest), each bin's power
weighted by the filters' squared magnitude response at that frequency (Parseval). A 400 ms
block's mean square is the mean of its four sub-blocks. Leakage at sub-block edges is the only
approximation; the tests hold the meter within 0.3 LU of ffmpeg's ``ebur128`` filter.

**Level**: gain to ``TARGET_LUFS`` (-23 LUFS, EBU R128). If that gain would push a sample above
``PEAK_CEILING_DBFS`` (-1 dBFS sample peak), a look-ahead limiter pulls those peaks down: the
gain each sample needs, then a sliding minimum over ±10 ms, then a ±10 ms moving average (which
can only stay below the needed gain, so no peak passes: no clipping, no overshoot). Limiting
lowers the loudness a little, so the gain is raised and limited again until the result is
within 0.3 LU of the target (at most four rounds).

**Silence trimming**: leading and trailing 10 ms frames whose RMS is more than
``SILENCE_BELOW_LU`` (30 dB) below the source's integrated loudness, and never above
``SILENCE_FLOOR_DBFS`` (-70 dBFS), are silence (after removing any DC offset); the speech keeps
``TRIM_PADDING_MS`` (150 ms) of it on each side so no syllable is clipped.

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

**Chime** (optional): a three-note bell (G5, E5, C5, falling before the bulletin and rising
after it, about 1.5 s) made in numpy, at the same loudness target, joined by ``CHIME_GAP_MS``.
"""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Final

import numpy as np
import numpy.typing as npt
from pydub import AudioSegment
from pydub.utils import get_prober_name

from headend.media.store import NODE_WAV, StoredMedia, store_media, wav_for_nodes
from headend.media.tts import SpeechEngine, TtsError, default_engine

Samples = npt.NDArray[np.float32]

MAX_BYTES: Final = 50 * 1024 * 1024
MAX_SECONDS: Final = 30 * 60
ALLOWED_SUFFIXES: Final = frozenset({".mp3", ".wav", ".m4a", ".ogg", ".oga", ".opus", ".webm"})
# ffmpeg demuxers for those suffixes; anything else (playlists, concat lists, images) is refused.
DEMUXERS: Final = "mp3,wav,mov,ogg,matroska"

TARGET_LUFS: Final = -23.0
PEAK_CEILING_DBFS: Final = -1.0
LOUDNESS_TOLERANCE_LU: Final = 0.3  # the gain/limit rounds stop within this of the target
SILENCE_BELOW_LU: Final = 30.0
SILENCE_FLOOR_DBFS: Final = -70.0
TRIM_PADDING_MS: Final = 150
CHIME_GAP_MS: Final = 300
TRUNCATION_SLACK_S: Final = 0.5
WORK_RATE_MAX: Final = 22050  # the highest rate any profile needs
LIMITER_MS: Final = 10.0

_PROBE_TIMEOUT_S = 30.0
_DECODE_TIMEOUT_S = 300.0
_ENCODE_TIMEOUT_S = 600.0
_CHECK_DECODE_S = 3  # seconds decoded by check_upload to prove the content is audio


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


class AudioRejected(Exception):
    """Input the pipeline will not take; ``str(e)`` is Vietnamese for the commune officer.

    ``english`` says the same for logs and the API, ``code`` is a stable short name
    (suffix, empty, too_big, not_audio, no_audio, too_long, truncated, damaged, silent, speech).
    """

    def __init__(self, message: str, english: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.english = english
        self.code = code


class AudioPipelineError(RuntimeError):
    """ffmpeg failed on audio the pipeline made itself: a fault here, not in the input."""


@dataclass(frozen=True)
class Probe:
    """What ffprobe says about an accepted upload."""

    filename: str
    size: int  # bytes
    container: str  # ffmpeg's format name, e.g. "mp3", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # of the first audio stream
    sample_rate: int
    channels: int
    duration_s: float | None  # as the container declares it; None if it does not say
    duration_exact: bool  # False when ffmpeg only estimated it from the bit rate


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


# --- Messages ----------------------------------------------------------------------------

def _vi_duration(seconds: float) -> str:
    s = round(seconds)
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    if h:
        return f"{h} giờ {m} phút"
    if m:
        return f"{m} phút {sec} giây" if sec else f"{m} phút"
    return f"{sec} giây"


def _mb(size: int) -> str:
    mb = size / 2**20
    return f"{mb:.0f} MB" if mb >= 100 or mb == int(mb) else f"{mb:.1f} MB".replace(".", ",")


_RETRY_VI = "Hãy lấy lại tệp gốc rồi tải lên lại."


def _not_audio(detail: str) -> AudioRejected:
    return AudioRejected(
        "Tệp này không phải âm thanh (đã thử giải mã nhưng không được). "
        "Hãy chọn tệp mp3, wav, m4a, ogg hoặc ghi âm lại.",
        f"not an audio file: ffmpeg could not decode it ({detail})", "not_audio")


def _truncated(detail: str) -> AudioRejected:
    return AudioRejected(
        "Tệp âm thanh bị cắt dở (hỏng ở cuối), có lẽ tải xuống hoặc sao chép chưa xong. "
        + _RETRY_VI, f"truncated audio file: {detail}", "truncated")


# What ffmpeg 5.1 says when a file stops early: WebM, MP4/M4A, AAC, PCM.
_CUT_MESSAGES = re.compile(r"ended prematurely|partial file|Input buffer exhausted|"
                           r"Invalid PCM packet|truncat", re.IGNORECASE)


def _damaged(errors: list[str], returncode: int) -> AudioRejected:
    """The refusal for a file ffmpeg reports errors on while decoding it."""
    why = errors[0] if errors else f"ffmpeg exit status {returncode}"
    cut = [line for line in errors if _CUT_MESSAGES.search(line)]
    if cut:
        return _truncated(f"ffmpeg: {cut[0]}")
    return AudioRejected("Tệp âm thanh bị hỏng hoặc bị cắt dở (giải mã gặp lỗi). " + _RETRY_VI,
                         f"damaged or truncated audio: {why}", "damaged")


def _too_long(seconds: float) -> AudioRejected:
    return AudioRejected(
        f"Tệp dài {_vi_duration(seconds)}, quá giới hạn {MAX_SECONDS // 60} phút. "
        "Hãy cắt ngắn hoặc chia thành nhiều bản tin.",
        f"too long: {seconds:.0f} s, the limit is {MAX_SECONDS} s", "too_long")


# --- Upload checks -------------------------------------------------------------------------

def _ffmpeg() -> str:
    return str(AudioSegment.converter)


def _ffprobe() -> str:
    return str(get_prober_name())


def _input_args(path: Path) -> list[str]:
    """Input options for an untrusted file: local file only, audio demuxers only."""
    return ["-protocol_whitelist", "file", "-format_whitelist", DEMUXERS,
            "-i", "file:" + str(path.resolve())]


def _error_lines(stderr: bytes) -> list[str]:
    return [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()
            if line.strip()]


def check_upload(path: Path, filename: str) -> Probe:
    """Refuse what is not a whole audio file of at most MAX_BYTES and MAX_SECONDS.

    Cheap checks first; the file is never decoded further than its first seconds here
    (``prepare_upload`` decodes it once, completely, and checks again). Raises AudioRejected.
    """
    return _check(path, filename, decode_start=True)


def _check(path: Path, filename: str, *, decode_start: bool) -> Probe:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        allowed = ", ".join(s[1:] for s in sorted(ALLOWED_SUFFIXES))
        shown = f"“{suffix}”" if suffix else "không có đuôi"
        raise AudioRejected(
            f"Không nhận loại tệp này ({shown}). Chỉ nhận tệp âm thanh: {allowed}.",
            f"file type {suffix or '(none)'!r} not accepted; allowed: {allowed}", "suffix")
    size = path.stat().st_size
    if size == 0:
        raise AudioRejected("Tệp rỗng (0 byte), không có gì để phát. Hãy chọn lại tệp.",
                            "empty file", "empty")
    if size > MAX_BYTES:
        raise AudioRejected(
            f"Tệp {_mb(size)} vượt quá giới hạn {_mb(MAX_BYTES)}. "
            "Hãy cắt ngắn hoặc chia nhỏ bản tin rồi tải lên lại.",
            f"file of {size} bytes is over the {MAX_BYTES}-byte limit", "too_big")
    probe = _ffprobe_file(path, filename, size)
    if probe.duration_s is not None and probe.duration_s > MAX_SECONDS + TRUNCATION_SLACK_S:
        raise _too_long(probe.duration_s)
    problem = _structure_problem(path, probe.container)
    if problem:
        raise _truncated(problem)
    if decode_start:
        _decode_start(path)
    return probe


def _ffprobe_file(path: Path, filename: str, size: int) -> Probe:
    cmd = [_ffprobe(), "-v", "warning", "-hide_banner", *_input_args(path),
           "-show_format", "-show_streams", "-of", "json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise _not_audio("ffprobe timed out") from e
    errors = _error_lines(proc.stderr)
    try:
        info = json.loads(proc.stdout) if proc.returncode == 0 else {}
    except json.JSONDecodeError:
        info = {}
    fmt = info.get("format")
    if not isinstance(fmt, dict):
        raise _not_audio(errors[-1] if errors else f"ffprobe exit status {proc.returncode}")
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise AudioRejected(
            "Tệp không có phần âm thanh (chỉ có hình ảnh hoặc dữ liệu khác). "
            "Hãy chọn tệp âm thanh.", "no audio stream in the file", "no_audio")
    stream = streams[0]
    duration = _float(fmt.get("duration"))
    if duration is None:
        duration = _float(stream.get("duration"))
    estimated = any("Estimating duration from bitrate" in line for line in errors)
    return Probe(filename=filename, size=size, container=str(fmt.get("format_name", "")),
                 codec=str(stream.get("codec_name", "")),
                 sample_rate=int(_float(stream.get("sample_rate")) or 0),
                 channels=int(stream.get("channels") or 0),
                 duration_s=duration, duration_exact=not estimated)


def _float(value: object) -> float | None:
    try:
        f = float(str(value))
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _decode_start(path: Path) -> None:
    """Decode the first seconds: proof that the content is audio ffmpeg can decode."""
    cmd = [_ffmpeg(), "-v", "error", "-nostdin", "-hide_banner", *_input_args(path),
           "-map", "0:a:0", "-t", str(_CHECK_DECODE_S), "-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise _not_audio("decoding timed out") from e
    errors = _error_lines(proc.stderr)
    if proc.returncode != 0 or errors:
        raise _damaged(errors, proc.returncode)


def _structure_problem(path: Path, container: str) -> str | None:
    """Why the file looks cut short, from its own structure; None if it does not."""
    if container == "mp3":
        return _mp3_problem(path.read_bytes())
    if container == "wav":
        with path.open("rb") as f:
            head = f.read(65536)
        return _wav_problem(head, path.stat().st_size)
    if container == "ogg":
        return _ogg_problem(path.read_bytes())
    return None  # Matroska/WebM and MP4/M4A: ffmpeg reports a cut when decoding


# MPEG audio frame headers: bit rates (kbit/s) by (MPEG-1 or not, layer), sample rates by version.
_MP3_KBPS: dict[tuple[bool, int], tuple[int, ...]] = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MP3_SAME_STREAM = 0xFFFE0C00  # sync, version, layer and sample rate: fixed within a stream


def _mp3_frame_length(h: int) -> int | None:
    """Bytes in the MPEG audio frame with header ``h`` (big-endian), None if not a header."""
    if h >> 21 != 0x7FF:
        return None
    version, layer_bits = (h >> 19) & 3, (h >> 17) & 3
    rate_i, br_i, pad = (h >> 10) & 3, (h >> 12) & 15, (h >> 9) & 1
    if version == 1 or layer_bits == 0 or rate_i == 3 or br_i in (0, 15):
        return None  # reserved values, or free format (no length in the header)
    layer, mpeg1 = 4 - layer_bits, version == 3
    rate = _MP3_RATES[version][rate_i]
    kbps = _MP3_KBPS[(mpeg1, layer)][br_i]
    if layer == 1:
        return (12000 * kbps // rate + pad) * 4
    if layer == 3 and not mpeg1:
        return 72000 * kbps // rate + pad
    return 144000 * kbps // rate + pad


def _mp3_problem(data: bytes) -> str | None:
    n, pos = len(data), 0
    while data[pos:pos + 3] == b"ID3" and pos + 10 <= n:  # ID3v2 tag(s) before the audio
        size = (data[pos + 6] & 127) << 21 | (data[pos + 7] & 127) << 14 \
            | (data[pos + 8] & 127) << 7 | (data[pos + 9] & 127)
        pos += 10 + size + (10 if data[pos + 5] & 0x10 else 0)
    # The first header followed by a second one of the same stream (a lone 0xFFE is noise).
    limit = min(n - 4, pos + 65536)
    while pos < limit:
        length = _mp3_frame_length(struct.unpack_from(">I", data, pos)[0])
        nxt = pos + (length or 0)
        if length and (nxt == n or (nxt + 4 <= n and _same_stream(data, pos, nxt))):
            break
        pos = data.find(b"\xff", pos + 1, limit)
        if pos < 0:
            return None  # no MPEG audio frames found: ffmpeg decides
    else:
        return None
    key = struct.unpack_from(">I", data, pos)[0] & _MP3_SAME_STREAM
    xing_frames = _xing_frames(data, pos)
    frames = 0
    while pos + 4 <= n:
        h = struct.unpack_from(">I", data, pos)[0]
        length = _mp3_frame_length(h)
        if length is None or h & _MP3_SAME_STREAM != key:
            break
        if pos + length > n:
            return (f"the last MP3 frame is cut: {n - pos} of its {length} bytes, "
                    f"after {frames} whole frames")
        pos += length
        frames += 1
    rest = data[pos:]
    if 0 < len(rest) < 4 and rest[0] == 0xFF and (len(rest) == 1 or rest[1] & 0xE0 == 0xE0):
        return f"the file ends inside an MP3 frame header, after {frames} whole frames"
    if xing_frames is not None and _clean_end(rest) and frames - 1 < xing_frames:
        return (f"{frames - 1} MP3 frames where the Xing/Info tag declares {xing_frames}")
    return None


def _same_stream(data: bytes, a: int, b: int) -> bool:
    ha, hb = struct.unpack_from(">I", data, a)[0], struct.unpack_from(">I", data, b)[0]
    return _mp3_frame_length(hb) is not None and ha & _MP3_SAME_STREAM == hb & _MP3_SAME_STREAM


def _xing_frames(data: bytes, pos: int) -> int | None:
    """Frames after the first one, as a Xing/Info tag in the first frame declares them."""
    h = struct.unpack_from(">I", data, pos)[0]
    mpeg1, mono = (h >> 19) & 3 == 3, (h >> 6) & 3 == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    tag = pos + 4 + side
    if data[tag:tag + 4] not in (b"Xing", b"Info") or tag + 12 > len(data):
        return None
    flags = struct.unpack_from(">I", data, tag + 4)[0]
    return int(struct.unpack_from(">I", data, tag + 8)[0]) if flags & 1 else None


def _clean_end(rest: bytes) -> bool:
    """Nothing after the last frame but the usual tags: the frame walk reached the end."""
    if rest.startswith(b"TAG") and len(rest) == 128:
        return True
    return not rest or rest.startswith((b"APETAGEX", b"LYRICSBEGIN", b"ID3", b"TAG"))


def _wav_problem(head: bytes, total: int) -> str | None:
    if len(head) < 12 or head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None  # RF64 and friends: ffmpeg decides
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if cid == b"data":
            present = total - (pos + 8)
            if 0 < size < 0x7FFF0000 and present < size:
                return f"{present} bytes of audio where the WAV header declares {size}"
            return None
        pos += 8 + size + (size & 1)
    return None


def _ogg_problem(data: bytes) -> str | None:
    n, pos, pages = len(data), 0, 0
    while pos < n:
        if data[pos:pos + 4] != b"OggS":
            return None  # not a page boundary (junk, or not Ogg framing): ffmpeg decides
        if pos + 27 > n:
            return f"the Ogg page header after {pages} whole pages is cut"
        segments = data[pos + 26]
        if pos + 27 + segments > n:
            return f"the Ogg page header after {pages} whole pages is cut"
        end = pos + 27 + segments + sum(data[pos + 27:pos + 27 + segments])
        if end > n:
            return f"the last Ogg page is cut: {n - pos} of its {end - pos} bytes"
        pos, pages = end, pages + 1
    return None


# --- Decoding -----------------------------------------------------------------------------

def decode_upload(path: Path, probe: Probe) -> tuple[Samples, int]:
    """The whole file decoded once, as mono float32 at min(source rate, 22050 Hz).

    Refuses (AudioRejected) a file that decodes shorter than its container declares, that
    makes ffmpeg report an error, that turns out longer than MAX_SECONDS, or that is empty.
    """
    rate = min(probe.sample_rate or WORK_RATE_MAX, WORK_RATE_MAX)
    with tempfile.TemporaryDirectory(prefix="loaxa-audio-") as tmp:
        out = Path(tmp) / "decoded.f32"  # a file, not a pipe: subprocess pipes are slow here
        cmd = [_ffmpeg(), "-v", "error", "-nostdin", "-hide_banner", *_input_args(path),
               "-map", "0:a:0", "-t", str(MAX_SECONDS + 1), "-ac", "1", "-ar", str(rate),
               "-f", "f32le", "-y", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=_DECODE_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired as e:
            raise _not_audio("decoding timed out") from e
        samples = np.fromfile(out, dtype="<f4") if out.exists() else np.zeros(0, np.float32)
    errors = _error_lines(proc.stderr)
    decoded_s = len(samples) / rate
    if decoded_s > MAX_SECONDS:
        raise _too_long(decoded_s)
    declared = probe.duration_s
    if declared is not None and probe.duration_exact \
            and decoded_s < declared - TRUNCATION_SLACK_S:
        raise _truncated(f"{decoded_s:.2f} s decoded where the file declares {declared:.2f} s")
    if proc.returncode != 0 or errors:
        raise _damaged(errors, proc.returncode)
    if len(samples) == 0:
        raise _not_audio("no audio samples decoded")
    if not np.isfinite(samples).all():
        raise AudioRejected("Tệp âm thanh bị hỏng (giải mã ra dữ liệu sai). " + _RETRY_VI,
                            "decoded samples are not finite", "damaged")
    return samples.astype(np.float32, copy=False), rate


def segment_samples(segment: AudioSegment) -> tuple[Samples, int]:
    """A pydub segment as mono float32 in [-1, 1) at its own rate (channels averaged)."""
    width, channels = int(segment.sample_width), int(segment.channels)
    dtype = {1: np.int8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        segment = segment.set_sample_width(2)
        width, dtype = 2, np.int16
    raw = np.frombuffer(segment.raw_data, dtype=dtype)
    x = raw.astype(np.float32) / np.float32(2 ** (8 * width - 1))
    if channels > 1:
        x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1,
                                                                         dtype=np.float32)
    return x, int(segment.frame_rate)


# --- Loudness (BS.1770-4) -------------------------------------------------------------------

def _fft_len(n: int) -> int:
    """The smallest 2^a * 3^b >= n: zero-padded FFTs of that length are the fastest."""
    best = 1 << max(0, (n - 1).bit_length())
    three = 1
    while three < best:
        two = three
        while two < n:
            two *= 2
        best, three = min(best, two), three * 3
    return best


@lru_cache(maxsize=16)
def _k_weights(n: int, m: int, rate: int) -> npt.NDArray[np.float32]:
    """Per-bin weights for an n-sample block zero-padded to an m-point rfft.

    |K(f)|^2 at each bin, times Parseval's factors: the mean square of the block is
    sum(c_k |X_k|^2) / (m n), with c_k = 2 except at DC and (m even) Nyquist.
    """
    k = math.tan(math.pi * 1681.974450955533 / rate)  # the high shelf (head effects)
    q = 0.7071752369554196
    vh = 10 ** (3.999843853973347 / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = ((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0,
               (vh - vb * k / q + k * k) / a0)
    shelf_a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    k = math.tan(math.pi * 38.13547087602444 / rate)  # the high-pass (RLB)
    q = 0.5003270373238773
    a0 = 1 + k / q + k * k
    hp_b = (1.0, -2.0, 1.0)
    hp_a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    z = np.exp(-1j * 2 * np.pi * np.arange(m // 2 + 1) / m)  # z^-1 at each bin

    def power(b: tuple[float, float, float], a: tuple[float, float, float]
              ) -> npt.NDArray[np.float64]:
        num = b[0] + b[1] * z + b[2] * z * z
        den = a[0] + a[1] * z + a[2] * z * z
        return np.asarray(np.abs(num / den) ** 2, dtype=np.float64)

    w = power(shelf_b, shelf_a) * power(hp_b, hp_a) * 2
    w[0] /= 2
    if m % 2 == 0:
        w[-1] /= 2
    return np.asarray(w / (m * n), dtype=np.float32)


def _subblock_power(x: Samples, rate: int) -> npt.NDArray[np.float64]:
    """K-weighted mean square of each whole 100 ms sub-block."""
    n = max(1, round(rate / 10))
    count = len(x) // n
    out = np.empty(count, dtype=np.float64)
    m = _fft_len(n)
    pairs = np.repeat(_k_weights(n, m, rate), 2)  # one weight for each re and im
    rows = max(1, (1 << 21) // n)  # ~2 M samples per FFT batch
    for i in range(0, count, rows):
        j = min(count, i + rows)
        spec = np.fft.rfft(x[i * n:j * n].reshape(j - i, n), n=m, axis=1)
        parts = spec.astype(np.complex64, copy=False).view(np.float32)  # numpy 2: no copy
        out[i:j] = (parts * parts) @ pairs  # re^2 + im^2, weighted, summed
    return out


def integrated_lufs(x: Samples, rate: int) -> float:
    """EBU R128 integrated loudness (LUFS) of a mono signal; -inf if all of it is gated out."""
    p = _subblock_power(x, rate)
    if len(p) == 0:
        return -math.inf
    if len(p) < 4:  # shorter than one 400 ms block: the mean over what there is
        blocks = np.array([p.mean()])
    else:
        c = np.concatenate(([0.0], np.cumsum(p)))
        blocks = (c[4:] - c[:-4]) / 4
    with np.errstate(divide="ignore"):
        loud = -0.691 + 10 * np.log10(blocks)
    gated = blocks[loud > -70.0]
    if len(gated) == 0:
        return -math.inf
    relative = -0.691 + 10 * math.log10(float(gated.mean())) - 10
    gated = blocks[(loud > -70.0) & (loud > relative)]
    return -0.691 + 10 * math.log10(float(gated.mean()))


def peak_dbfs(x: Samples) -> float:
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


# --- Level, trimming, chime -----------------------------------------------------------------

def _sliding_min(a: Samples, h: int) -> Samples:
    """Minimum over [i-h, i+h] for each i (van Herk / Gil-Werman, ones beyond the ends)."""
    w = 2 * h + 1
    total = -(-(len(a) + 2 * h) // w) * w
    padded = np.ones(total, dtype=np.float32)
    padded[h:h + len(a)] = a
    blocks = padded.reshape(-1, w)
    prefix = np.minimum.accumulate(blocks, axis=1).ravel()
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(suffix[:len(a)], prefix[w - 1:w - 1 + len(a)])


def _moving_mean(a: Samples, h: int) -> Samples:
    """Mean over [i-h, i+h] for each i (ones beyond the ends)."""
    padded = np.concatenate((np.ones(h), a.astype(np.float64), np.ones(h)))
    c = np.concatenate(([0.0], np.cumsum(padded)))
    w = 2 * h + 1
    return np.asarray((c[w:] - c[:-w]) / w, dtype=np.float32)


def limit_peaks(x: Samples, rate: int, ceiling_dbfs: float = PEAK_CEILING_DBFS) -> Samples:
    """x with every sample peak at or below the ceiling, gain changes smoothed over ±10 ms."""
    ceiling = np.float32(10 ** (ceiling_dbfs / 20))
    over = np.abs(x) > ceiling
    if not over.any():
        return x
    h = max(1, round(rate * LIMITER_MS / 1000))
    out = x.copy()
    chunk = 1 << 20
    for start in range(0, len(x), chunk):
        stop = min(len(x), start + chunk)
        lo, hi = max(0, start - 2 * h), min(len(x), stop + 2 * h)
        if not over[lo:hi].any():
            continue
        seg = x[lo:hi]
        need = np.minimum(np.float32(1), ceiling / np.maximum(np.abs(seg), np.float32(1e-9)))
        gain = _moving_mean(_sliding_min(need, h), h)
        out[start:stop] = seg[start - lo:stop - lo] * gain[start - lo:stop - lo]
    np.clip(out, -ceiling, ceiling, out=out)
    return out


def _to_target(x: Samples, rate: int, source_lufs: float) -> tuple[Samples, float, bool]:
    """Gain to TARGET_LUFS, peaks limited; (result, gain in dB, limited)."""
    gain_db = TARGET_LUFS - source_lufs
    first_gain = gain_db
    limited = False
    for _ in range(4):
        y = x * np.float32(10 ** (gain_db / 20))
        if peak_dbfs(y) <= PEAK_CEILING_DBFS:
            return y, first_gain, limited
        y, limited = limit_peaks(y, rate), True
        shortfall = TARGET_LUFS - integrated_lufs(y, rate)
        if abs(shortfall) <= LOUDNESS_TOLERANCE_LU:
            break
        gain_db += shortfall
    return y, first_gain, limited


def trim_silence(x: Samples, rate: int, source_lufs: float) -> tuple[int, int]:
    """(start, stop) sample indices of x without its leading and trailing silence."""
    frame = max(1, rate // 100)
    count = len(x) // frame
    if count == 0:
        return 0, len(x)
    frames = x[:count * frame].reshape(count, frame)
    ms = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame
    threshold_db = max(source_lufs - SILENCE_BELOW_LU, SILENCE_FLOOR_DBFS)
    loud = np.flatnonzero(ms > 10 ** (threshold_db / 10))
    if len(loud) == 0:
        return 0, len(x)
    pad = round(rate * TRIM_PADDING_MS / 1000)
    start = max(0, int(loud[0]) * frame - pad)
    stop = min(len(x), (int(loud[-1]) + 1) * frame + pad)
    if len(x) - stop < frame:  # the partial last frame is not silence we can vouch for
        stop = len(x)
    return start, stop


def make_chime(rate: int, *, rising: bool = False) -> Samples:
    """A ~1.5 s three-note bell (G5 E5 C5, or rising), at TARGET_LUFS."""
    notes = (523.25, 659.26, 783.99) if rising else (783.99, 659.26, 523.25)
    n = round(1.5 * rate)
    t = np.arange(n, dtype=np.float64) / rate
    out = np.zeros(n, dtype=np.float64)
    for i, freq in enumerate(notes):
        onset = 0.42 * i
        tt = t[t >= onset] - onset
        tone = (np.sin(2 * np.pi * freq * tt) + 0.3 * np.sin(2 * np.pi * 2 * freq * tt)
                + 0.1 * np.sin(2 * np.pi * 3 * freq * tt))
        envelope = np.exp(-tt / 0.45) * np.minimum(1.0, tt / 0.004)
        out[n - len(tt):] += tone * envelope
    fade = round(0.1 * rate)
    out[-fade:] *= np.linspace(1.0, 0.0, fade)
    x = out.astype(np.float32)
    x = (x * np.float32(10 ** ((TARGET_LUFS - integrated_lufs(x, rate)) / 20))).astype(np.float32)
    return limit_peaks(x, rate)


# --- Encoding and the pipeline ------------------------------------------------------------

def _run_ffmpeg(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, timeout=_ENCODE_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        why = _error_lines(proc.stderr)
        raise AudioPipelineError(f"ffmpeg failed ({proc.returncode}): "
                                 f"{why[-1] if why else ''}")


def _encode(work: Path, rate: int, profile: OutputProfile) -> bytes:
    """One profile's file from the finished signal (mono float32 in the file ``work``)."""
    out = work.with_name(profile.name + profile.suffix)
    cmd = [_ffmpeg(), "-v", "error", "-nostdin", "-hide_banner",
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
    y, gain_db, limited = _to_target(x[start:stop], rate, source_lufs)
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
    probe = _check(path, filename, decode_start=False)  # the full decode follows at once
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

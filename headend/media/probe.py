"""Probing an upload: is it audio the pipeline takes, whole, and what is in it; then its one
decode to samples (headend/media/pipeline.py runs the whole pipeline).

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
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Final

import numpy as np
import numpy.typing as npt
from pydub import AudioSegment
from pydub.utils import get_prober_name

Samples = npt.NDArray[np.float32]

MAX_BYTES: Final = 50 * 1024 * 1024
MAX_SECONDS: Final = 30 * 60
ALLOWED_SUFFIXES: Final = frozenset({".mp3", ".wav", ".m4a", ".ogg", ".oga", ".opus", ".webm"})
# ffmpeg demuxers for those suffixes; anything else (playlists, concat lists, images) is refused.
DEMUXERS: Final = "mp3,wav,mov,ogg,matroska"
TRUNCATION_SLACK_S: Final = 0.5
WORK_RATE_MAX: Final = 22050  # the highest rate any profile needs

_PROBE_TIMEOUT_S = 30.0
_DECODE_TIMEOUT_S = 300.0
_CHECK_DECODE_S = 3  # seconds decoded by check_upload to prove the content is audio


class AudioRejected(Exception):
    """Input the pipeline will not take; ``str(e)`` is Vietnamese for the commune officer.

    ``english`` says the same for logs and the API, ``code`` is a stable short name
    (suffix, empty, too_big, not_audio, no_audio, too_long, truncated, damaged, silent, speech;
    no_duration from ``audio_duration_ms``).
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

def ffmpeg_path() -> str:
    return str(AudioSegment.converter)


def ffprobe_path() -> str:
    return str(get_prober_name())


def _input_args(path: Path) -> list[str]:
    """Input options for an untrusted file: local file only, audio demuxers only."""
    return ["-protocol_whitelist", "file", "-format_whitelist", DEMUXERS,
            "-i", "file:" + str(path.resolve())]


def error_lines(stderr: bytes) -> list[str]:
    return [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()
            if line.strip()]


def check_upload(path: Path, filename: str) -> Probe:
    """Refuse what is not a whole audio file of at most MAX_BYTES and MAX_SECONDS.

    Cheap checks first; the file is never decoded further than its first seconds here
    (``prepare_upload`` decodes it once, completely, and checks again). Raises AudioRejected.
    """
    return check_file(path, filename, decode_start=True)


def check_file(path: Path, filename: str, *, decode_start: bool) -> Probe:
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
    cmd = [ffprobe_path(), "-v", "warning", "-hide_banner", *_input_args(path),
           "-show_format", "-show_streams", "-of", "json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise _not_audio("ffprobe timed out") from e
    errors = error_lines(proc.stderr)
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


def audio_duration_ms(path: Path) -> int:
    """How long the audio file at `path` sounds, in ms, as its container declares it (ffprobe,
    local file, audio demuxers only): the audio's own length, whatever slot it is put in.
    Probed once per version of the file (path, mtime, size). Raises AudioRejected when it is
    not audio or does not say its length, OSError when it cannot be read."""
    st = path.stat()
    return _duration_ms(str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=512)
def _duration_ms(path: str, mtime_ns: int, size: int) -> int:
    probe = _ffprobe_file(Path(path), PurePath(path).name, size)
    if probe.duration_s is None:
        raise AudioRejected("Không đọc được độ dài của tệp âm thanh.",
                            "the file does not say how long it is", "no_duration")
    return round(probe.duration_s * 1000)


def _float(value: object) -> float | None:
    try:
        f = float(str(value))
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _decode_start(path: Path) -> None:
    """Decode the first seconds: proof that the content is audio ffmpeg can decode."""
    cmd = [ffmpeg_path(), "-v", "error", "-nostdin", "-hide_banner", *_input_args(path),
           "-map", "0:a:0", "-t", str(_CHECK_DECODE_S), "-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        raise _not_audio("decoding timed out") from e
    errors = error_lines(proc.stderr)
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
        cmd = [ffmpeg_path(), "-v", "error", "-nostdin", "-hide_banner", *_input_args(path),
               "-map", "0:a:0", "-t", str(MAX_SECONDS + 1), "-ac", "1", "-ar", str(rate),
               "-f", "f32le", "-y", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=_DECODE_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired as e:
            raise _not_audio("decoding timed out") from e
        samples = np.fromfile(out, dtype="<f4") if out.exists() else np.zeros(0, np.float32)
    errors = error_lines(proc.stderr)
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

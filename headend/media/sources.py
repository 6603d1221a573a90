"""Probing a relay source (VOV1, the provincial station) before its slot.

Relayed streams that die silently are the most common complaint about radio automation, so the
headend listens to each relay source a few minutes before it is due: can it be reached, does it
send audio we can decode, and is that audio more than silence. ``probe`` is a pure function of
the URL; the headend decides what to alarm (headend/planning/publishing.py).

A PCM WAV stream (what ESP32 nodes relay) is measured from its samples directly; anything else
(MP3/AAC, as real stations stream) is decoded with ffmpeg through pydub.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal

from pydub import AudioSegment
from pydub.exceptions import CouldntDecodeError

State = Literal["ok", "silent", "unreachable", "bad"]

SILENCE_DBFS = -50.0  # below this over the whole listen, the source is airing silence
FLOOR_DBFS = -120.0  # digital silence is reported as this (not -inf: it goes into JSON)
MAX_BYTES = 4_000_000  # never read more than this, whatever the stream claims
COMPRESSED_BYTES_PER_S = 48_000  # 384 kbit/s: enough for listen_s of any real MP3/AAC stream
MIN_AUDIO_S = 0.25  # less decoded audio than this cannot be judged
USER_AGENT = "LoaXa-source-probe/1"


@dataclass(frozen=True)
class SourceStatus:
    url: str
    state: State
    detail: str  # short, for an officer: English, then Vietnamese
    level_dbfs: float | None  # RMS level over what was heard; None when nothing was heard
    elapsed_s: float


@dataclass(frozen=True)
class _Pcm:
    rate: int
    bits: int
    channels: int
    data_offset: int  # where the samples start in the bytes read
    data_size: int  # from the header: 0xFFFFFFFF (or 0) for a live stream


class _Stream:
    """What a GET returned before it ended, timed out or had enough."""

    def __init__(self) -> None:
        self.data = b""
        self.ended = False  # the server closed the stream
        self.timed_out = False  # no byte for timeout_s
        self.error: str | None = None


def probe(url: str, timeout_s: float = 5.0, listen_s: float = 2.0) -> SourceStatus:
    """Reach ``url``, listen to about ``listen_s`` seconds of it and judge it.

    Takes at most about ``timeout_s + listen_s`` seconds (plus decoding). Never raises for a
    bad source: the answer is in the returned state.
    """
    t0 = time.monotonic()

    def done(state: State, detail: str, level: float | None = None) -> SourceStatus:
        return SourceStatus(url, state, detail, level, round(time.monotonic() - t0, 3))

    try:
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Icy-MetaData": "0"})
        resp = urllib.request.urlopen(req, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        e.close()
        return done("unreachable", f"HTTP {e.code} {e.reason} (máy chủ trả lỗi {e.code})")
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        return done("unreachable", f"cannot connect: {_reason(e)} (không kết nối được)")
    with resp:
        if resp.status >= 400:  # pragma: no cover - urllib raises HTTPError for these
            return done("unreachable", f"HTTP {resp.status} (máy chủ trả lỗi)")
        stream = _read(resp, t0, timeout_s, listen_s)

    data = stream.data
    if stream.error is not None and not data:
        return done("unreachable", f"stream broke: {stream.error} (luồng bị ngắt)")
    if not data:
        if stream.timed_out:
            return done("unreachable", f"no data within {timeout_s:g} s (không có dữ liệu)")
        return done("unreachable", "stream closed without data (luồng đóng, không có dữ liệu)")
    if data.lstrip()[:7] == b"#EXTM3U":
        return done("bad", "HLS playlist: nodes need a plain HTTP audio stream "
                           "(danh sách HLS, cần luồng HTTP trực tiếp)")

    pcm = _wav_pcm(data)
    try:
        if pcm is not None:
            audio = _pcm_segment(data, pcm)
        elif data[:4] == b"RIFF" and _wav_header_incomplete(data):
            audio = None
        else:
            audio = AudioSegment.from_file(io.BytesIO(data))
    except (CouldntDecodeError, IndexError, ValueError, OSError) as e:
        return done("bad", f"cannot decode the audio: {_reason(e)} (không giải mã được)")
    heard = 0.0 if audio is None else len(audio) / 1000
    if heard < MIN_AUDIO_S:
        if stream.timed_out:
            return done("unreachable", f"stream stalled: {heard:.2f} s of audio in "
                                       f"{timeout_s:g} s (luồng bị treo)")
        if stream.ended or stream.error:
            return done("unreachable", f"stream ended after {heard:.2f} s of audio "
                                       "(luồng kết thúc sớm)")
        return done("bad", f"only {heard:.2f} s of audio decoded (âm thanh không hợp lệ)")
    assert audio is not None
    level = audio.dBFS
    level = FLOOR_DBFS if math.isinf(level) else max(FLOOR_DBFS, round(level, 1))
    if heard < listen_s * 0.9 and (stream.ended or stream.error or stream.timed_out):
        how = "stalled" if stream.timed_out else "ended"
        return done("unreachable", f"stream {how} after {heard:.2f} s of audio "
                                   "(luồng bị ngắt giữa chừng)", level)
    if level < SILENCE_DBFS:
        return done("silent", f"silence: {level:.1f} dBFS over {heard:.1f} s "
                              "(nguồn phát im lặng)", level)
    return done("ok", f"audio at {level:.1f} dBFS over {heard:.1f} s (nguồn phát tốt)", level)


async def probe_async(url: str, timeout_s: float = 5.0, listen_s: float = 2.0) -> SourceStatus:
    """``probe`` in a worker thread, for the headend's event loop."""
    return await asyncio.to_thread(probe, url, timeout_s, listen_s)


def _read(resp: http.client.HTTPResponse, t0: float, timeout_s: float,
          listen_s: float) -> _Stream:
    """Read until there is listen_s of audio, the stream ends, or time runs out."""
    out = _Stream()
    buf = bytearray()
    want = MAX_BYTES
    first_at: float | None = None
    deadline = t0 + timeout_s + listen_s
    while len(buf) < want:
        try:
            chunk = resp.read1(65536)
        except TimeoutError:
            out.timed_out = True
            break
        except (OSError, http.client.HTTPException) as e:
            out.error = _reason(e)
            break
        if not chunk:
            out.ended = True
            break
        now = time.monotonic()
        if first_at is None:
            first_at = now
        buf += chunk
        pcm = _wav_pcm(bytes(buf[:512])) if buf[:4] == b"RIFF" else None
        if pcm is not None:
            # PCM: the exact byte count of listen_s of audio
            block = pcm.channels * pcm.bits // 8
            want = min(MAX_BYTES, pcm.data_offset + int(listen_s * pcm.rate) * block)
        elif len(buf) >= 12 and (buf[:4] != b"RIFF" or buf.find(b"data", 12, 4096) >= 0):
            # compressed: listen for listen_s on the wall clock, or a bounded amount
            want = min(MAX_BYTES, int(COMPRESSED_BYTES_PER_S * listen_s))
            if now - first_at >= listen_s:
                break
        if now >= deadline:
            out.timed_out = True
            break
    out.data = bytes(buf[:want])
    return out


def _wav_pcm(data: bytes) -> _Pcm | None:
    """The format of a PCM WAV header (8/16/24/32-bit integer), None otherwise or if cut short."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if cid == b"data":
            if fmt is None:
                return None
            tag, channels, rate, bits = fmt
            if tag != 1 or bits not in (8, 16, 24, 32) or channels < 1 or rate < 1:
                return None
            return _Pcm(rate, bits, channels, body, size)
        if cid == b"fmt ":
            if body + 16 > len(data):
                return None
            f = data[body:body + 16]
            fmt = (int.from_bytes(f[0:2], "little"), int.from_bytes(f[2:4], "little"),
                   int.from_bytes(f[4:8], "little"), int.from_bytes(f[14:16], "little"))
        pos = body + size + (size & 1)
    return None


def _wav_header_incomplete(data: bytes) -> bool:
    """A RIFF header whose chunks run past the bytes we have (no 'data' seen yet)."""
    return data.find(b"data", 12) < 0


_UNSIGNED_TO_SIGNED = bytes(i ^ 0x80 for i in range(256))


def _pcm_segment(data: bytes, pcm: _Pcm) -> AudioSegment:
    width = pcm.bits // 8
    block = width * pcm.channels
    raw = data[pcm.data_offset:]
    if 0 < pcm.data_size < 0xFFFFFFFF:  # a file, not a live stream: other chunks may follow
        raw = raw[:pcm.data_size]
    raw = raw[:len(raw) // block * block]
    if width == 1:  # 8-bit WAV is unsigned; pydub's raw segments are signed
        raw = raw.translate(_UNSIGNED_TO_SIGNED)
    return AudioSegment(data=raw, sample_width=width, frame_rate=pcm.rate,
                        channels=pcm.channels)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:160]

"""Node media profile and the content-addressed media store."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from pydub import AudioSegment
from support.audio_check import BytesReader, dominant_hz, sine

from firmware import wav
from headend.media.store import (
    NODE_WAV,
    TEST_TONE,
    StoredMedia,
    WavFormatError,
    store_media,
    wav_duration_ms,
    wav_for_nodes,
    write_test_tone,
)


def test_profile_is_documented_esp32_pcm() -> None:
    assert NODE_WAV == (16000, 16, 1)
    assert NODE_WAV.kbit_per_s == 256
    assert 110 < NODE_WAV.mb_per_hour < 120


def test_wav_for_nodes_converts_to_profile() -> None:
    # A stereo 44.1 kHz 32-bit-float-ish source: what an officer's recorder might give.
    src = sine(440, sample_rate=44100, bit_depth=32, duration=1500, volume=-6)
    src = AudioSegment.from_mono_audiosegments(src, src)
    data = wav_for_nodes(src)
    reader = BytesReader(data)
    rate, bits, channels, size = asyncio.run(wav.read_header(reader))
    assert (rate, bits, channels) == tuple(NODE_WAV)
    assert data[:4] == b"RIFF" and len(data) == 44 + size == 44 + 16000 * 2 * 3 // 2
    assert abs(dominant_hz(reader.data, 16000) - 440) < 5
    assert wav_duration_ms(data) == 1500
    back = AudioSegment.from_wav(io.BytesIO(data))
    assert abs(back.dBFS - src.dBFS) < 1


def test_test_tone_still_works(tmp_path: Path) -> None:
    path = write_test_tone(tmp_path, seconds=0.5)
    assert path.name == TEST_TONE and wav_duration_ms(path) == 500
    assert list(tmp_path.iterdir()) == [path]


def test_store_names_by_hash_and_is_idempotent(tmp_path: Path) -> None:
    data = wav_for_nodes(sine(500, duration=200))
    first = store_media(tmp_path / "media", data)
    digest = hashlib.sha256(data).hexdigest()
    assert first == StoredMedia(name=digest[:16] + ".wav", sha256=digest, size=len(data),
                                path=tmp_path / "media" / (digest[:16] + ".wav"))
    assert first.path.read_bytes() == data
    mtime = first.path.stat().st_mtime_ns
    again = store_media(tmp_path / "media", data)
    assert again == first and first.path.stat().st_mtime_ns == mtime  # not rewritten
    other = store_media(tmp_path / "media", b"other", suffix=".mp3")
    assert other.name.endswith(".mp3") and other.name != first.name
    assert sorted(p.name for p in (tmp_path / "media").iterdir()) == sorted(
        [first.name, other.name])
    with pytest.raises(ValueError):
        store_media(tmp_path, b"x", suffix="/../x")


def test_store_repairs_a_damaged_file(tmp_path: Path) -> None:
    stored = store_media(tmp_path, b"abc" * 1000)
    stored.path.write_bytes(b"abc" * 999 + b"abd")  # same size, wrong content
    store_media(tmp_path, b"abc" * 1000)
    assert stored.path.read_bytes() == b"abc" * 1000


def test_store_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store_media(tmp_path, b"payload")
    assert list(tmp_path.iterdir()) == []  # neither a half file nor a temp file left
    monkeypatch.undo()

    # Many writers of the same content at once: every reader sees the whole file or none.
    data = os.urandom(2_000_000)
    results: list[StoredMedia] = []
    threads = [threading.Thread(target=lambda: results.append(store_media(tmp_path, data)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.name for r in results}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [results[0].name]
    assert results[0].path.read_bytes() == data


def test_wav_duration_rejects_non_wav(tmp_path: Path) -> None:
    with pytest.raises(WavFormatError):
        wav_duration_ms(b"ID3\x04 not a wav at all")
    truncated = wav_for_nodes(sine(300, duration=1000))[:44 + 16000]
    assert wav_duration_ms(truncated) == 500  # capped at the data actually there

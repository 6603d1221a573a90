"""Vietnamese text to speech with eSpeak NG (a real subprocess, no mock)."""

from __future__ import annotations

import asyncio
import shutil
import unicodedata
from pathlib import Path

import pytest
from support.audio_check import BytesReader

from firmware import wav
from headend.media.store import NODE_WAV, wav_duration_ms, wav_for_nodes
from headend.media.tts import MAX_CHARS, EspeakNg, SpeechEngine, TtsError, default_engine

SENTENCE = "Xin chào bà con, đây là đài truyền thanh xã."

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (make install adds it)")




@needs_espeak
def test_vietnamese_sentence_is_spoken() -> None:
    engine: SpeechEngine = default_engine()
    assert engine.name == "espeak-ng"
    speech = engine.synthesize(SENTENCE)
    assert 1500 <= len(speech) <= 10_000  # ten syllables at 150 words a minute
    assert speech.dBFS > -35  # speech, not silence
    # Loud parts and pauses: speech, not a steady tone or noise.
    levels = [seg.dBFS for seg in speech[::100] if len(seg) == 100]
    assert max(levels) - min(levels) > 20
    data = wav_for_nodes(speech)
    rate, bits, channels, _ = asyncio.run(wav.read_header(BytesReader(data)))
    assert (rate, bits, channels) == tuple(NODE_WAV)
    assert abs(wav_duration_ms(data) - len(speech)) < 5


@needs_espeak
def test_longer_text_longer_speech_and_speed() -> None:
    short = EspeakNg().synthesize(SENTENCE)
    long = EspeakNg().synthesize(SENTENCE + " " + SENTENCE + " " + SENTENCE)
    assert len(long) > 2.2 * len(short)
    fast = EspeakNg(speed_wpm=300).synthesize(SENTENCE)
    assert len(fast) < 0.75 * len(short)


@needs_espeak
def test_decomposed_text_reads_like_composed() -> None:
    nfd = unicodedata.normalize("NFD", SENTENCE)
    assert nfd != SENTENCE
    engine = EspeakNg()
    assert engine.synthesize(nfd).raw_data == engine.synthesize(SENTENCE).raw_data


@needs_espeak
def test_accent_voices() -> None:
    south = EspeakNg(voice="vi-vn-x-south").synthesize(SENTENCE, "vi")
    assert south.dBFS > -35
    assert south.raw_data != EspeakNg().synthesize(SENTENCE).raw_data


@needs_espeak
def test_text_never_reaches_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    speech = EspeakNg().synthesize(f'"; touch {marker}; $(touch {marker}) `touch {marker}`')
    assert len(speech) > 0 and not marker.exists()
    # Text that looks like an option is read, not obeyed.
    assert len(EspeakNg().synthesize("--version")) > 200


def test_empty_and_too_long_text() -> None:
    for text in ("", "   \n\t "):
        with pytest.raises(TtsError, match="empty"):
            EspeakNg().synthesize(text)
    with pytest.raises(TtsError, match="too long"):
        EspeakNg().synthesize("a" * (MAX_CHARS + 1))


def test_engine_missing() -> None:
    engine = EspeakNg(binary="/nonexistent/espeak-ng")
    with pytest.raises(TtsError, match="not found") as e:
        engine.synthesize(SENTENCE)
    assert "Chưa cài" in str(e.value)


@needs_espeak
def test_engine_failure_is_a_tts_error() -> None:
    with pytest.raises(TtsError, match="failed"):
        EspeakNg().synthesize(SENTENCE, language="tay")  # no Tày voice exists
    with pytest.raises(ValueError):
        EspeakNg(speed_wpm=5)


def test_engine_that_writes_nothing(tmp_path: Path) -> None:
    fake = tmp_path / "fake-tts"
    fake.write_text("#!/bin/sh\ncat >/dev/null\nexit 0\n")
    fake.chmod(0o755)
    with pytest.raises(TtsError, match="failed"):
        EspeakNg(binary=str(fake)).synthesize(SENTENCE)

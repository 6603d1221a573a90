"""The bulletin audio pipeline, with real ffmpeg and eSpeak NG (no mocks).

Loudness of what the pipeline writes is measured by ffmpeg's own ``ebur128`` filter, not by the
module's meter, so the two check each other.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from headend.bench.upload import measure_upload, render
from headend.media.pipeline import PROFILES, PreparedAudio, prepare, prepare_speech, prepare_upload
from headend.media.probe import (
    ALLOWED_SUFFIXES,
    MAX_BYTES,
    MAX_SECONDS,
    AudioRejected,
    check_upload,
)
from headend.media.signal import PEAK_CEILING_DBFS, TARGET_LUFS, integrated_lufs, make_chime
from headend.media.store import NODE_WAV
from headend.media.tts import EspeakNg

SENTENCE = "Xin chào bà con, đây là đài truyền thanh xã."
RATE = 44100

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (make install adds it)")

Signal = npt.NDArray[np.float32]


# --- helpers -----------------------------------------------------------------------------

def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def ebur128(path: Path) -> float:
    """Integrated loudness as ffmpeg's ebur128 filter reports it (the summary's "I:")."""
    out = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-af", "ebur128",
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", out)[-1])


def ffprobe(path: Path) -> dict[str, str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                          "stream=codec_name,sample_rate,channels,bit_rate:format=duration",
                          "-of", "default=noprint_wrappers=1", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def write_wav(path: Path, x: Signal, rate: int = RATE) -> Path:
    pcm = (np.clip(x, -1, 32767 / 32768) * 32768).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def speechlike(seconds: float, rate: int = RATE, seed: int = 1) -> Signal:
    """Syllables: bursts of a buzzy vowel plus hiss, 4 a second, with pauses between words.

    Like speech, little of it is above 5 kHz (the pipeline works at 22.05 kHz at most).
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    vowel = sum(np.sin(k * phase) / k for k in range(1, 12))
    noise = np.convolve(rng.standard_normal(n), np.ones(6) / 6, mode="same")  # little treble
    syllable = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    words = (np.sin(2 * np.pi * 0.9 * t) > -0.6).astype(float)
    x = (vowel + noise) * syllable * words
    return (x / np.abs(x).max() * 0.5).astype(np.float32)


def at_lufs(x: Signal, lufs: float, rate: int = RATE) -> Signal:
    return (x * np.float32(10 ** ((lufs - integrated_lufs(x, rate)) / 20))).astype(np.float32)


def silence(seconds: float, rate: int = RATE) -> Signal:
    return np.zeros(round(seconds * rate), dtype=np.float32)


def wav_info(path: Path) -> tuple[int, int, int, int]:
    """(rate, bits, channels, frames) of a WAV file; also checks the 44-byte plain header."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[36:40] == b"data"
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), w.getsampwidth() * 8, w.getnchannels(), w.getnframes()


def wav_samples(path: Path) -> Signal:
    with wave.open(str(path)) as w:
        raw = w.readframes(w.getnframes())
    return (np.frombuffer(raw, dtype="<i2") / 32768).astype(np.float32)


def stored(media: Path) -> list[Path]:
    return sorted(media.iterdir()) if media.exists() else []


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Speech-like source files made once for the module."""
    d = tmp_path_factory.mktemp("sources")
    write_wav(d / "speech.wav", at_lufs(speechlike(6.0), -20.0))
    ffmpeg("-i", str(d / "speech.wav"), "-ac", "2", "-ar", "44100", "-b:a", "128k",
           str(d / "speech.mp3"))
    return d


@pytest.fixture
def media(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "media"


# --- the meter ---------------------------------------------------------------------------

def test_meter_reads_a_997_hz_sine_at_its_rms() -> None:
    # BS.1770: K-weighting is ~+0.69 dB at 1 kHz, which the -0.691 offset cancels.
    t = np.arange(10 * 48000) / 48000
    x = (math.sqrt(2) * 10 ** (-20 / 20) * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    assert integrated_lufs(x, 48000) == pytest.approx(-20.0, abs=0.05)
    assert integrated_lufs(silence(5.0), RATE) == -math.inf


@pytest.mark.parametrize("rate", [16000, 22050, 44100])
def test_meter_agrees_with_ffmpeg_ebur128(tmp_path: Path, rate: int) -> None:
    rng = np.random.default_rng(rate)
    pieces = [
        at_lufs(speechlike(4.0, rate), -18.0, rate),
        silence(1.5, rate),  # below the absolute gate
        at_lufs(speechlike(3.0, rate, seed=2), -35.0, rate),  # below the relative gate
        (0.05 * rng.standard_normal(3 * rate)).astype(np.float32),  # white noise: treble
        (0.3 * np.sin(2 * np.pi * 60 * np.arange(2 * rate) / rate)).astype(np.float32),  # hum
    ]
    x = np.concatenate(pieces)
    path = write_wav(tmp_path / "mix.wav", x, rate)
    assert integrated_lufs(x, rate) == pytest.approx(ebur128(path), abs=0.3)


# --- levels, trimming, formats -------------------------------------------------------------

def check_files(result: PreparedAudio, target: float = TARGET_LUFS) -> None:
    """Every profile's file: right format, right duration, at the loudness target (by ffmpeg)."""
    assert set(result.files) == {p.name for p in PROFILES} == {"esp32", "rpi"}
    esp32, rpi = result.files["esp32"], result.files["rpi"]
    assert esp32.path.suffix == ".wav" and rpi.path.suffix == ".mp3"
    rate, bits, channels, frames = wav_info(esp32.path)
    assert (rate, bits, channels) == tuple(NODE_WAV) == (16000, 16, 1)
    assert abs(frames * 1000 / rate - result.duration_ms) <= 20
    info = ffprobe(rpi.path)
    assert info["codec_name"] == "mp3" and info["sample_rate"] == "22050"
    assert info["channels"] == "1" and abs(int(info["bit_rate"]) - 32000) <= 1000
    assert abs(float(info["duration"]) * 1000 - result.duration_ms) <= 100  # + encoder padding
    for f in (esp32, rpi):
        assert ebur128(f.path) == pytest.approx(target, abs=0.5), f.name  # spec: 1 LU
    assert result.lufs == pytest.approx(target, abs=0.5)
    assert result.peak_dbfs <= PEAK_CEILING_DBFS + 0.01


def test_quiet_upload_is_raised_to_the_target(tmp_path: Path, media: Path) -> None:
    src = write_wav(tmp_path / "quiet.wav", at_lufs(speechlike(5.0), -40.0))
    result = prepare_upload(src, "ghi-am.wav", media)
    assert result.source_lufs == pytest.approx(-40.0, abs=0.3)
    assert result.gain_db == pytest.approx(17.0, abs=0.3)
    check_files(result)
    assert sorted(m.path for m in result.files.values()) == stored(media)


def test_loud_clipped_upload_is_lowered_to_the_target(tmp_path: Path, media: Path) -> None:
    loud = np.clip(at_lufs(speechlike(5.0), -6.0), -1, 1)  # clipped at full scale
    src = tmp_path / "loud.mp3"
    ffmpeg("-i", str(write_wav(tmp_path / "loud.wav", loud)), "-b:a", "128k", str(src))
    result = prepare_upload(src, "loud.mp3", media)
    assert result.source_lufs > -10 and not result.limited
    check_files(result)


def test_peaks_that_gain_would_clip_are_limited(tmp_path: Path, media: Path) -> None:
    x = at_lufs(speechlike(6.0), -40.0)
    pop = (0.5 * np.sin(np.pi * np.arange(44) / 44)).astype(np.float32)  # 1 ms, -6 dBFS
    for at in (1.0, 2.5, 4.0):  # microphone pops in a quiet recording
        i = round(at * RATE)
        x[i:i + len(pop)] += pop
    result = prepare_upload(write_wav(tmp_path / "pops.wav", x), "pops.wav", media)
    assert result.limited and result.gain_db > 12
    check_files(result)
    assert 20 * math.log10(np.abs(wav_samples(result.files["esp32"].path)).max()) < -0.5


def test_leading_and_trailing_silence_is_trimmed(tmp_path: Path, media: Path) -> None:
    rng = np.random.default_rng(7)
    hiss = lambda s: (10 ** (-65 / 20) * rng.standard_normal(round(s * RATE))).astype(  # noqa: E731
        np.float32)
    body = at_lufs(speechlike(5.0), -25.0)
    body[:RATE // 10] *= np.linspace(0, 1, RATE // 10, dtype=np.float32)  # no click at the joins
    x = np.concatenate((hiss(3.0), body + hiss(5.0), hiss(2.0)))
    result = prepare_upload(write_wav(tmp_path / "padded.wav", x), "padded.wav", media)
    assert 5000 <= result.duration_ms <= 5000 + 2 * 150 + 20
    lead, tail = result.trimmed_ms
    assert 2800 <= lead <= 3000 and 1800 <= tail <= 2000
    check_files(result)


def test_chime_adds_its_length_at_both_ends(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "s.wav", at_lufs(speechlike(4.0), -30.0))
    plain = prepare_upload(src, "s.wav", tmp_path / "m1")
    chimed = prepare_upload(src, "s.wav", tmp_path / "m2", chime=True)
    chime_ms = len(make_chime(22050)) * 1000 / 22050
    assert 1400 <= chime_ms <= 1600
    assert chimed.duration_ms - plain.duration_ms == pytest.approx(2 * (chime_ms + 300), abs=2)
    assert chimed.chime and not plain.chime
    check_files(chimed)
    # The bell is there at both ends, at the loudness target, not silence.
    pcm = wav_samples(chimed.files["esp32"].path)
    head, tail = pcm[:round(1.5 * 16000)], pcm[-round(1.5 * 16000):]
    assert integrated_lufs(head, 16000) == pytest.approx(TARGET_LUFS, abs=1.0)
    assert integrated_lufs(tail, 16000) == pytest.approx(TARGET_LUFS, abs=1.0)


def test_any_pydub_segment_goes_through_prepare(tmp_path: Path) -> None:
    from pydub import AudioSegment
    x = at_lufs(speechlike(3.0, 48000), -30.0, 48000)
    pcm = (x * 2**31 * 0.99).astype("<i4")
    stereo = np.repeat(pcm, 2)  # 48 kHz 32-bit stereo
    segment = AudioSegment(data=stereo.tobytes(), sample_width=4, frame_rate=48000, channels=2)
    result = prepare(segment, tmp_path / "media")
    assert result.source_lufs == pytest.approx(-30.0, abs=0.3)
    check_files(result)


def test_silence_is_refused_and_nothing_stored(tmp_path: Path, media: Path) -> None:
    src = write_wav(tmp_path / "silent.wav", silence(3.0))
    with pytest.raises(AudioRejected) as e:
        prepare_upload(src, "silent.wav", media)
    assert e.value.code == "silent" and "không có tiếng" in str(e.value)
    assert stored(media) == []


# --- good uploads --------------------------------------------------------------------------

GOOD = {
    "lame-cbr.mp3": ["-c:a", "libmp3lame", "-b:a", "128k", "-ac", "2"],
    "lame-vbr.mp3": ["-c:a", "libmp3lame", "-q:a", "4"],
    "no-xing.mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-write_xing", "0"],
    "plain.wav": ["-c:a", "pcm_s16le", "-ac", "2"],
    "aac.m4a": ["-c:a", "aac", "-b:a", "96k"],
    "aac-faststart.m4a": ["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"],
    "vorbis.ogg": ["-c:a", "libvorbis"],
    "opus.oga": ["-c:a", "libopus", "-b:a", "24k"],
    "opus.opus": ["-c:a", "libopus", "-b:a", "24k"],
    "opus.webm": ["-c:a", "libopus", "-b:a", "32k"],
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_uploads_are_accepted(sources: Path, tmp_path: Path, name: str) -> None:
    src = tmp_path / name
    ffmpeg("-i", str(sources / "speech.wav"), *GOOD[name], str(src))
    probe = check_upload(src, name)
    assert probe.channels >= 1 and probe.duration_s == pytest.approx(6.0, abs=0.1)
    result = prepare_upload(src, name, tmp_path / "media")
    assert 5800 <= result.duration_ms <= 6100
    assert result.files["esp32"].path.exists() and result.files["rpi"].path.exists()


def test_browser_recording_without_duration_is_accepted(sources: Path, tmp_path: Path) -> None:
    # MediaRecorder streams WebM: no duration and no cues, like ffmpeg writing to a pipe.
    src = tmp_path / "recording.webm"
    with src.open("wb") as f:
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(sources / "speech.wav"),
                        "-c:a", "libopus", "-b:a", "32k", "-f", "webm", "pipe:1"], stdout=f,
                       check=True)
    assert check_upload(src, "recording.webm").duration_s is None
    result = prepare_upload(src, "recording.webm", tmp_path / "media")
    assert 5800 <= result.duration_ms <= 6100


@pytest.mark.skipif(shutil.which("lame") is None, reason="the lame command is not installed")
@pytest.mark.parametrize("options", [["-b", "128"], ["-V", "4"], ["-b", "64", "--tt", "Bản tin"]])
def test_mp3s_from_the_lame_command_are_accepted(sources: Path, tmp_path: Path,
                                                 options: list[str]) -> None:
    src = tmp_path / "lame.mp3"
    subprocess.run(["lame", "--quiet", *options, str(sources / "speech.wav"), str(src)],
                   check=True)
    result = prepare_upload(src, "lame.mp3", tmp_path / "media")
    assert 5800 <= result.duration_ms <= 6100


# --- bad uploads ---------------------------------------------------------------------------

def refused(path: Path, filename: str, media: Path, code: str, *phrases: str) -> AudioRejected:
    """prepare_upload refuses it with a Vietnamese message and stores nothing."""
    with pytest.raises(AudioRejected) as e:
        prepare_upload(path, filename, media)
    err = e.value
    assert err.code == code, err.english
    for phrase in phrases:
        assert phrase in str(err)
    assert str(err) == err.message and err.english and err.english != str(err)
    assert stored(media) == []
    return err


def cut(src: Path, dst: Path, size: int) -> Path:
    dst.write_bytes(src.read_bytes()[:size])
    return dst


def frame_boundary(data: bytes, near: int) -> int:
    """Offset of an MPEG-1 layer III 128 kbit/s 44.1 kHz frame header at or after ``near``."""
    for m in re.finditer(rb"\xff\xfb[\x90\x92]", data[near:]):
        at = near + m.start()
        nxt = at + (418 if data[at + 2] == 0x92 else 417)
        if data[nxt:nxt + 2] == b"\xff\xfb":
            return at
    raise AssertionError("no frame boundary found")


def test_text_renamed_to_mp3_is_refused(tmp_path: Path, media: Path) -> None:
    src = tmp_path / "bai-hat.mp3"
    src.write_text("Đây là một tệp văn bản, không phải âm thanh.\n" * 200, encoding="utf-8")
    refused(src, src.name, media, "not_audio", "không phải âm thanh", "giải mã")


def test_playlist_renamed_to_mp3_cannot_reach_other_files(tmp_path: Path, media: Path) -> None:
    src = tmp_path / "list.mp3"
    src.write_text("#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
    refused(src, src.name, media, "not_audio")


@pytest.mark.parametrize("how", ["half", "mid-frame", "frame-boundary", "last-bytes"])
def test_truncated_mp3_is_refused(sources: Path, tmp_path: Path, media: Path, how: str) -> None:
    src = sources / "speech.mp3"
    data = src.read_bytes()
    size = {"half": len(data) // 2,
            "mid-frame": frame_boundary(data, len(data) // 3) + 200,
            "frame-boundary": frame_boundary(data, len(data) // 2),
            "last-bytes": len(data) - 100}[how]
    bad = cut(src, tmp_path / "cut.mp3", size)
    err = refused(bad, "ban-tin.mp3", media, "truncated", "bị cắt dở", "hỏng ở cuối")
    assert "frame" in err.english
    with pytest.raises(AudioRejected):
        check_upload(bad, "ban-tin.mp3")  # from the structure, before any full decode


def test_truncated_mp3_without_xing_tag_is_refused(sources: Path, tmp_path: Path,
                                                   media: Path) -> None:
    src = tmp_path / "no-xing.mp3"
    ffmpeg("-i", str(sources / "speech.wav"), "-ac", "2", "-b:a", "128k", "-write_xing", "0",
           str(src))
    data = src.read_bytes()
    bad = cut(src, tmp_path / "cut.mp3", frame_boundary(data, len(data) // 2) + 50)
    refused(bad, "cut.mp3", media, "truncated", "bị cắt dở")


@pytest.mark.parametrize("name", ["plain.wav", "vorbis.ogg", "opus.webm", "aac-faststart.m4a"])
def test_other_truncated_formats_are_refused(sources: Path, tmp_path: Path, media: Path,
                                             name: str) -> None:
    src = tmp_path / name
    ffmpeg("-i", str(sources / "speech.wav"), *GOOD[name], str(src))
    bad = cut(src, tmp_path / ("cut-" + name), src.stat().st_size // 2 + 33)
    refused(bad, name, media, "truncated", "bị cắt dở")


def test_two_hour_files_are_refused_from_the_header(tmp_path: Path, media: Path) -> None:
    # A real 2-hour MP3, cheaply: one minute of tone, stream-copied 120 times.
    minute = tmp_path / "minute.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=8000:d=60", "-ac", "1", "-b:a", "8k", str(minute))
    long_mp3 = tmp_path / "long.mp3"
    ffmpeg("-stream_loop", "119", "-i", str(minute), "-c", "copy", str(long_mp3))
    # A 2-hour WAV (4 kHz, 8-bit): a header and a sparse body of the size it declares.
    long_wav = tmp_path / "long.wav"
    body = 7200 * 4000
    header = (b"RIFF" + (36 + body).to_bytes(4, "little") + b"WAVEfmt "
              + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
              + (4000).to_bytes(4, "little") + (4000).to_bytes(4, "little")
              + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
              + b"data" + body.to_bytes(4, "little"))
    with long_wav.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + body)
    for path in (long_mp3, long_wav):
        start = time.perf_counter()
        refused(path, path.name, media, "too_long", "2 giờ 0 phút", "quá giới hạn 30 phút")
        assert time.perf_counter() - start < 3.0  # from the header, not by decoding two hours


def test_200_mb_file_is_refused_on_size_before_reading(tmp_path: Path, media: Path) -> None:
    big = tmp_path / "big.mp3"
    with big.open("wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: nothing to read, nothing decoded
    start = time.perf_counter()
    err = refused(big, "big.mp3", media, "too_big", "200 MB", "vượt quá giới hạn 50 MB")
    assert time.perf_counter() - start < 0.5
    assert str(MAX_BYTES) in err.english


def test_empty_file_is_refused(tmp_path: Path, media: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.touch()
    refused(empty, "empty.wav", media, "empty", "Tệp rỗng")


def test_video_without_sound_is_refused(tmp_path: Path, media: Path) -> None:
    video = tmp_path / "video.m4a"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:d=1", "-c:v", "mpeg4", "-f", "mp4",
           str(video))
    refused(video, "video.m4a", media, "no_audio", "không có phần âm thanh")


@pytest.mark.parametrize("filename", ["ban-tin.txt", "ban-tin.exe", "ban-tin", "nhac.flac"])
def test_unknown_extension_is_refused_even_with_audio_inside(sources: Path, media: Path,
                                                             filename: str) -> None:
    err = refused(sources / "speech.mp3", filename, media, "suffix", "Chỉ nhận tệp âm thanh")
    assert all(s[1:] in str(err) for s in ALLOWED_SUFFIXES)


def test_limits_are_as_documented() -> None:
    assert MAX_BYTES == 50 * 1024 * 1024 and MAX_SECONDS == 30 * 60
    assert {".mp3", ".wav", ".m4a", ".ogg", ".oga", ".opus", ".webm"} == ALLOWED_SUFFIXES
    esp32, rpi = PROFILES
    assert (esp32.name, esp32.rate, esp32.channels, esp32.kbit_per_s) == ("esp32", 16000, 1, 256)
    assert (rpi.name, rpi.rate, rpi.channels, rpi.kbit_per_s) == ("rpi", 22050, 1, 32)
    assert 14 <= rpi.mb_per_hour <= 15 and esp32.why and rpi.why


# --- speech ------------------------------------------------------------------------------

@needs_espeak
def test_vietnamese_speech_is_prepared_at_the_target(tmp_path: Path) -> None:
    result = prepare_speech(SENTENCE, "vi", tmp_path / "media", engine=EspeakNg())
    assert 1500 <= result.duration_ms <= 10_000
    check_files(result)
    # Audible speech: loud syllables and quiet gaps, not a steady tone or silence.
    pcm = wav_samples(result.files["esp32"].path)
    frames = pcm[:len(pcm) // 1600 * 1600].reshape(-1, 1600)
    levels = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    assert levels.max() > -25 and levels.max() - levels.min() > 20


@needs_espeak
def test_speech_errors_become_rejections(tmp_path: Path) -> None:
    media = tmp_path / "media"
    with pytest.raises(AudioRejected) as e:
        prepare_speech("   ", "vi", media)
    assert e.value.code == "speech" and "Văn bản trống" in str(e.value)
    assert e.value.english == "The text is empty."
    assert stored(media) == []


# --- the benchmark -------------------------------------------------------------------------

def test_measure_upload_smoke(tmp_path: Path) -> None:
    fig = measure_upload(tmp_path, minutes=0.2, runs=1)
    assert fig.bare_s > 0 and fig.pipeline_s > 0 and fig.runs == 1
    assert fig.bare_runs == (fig.bare_s,) and fig.pipeline_runs == (fig.pipeline_s,)
    assert fig.bare_cpu_s > 0 and fig.pipeline_cpu_s > 0
    assert fig.ratio == pytest.approx(fig.pipeline_s / fig.bare_s)
    assert fig.within_time == (fig.pipeline_s <= 60)
    assert fig.within_ratio == (fig.ratio <= 1.5)
    assert fig.result.duration_ms == pytest.approx(12_000 + 300, abs=300)
    assert fig.result.lufs == pytest.approx(TARGET_LUFS, abs=0.5)
    text = render(fig)
    assert "prepare_upload" in text and f"{fig.ratio:.2f}x" in text
    assert os.path.getsize(tmp_path / "source" / "bulletin.mp3") == fig.source_bytes

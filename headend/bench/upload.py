"""How long an uploaded bulletin takes to prepare, against ffmpeg's bare transcodes.

The test file is what an officer might upload: Vietnamese speech (eSpeak NG, repeated to length;
modulated noise and tones where eSpeak NG is missing) over a faint pink-noise floor, with 3 s of
near-silence before and 2 s after, as a 44.1 kHz stereo 128 kbit/s MP3 made by ffmpeg.

Two timings, alternated in the same run so both see the same machine load, medians of ``runs``:

- **bare**: the two plain ffmpeg transcodes a node needs, one after the other:
  ``ffmpeg -i in -ac 1 -ar 16000 out.wav`` and ``ffmpeg -i in -ac 1 -ar 22050 -b:a 32k out.mp3``;
- **pipeline**: ``headend.media.pipeline.prepare_upload`` (checks, one decode, loudness, trim,
  limiter, every profile encoded and stored), into a fresh media directory each run.

The targets (for a 10-minute upload): at most 60 s, and at most 1.5 times the bare transcodes.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pydub import AudioSegment

from headend.media.pipeline import PreparedAudio, prepare_upload

TARGET_S = 60.0
TARGET_RATIO = 1.5
LEAD_SILENCE_S = 3.0
TAIL_SILENCE_S = 2.0

SPEECH = ("Xin chào bà con, đây là đài truyền thanh xã. Hôm nay, ủy ban nhân dân xã thông báo "
          "lịch tiêm phòng cho gia súc và gia cầm tại nhà văn hóa thôn vào sáng thứ bảy. "
          "Đề nghị bà con đưa vật nuôi đến đúng giờ, mang theo sổ theo dõi. Xin cảm ơn.")


@dataclass(frozen=True)
class UploadFigures:
    minutes: float  # of speech in the test file (silences at the ends not counted)
    source: str  # how the test file was made
    source_bytes: int
    runs: int
    bare_s: float  # median, both transcodes
    pipeline_s: float  # median of prepare_upload
    ratio: float  # pipeline_s / bare_s
    within_time: bool  # pipeline_s <= TARGET_S
    within_ratio: bool  # ratio <= TARGET_RATIO
    bare_runs: tuple[float, ...]
    pipeline_runs: tuple[float, ...]
    bare_cpu_s: float  # median CPU seconds (this process and its children): steadier than
    pipeline_cpu_s: float  # wall time when other work shares the machine
    result: PreparedAudio


def _ffmpeg() -> str:
    return str(AudioSegment.converter)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.decode('utf-8', 'replace')[-400:]}")


def make_upload(work_dir: Path, minutes: float) -> tuple[Path, str]:
    """The test upload (see the module docstring); returns its path and how it was made."""
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / "bulletin.mp3"
    seconds = minutes * 60
    espeak = shutil.which("espeak-ng")
    if espeak:
        speech = work_dir / "speech.wav"
        subprocess.run([espeak, "-v", "vi", "-s", "150", "-b", "1", "--stdin", "-w", str(speech)],
                       input=SPEECH.encode("utf-8"), capture_output=True, check=True)
        voice = ["-stream_loop", "-1", "-i", str(speech)]
        source = "eSpeak NG Vietnamese speech, repeated"
    else:
        # Syllable-rate (4 Hz) modulated noise with a 180 Hz buzz: level changes like speech.
        voice = ["-f", "lavfi", "-i",
                 "anoisesrc=c=pink:a=0.3:r=22050,tremolo=f=4:d=0.9,"
                 "volume=0.7[n];sine=f=180:r=22050,volume=0.1,tremolo=f=3:d=0.8[s];"
                 "[n][s]amix=inputs=2"]
        source = "modulated noise and tones (espeak-ng not installed)"
    total = LEAD_SILENCE_S + seconds + TAIL_SILENCE_S
    graph = (f"[0:a]atrim=0:{seconds:.3f},aresample=44100,adelay={LEAD_SILENCE_S * 1000:.0f}"
             f":all=1,apad=whole_dur={total:.3f}[v];"
             f"anoisesrc=c=pink:a=0.002:r=44100:d={total:.3f}[floor];"
             "[v][floor]amix=inputs=2:normalize=0,pan=stereo|c0=c0|c1=c0")
    _run([_ffmpeg(), "-v", "error", "-nostdin", "-y", *voice, "-filter_complex", graph,
          "-t", f"{total:.3f}", "-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k",
          str(out)])
    ends = f"{LEAD_SILENCE_S:g} s / {TAIL_SILENCE_S:g} s of near-silence at the ends"
    return out, f"{source}, {ends}"


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bare_transcodes(src: Path, out_dir: Path) -> float:
    """Seconds for the two plain ffmpeg transcodes, one after the other."""
    ff = _ffmpeg()
    start = time.perf_counter()
    _run([ff, "-v", "error", "-nostdin", "-y", "-i", str(src), "-ac", "1", "-ar", "16000",
          str(out_dir / "bare.wav")])
    _run([ff, "-v", "error", "-nostdin", "-y", "-i", str(src), "-ac", "1", "-ar", "22050",
          "-b:a", "32k", str(out_dir / "bare.mp3")])
    return time.perf_counter() - start


def measure_upload(work_dir: Path, minutes: float = 10, runs: int = 3) -> UploadFigures:
    """Make the test upload in work_dir, then time bare transcodes and the pipeline, alternated."""
    if runs < 1 or minutes <= 0:
        raise ValueError("runs must be >= 1 and minutes > 0")
    src, source = make_upload(work_dir / "source", minutes)
    bare: list[float] = []
    pipeline: list[float] = []
    bare_cpu: list[float] = []
    pipeline_cpu: list[float] = []
    result: PreparedAudio | None = None
    for i in range(runs):
        with tempfile.TemporaryDirectory(dir=work_dir, prefix="bare-") as tmp:
            cpu = _cpu_s()
            bare.append(bare_transcodes(src, Path(tmp)))
            bare_cpu.append(_cpu_s() - cpu)
        media = work_dir / f"media-{i}"  # fresh each run: no "already stored" shortcut
        cpu, start = _cpu_s(), time.perf_counter()
        result = prepare_upload(src, src.name, media)
        pipeline.append(time.perf_counter() - start)
        pipeline_cpu.append(_cpu_s() - cpu)
        shutil.rmtree(media, ignore_errors=True)
    assert result is not None
    bare_s, pipeline_s = statistics.median(bare), statistics.median(pipeline)
    ratio = pipeline_s / bare_s
    return UploadFigures(
        minutes=minutes, source=source, source_bytes=src.stat().st_size, runs=runs,
        bare_s=bare_s, pipeline_s=pipeline_s, ratio=ratio,
        within_time=pipeline_s <= TARGET_S, within_ratio=ratio <= TARGET_RATIO,
        bare_runs=tuple(bare), pipeline_runs=tuple(pipeline),
        bare_cpu_s=statistics.median(bare_cpu), pipeline_cpu_s=statistics.median(pipeline_cpu),
        result=result)


def render(fig: UploadFigures) -> str:
    """A few printable lines."""
    ok = {True: "ok", False: "MISSED"}
    r = fig.result
    sizes = ", ".join(f"{name} {m.size / 1e6:.1f} MB" for name, m in r.files.items())
    return "\n".join([
        f"upload: {fig.minutes:g} min, {fig.source_bytes / 1e6:.1f} MB MP3 44.1 kHz stereo "
        f"128 kbit/s ({fig.source})",
        f"bare ffmpeg transcodes (wav 16 kHz + mp3 32k): {fig.bare_s:.2f} s "
        f"(median of {fig.runs}: {', '.join(f'{s:.2f}' for s in fig.bare_runs)})",
        f"prepare_upload: {fig.pipeline_s:.2f} s "
        f"(median of {fig.runs}: {', '.join(f'{s:.2f}' for s in fig.pipeline_runs)})",
        f"ratio {fig.ratio:.2f}x (target <= {TARGET_RATIO:g}x: {ok[fig.within_ratio]}), "
        f"time target <= {TARGET_S:g} s: {ok[fig.within_time]}; CPU seconds (median): "
        f"bare {fig.bare_cpu_s:.2f}, pipeline {fig.pipeline_cpu_s:.2f}",
        f"result: {r.duration_ms / 1000:.1f} s, {r.source_lufs:.1f} -> {r.lufs:.1f} LUFS, "
        f"peak {r.peak_dbfs:.1f} dBFS, trimmed {r.trimmed_ms[0]} / {r.trimmed_ms[1]} ms; {sizes}",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loaxa-bench-upload-") as tmp:
        print(render(measure_upload(Path(tmp), args.minutes, args.runs)))


if __name__ == "__main__":
    main()

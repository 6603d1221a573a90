"""`loaxa init commune`, `loaxa schedule check` and `loaxa bench plan`."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from support.cli import run_main

from headend.planning.schedule import load_schedule

REPO = Path(__file__).resolve().parents[2]
LOAXA = Path(sys.executable).parent / "loaxa"
TEMPLATE = REPO / "schedules" / "templates" / "lang-son.toml"


def test_init_commune_in_the_current_directory(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "init", "commune", "Xã Tân Lang")
    assert code == 0, err
    path = tmp_path / "xa-tan-lang.toml"
    assert path.is_file() and "xa-tan-lang.toml" in out
    s = load_schedule(path)
    assert s.commune.name == "Xã Tân Lang" and s.commune.id == "xa-tan-lang"
    assert all(n.startswith("xa-tan-lang-") for n in s.commune.node_ids)
    # Never overwritten.
    path.write_text("# sửa tay\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    code, _, err = run_main(capsys, "init", "commune", "Xã Tân Lang")
    assert code == 2 and "already exists" in err and "Traceback" not in err
    assert path.read_text(encoding="utf-8").startswith("# sửa tay")


def test_init_commune_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "lich" / "dong-dang.toml"
    out_file.parent.mkdir()
    code, _, err = run_main(capsys, "init", "commune", "Thị trấn Đồng Đăng",
                            "--output", str(out_file))
    assert code == 0, err
    assert load_schedule(out_file).commune.id == "thi-tran-dong-dang"
    code, _, err = run_main(capsys, "init", "commune", "Xã Na Sầm", "--output",
                            str(out_file.parent))
    assert code == 0, err
    assert (out_file.parent / "xa-na-sam.toml").is_file()
    code, _, err = run_main(capsys, "init", "commune", "Xã X", "--output",
                            str(tmp_path / "no" / "such" / "dir" / "x.toml"))
    assert code == 2 and "cannot write" in err
    code, _, err = run_main(capsys, "init", "commune", "!!!")
    assert code == 2 and "no letters" in err


def silence_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(b"\x80" * int(seconds * rate))


def with_recordings(text: str, directory: Path, seconds: float = 75) -> str:
    """The commune file with a recording of `seconds` (tin.wav beside it) for every local
    bulletin: as the officer leaves it once the bulletins are made."""
    silence_wav(directory / "tin.wav", seconds)
    return text.replace('kind = "local_bulletin"', 'kind = "local_bulletin"\nmedia = "tin.wav"')


def test_check_the_template_with_its_recordings_passes(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    p = tmp_path / "xa-mau.toml"
    p.write_text(with_recordings(TEMPLATE.read_text(encoding="utf-8"), tmp_path),
                 encoding="utf-8")
    code, out, err = run_main(capsys, "schedule", "check", str(p),
                              "--from", "2026-11-23", "--weeks", "2")
    assert code == 0, out + err
    assert "Tuần 2026-W48 (week) 2026-11-23 – 2026-11-29: ĐẠT (met)" in out
    assert "6 tin, cần ít nhất 3 (items counted)" in out
    assert "Tuần 2026-W49" in out
    assert "placeholder address" in out and "Không tính" not in out
    assert "ĐẠT (met) cả 2 tuần" in out


def test_the_template_without_recordings_falls_short(capsys: pytest.CaptureFixture[str]) -> None:
    # Its bulletins are slots kept for recordings not made yet: nothing to count, however
    # complete the relays ("ĐẠT" for a commune with no audio at all was the bug).
    code, out, err = run_main(capsys, "schedule", "check", str(TEMPLATE),
                              "--from", "2026-11-23", "--weeks", "2")
    assert code == 1, out + err
    assert "chưa có âm thanh (no audio yet): not counted as local news" in out
    assert "Tuần 2026-W48 (week) 2026-11-23 – 2026-11-29: CHƯA ĐẠT (falls short)" in out
    assert "0 tin, cần ít nhất 3 (items counted)" in out
    assert ("  Không tính (not counted): 6 bản tin thiếu bản ghi (no recording yet): "
            "ban-tin-xa@2026-11-23, ban-tin-tieng-tay@2026-11-24,") in out
    assert ("CẢNH BÁO (warning): tuần 2026-W48 (2026-11-23) chưa đạt tiêu chí 8.3: "
            "tin xã tự sản xuất: 0 tin, cần ít nhất 3") in out
    assert "ĐẠT (met) cả" not in out


def test_short_recordings_do_not_count(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    # 19 s of audio for every bulletin: each slot is 15 minutes, the audio is what sounds.
    p = tmp_path / "ngan.toml"
    p.write_text(with_recordings(TEMPLATE.read_text(encoding="utf-8"), tmp_path, 19),
                 encoding="utf-8")
    code, out, _ = run_main(capsys, "schedule", "check", str(p), "--from", "2026-11-23",
                            "--weeks", "1")
    assert code == 1
    assert "0 tin, cần ít nhất 3 (items counted)" in out
    assert "  Không tính (not counted): 6 bản tin ngắn dưới 60 giây (shorter than 60 s): " in out
    assert "thiếu bản ghi" not in out


def test_check_a_week_that_falls_short(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    # Only Mondays and Wednesdays have a bulletin: two a week.
    text = TEMPLATE.read_text(encoding="utf-8").replace(
        'days = ["mon", "wed", "fri"]', 'days = ["mon", "wed"]').replace(
        'days = ["tue", "thu", "sat"]', 'days = ["tue"]\nuntil = "2026-11-29"')
    p = tmp_path / "thieu.toml"
    p.write_text(with_recordings(text, tmp_path), encoding="utf-8")
    code, out, _ = run_main(capsys, "schedule", "check", str(p), "--from", "2026-11-25",
                            "--weeks", "2")
    assert code == 1
    assert "Tuần 2026-W48 (week) 2026-11-23 – 2026-11-29: ĐẠT (met)" in out
    assert ("CẢNH BÁO (warning): tuần 2026-W49 (2026-11-30) chưa đạt tiêu chí 8.3: "
            "tin xã tự sản xuất: 2 tin, cần ít nhất 3") in out
    assert "2026-W48 (2026-11-23) chưa đạt" not in out


def test_check_a_bad_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    text = text.replace('start = "17:00"', 'start = "03:15"').replace(
        'source = "vov1"', 'source = "vov2"', 1)
    p = tmp_path / "sai.toml"
    p.write_text(text, encoding="utf-8")
    code, out, err = run_main(capsys, "schedule", "check", str(p))
    assert code == 2 and out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    # 03:15-17:30 is in the quiet hours and also overlaps the morning relay.
    assert lines[0] == f"loaxa: error: {p}: 3 errors"
    numbers = [int(ln.split(":")[1]) for ln in lines[1:]]
    assert numbers == sorted(numbers)
    assert any(ln.startswith(f"{p}:") and "slot 'vov-sang'" in ln and "unknown source vov2" in ln
               for ln in lines)
    assert any("slot 'tinh-chieu'" in ln and "quiet hours" in ln for ln in lines)
    assert any("slot 'tinh-chieu': overlaps slot 'tinh-sang'" in ln and "every day" in ln
               for ln in lines)


def test_check_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_main(capsys, "schedule", "check", str(tmp_path / "khong.toml"))
    assert code == 2 and "file not found" in err


def test_check_the_example_commune_from_the_shell_tet_falls_short(tmp_path: Path) -> None:
    (tmp_path / "tan-lang.toml").write_text(with_recordings(
        (REPO / "schedules" / "tan-lang.toml").read_text(encoding="utf-8"), tmp_path),
        encoding="utf-8")
    r = subprocess.run([str(LOAXA), "schedule", "check", "tan-lang.toml",
                        "--from", "2027-02-01", "--weeks", "3"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=60, env=dict(os.environ, TZ="UTC"))
    # Tết 2027 (5-11 Feb) skips the bulletins, so the week of 8 Feb has only two.
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.count(": ĐẠT (met)") == 2
    assert "Tuần 2027-W06 (week) 2027-02-08 – 2027-02-14: CHƯA ĐẠT (falls short)" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == (
        "CẢNH BÁO (warning): tuần 2027-W06 (2027-02-08) chưa đạt tiêu chí 8.3: "
        "tin xã tự sản xuất: 2 tin, cần ít nhất 3")


def test_bench_plan_small(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "bench", "plan", "--communes", "2", "--days", "7",
                              "--rounds", "1")
    assert code == 0, err
    assert "loaxa bench plan: 2 communes x 25 nodes (50 nodes), 7 days" in out
    assert "reference:" in out and "expand:" in out and "MET" in out


@pytest.mark.parametrize("args", [["schedule"], ["init"], ["init", "commune"],
                                  ["schedule", "check", "x.toml", "--weeks", "0"],
                                  ["schedule", "check", "x.toml", "--from", "mai"],
                                  ["bench", "plan", "--communes", "0"]])
def test_bad_arguments(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = run_main(capsys, *args)
    assert code == 2 and out == "" and err.startswith("usage: loaxa")

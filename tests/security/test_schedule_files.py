"""Schedule files as an attacker (or a tired officer) would write them: no recurring emergency
(the 03:15 incident), quiet hours that cover the province's night, allow_quiet pointed out,
bounded size, slots and errors, only regular files read, media inside the commune's folder,
deep nesting refused clearly, and a byte-order mark accepted. Each check ends within seconds."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from support.schedule_files import HEAD, load, slot

from headend.communes.files import CommuneFileError
from headend.planning.schedule import MAX_ERRORS, MAX_SLOTS, ScheduleError, load_schedule

QUIET = '\n[quiet_hours]\nstart = "{}"\nend = "{}"\n'


def refused(tmp_path: Path, text: str, *expected: str) -> str:
    with pytest.raises(ScheduleError) as e:
        load(tmp_path, text)
    message = str(e.value)
    for part in expected:
        assert part in message, message
    return message


@pytest.mark.parametrize("extra", [
    {"class": '"emergency"'},  # a daily relay sounding as an emergency, through the night
    {"priority": '"emergency"', "days": '["mon", "tue"]'},
])
def test_a_recurring_relay_of_class_emergency_is_refused(tmp_path: Path,
                                                         extra: dict[str, str]) -> None:
    refused(tmp_path, slot("dem", "vov_relay", "03:15", "03:45", **extra),
            "slot 'dem'", "an emergency is a one-off")


def test_a_daily_item_of_kind_emergency_is_refused_and_a_dated_one_taken(
        tmp_path: Path) -> None:
    refused(tmp_path, slot("bao", "emergency", "03:15", "03:20"), "an emergency is a one-off")
    s = load(tmp_path, slot("bao", "emergency", "03:15", "03:20", date='"2026-07-01"'))
    assert s.slot("bao").quiet_ok


@pytest.mark.parametrize("start,end", [
    ("03:00", "03:01"),  # one minute of quiet
    ("22:00", "04:00"),  # leaves 04:00-05:00 open
    ("23:30", "05:00"),  # leaves 23:00-23:30 open
    ("01:00", "23:00"),  # the day, not the night
])
def test_quiet_hours_that_leave_the_night_open_are_refused(tmp_path: Path, start: str,
                                                            end: str) -> None:
    refused(tmp_path, QUIET.format(start, end), "[quiet_hours]", "23:00–05:00")


def test_quiet_hours_covering_the_night_are_taken(tmp_path: Path) -> None:
    for start, end in (("21:45", "05:00"), ("23:00", "05:00"), ("20:00", "06:30")):
        s = load(tmp_path, QUIET.format(start, end))
        assert (s.quiet_start, s.quiet_end) != (None, None)


def test_the_province_sets_its_own_floor(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOAXA_QUIET_FLOOR", "22:00-05:30")
    refused(tmp_path, QUIET.format("23:00", "05:00"), "22:00–05:30")
    load(tmp_path, QUIET.format("21:45", "05:30"))
    monkeypatch.setenv("LOAXA_QUIET_FLOOR", "late")
    with pytest.raises(CommuneFileError, match="LOAXA_QUIET_FLOOR"):
        load(tmp_path, "")


def test_allow_quiet_is_pointed_out(tmp_path: Path) -> None:
    s = load(tmp_path, slot("dem", "vov_relay", "22:00", "22:30", allow_quiet="true"))
    [w] = [w for w in s.warnings if w.item == "slot 'dem'"]
    assert "allow_quiet" in w.message and "quiet hours" in w.message


def test_thousands_of_overlapping_slots_end_quickly_with_a_count(tmp_path: Path) -> None:
    many = "".join(slot(f"s{i}", "notice", "07:00", "08:00") for i in range(MAX_SLOTS))
    t0 = time.monotonic()
    message = refused(tmp_path, many, f"more than {MAX_ERRORS} errors",
                      "checking stopped there")
    assert time.monotonic() - t0 < 10
    assert len(message.splitlines()) == MAX_ERRORS + 1
    too_many = many + slot("one-more", "notice", "09:00", "09:05")
    refused(tmp_path, too_many, f"at most {MAX_SLOTS}")


def test_many_bad_slots_are_counted_beyond_those_listed(tmp_path: Path) -> None:
    bad = "".join(slot(f"s{i}", "notice", "07:00", "06:00") for i in range(120))
    message = refused(tmp_path, bad, f"120 errors, the first {MAX_ERRORS} listed")
    assert len(message.splitlines()) == MAX_ERRORS + 1


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    p = tmp_path / "big.toml"
    p.write_text(HEAD + "# " + "x" * 2_000_000 + "\n", encoding="utf-8")
    with pytest.raises(ScheduleError, match="at most 1000 KB"):
        load_schedule(p)


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "lich.toml"
    os.mkfifo(fifo)
    result: list[BaseException] = []

    def read() -> None:
        try:
            load_schedule(fifo)
        except BaseException as e:
            result.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "a FIFO was read forever"
    assert result and "not a regular file" in str(result[0])
    for device in ("/dev/zero", "/dev/null"):
        with pytest.raises(ScheduleError, match="not a regular file"):
            load_schedule(Path(device))


def test_deep_nesting_is_refused_clearly(tmp_path: Path) -> None:
    p = tmp_path / "deep.toml"
    p.write_text(HEAD + "x = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ScheduleError, match="nested too deep"):
        load_schedule(p)
    p.write_text(HEAD + "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ScheduleError, match=r"nested too deep|TOML syntax"):
        load_schedule(p)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "bom.toml"
    p.write_bytes(b"\xef\xbb\xbf" + (HEAD + slot("tin", "notice", "07:00", "07:05")).encode())
    assert load_schedule(p).slot("tin").start == 7 * 60


@pytest.mark.parametrize("media", ['"../../../../etc/passwd"', '"/etc/hostname"',
                                   '"am-thanh/../../ngoai.wav"'])
def test_media_outside_the_communes_folder_is_refused(tmp_path: Path, media: str) -> None:
    (tmp_path.parent / "ngoai.wav").write_bytes(b"RIFF")
    refused(tmp_path, slot("tin", "notice", "07:00", "07:05", media=media),
            "outside this commune's folder")

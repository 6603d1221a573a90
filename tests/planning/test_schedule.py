"""Schedule files: good ones load, bad ones are refused with the file, the line and the item."""

from __future__ import annotations

from pathlib import Path

import pytest

from headend.communes.files import CommuneFileError, load_commune
from headend.planning.schedule import (
    EMERGENCY,
    NORMAL,
    ScheduleError,
    load_schedule,
)
from headend.planning.templates import slugify

REPO = Path(__file__).resolve().parents[2]

HEAD = """\
[commune]
id = "thu"
name = "Xã Thử"

[[villages]]
id = "na-pan"
name = "Thôn Nà Pàn"
nodes = ["n-napan-1", "n-napan-2"]

[[villages]]
id = "ban-chu"
name = "Bản Chu"
nodes = ["n-banchu-1"]

[groups]
tay = ["ban-chu"]

[sources.vov1]
name = "VOV1"
primary = "http://127.0.0.1:9/vov1"
backup = "http://127.0.0.1:9/vov1b"

[[slots]]
id = "vov-sang"
title = "VOV sáng"
kind = "vov_relay"
source = "vov1"
start = "06:00"
end = "06:30"
"""


def write(tmp_path: Path, extra: str, name: str = "xa.toml") -> Path:
    p = tmp_path / name
    p.write_text(HEAD + extra, encoding="utf-8")
    return p


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    hits = [i for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if needle in ln]
    return hits[nth - 1]


def errors(path: Path) -> list[str]:
    with pytest.raises(ScheduleError) as e:
        load_schedule(path)
    assert isinstance(e.value, CommuneFileError)  # the CLI's existing handling prints it
    return [str(p) for p in e.value.problems]


def test_the_example_commune_is_a_full_schedule() -> None:
    s = load_schedule(REPO / "schedules" / "tan-lang.toml")
    assert s.commune.node_ids == load_commune(REPO / "schedules" / "tan-lang.toml").node_ids
    assert s.commune.node_ids == ["tl-napan-1", "tl-banchu-1", "tl-khonpat-1",
                                  "tl-pacluong-1", "tl-nalang-1"]
    kinds = {x.kind for x in s.slots}
    assert {"vov_relay", "province_relay", "local_bulletin"} <= kinds
    assert {x.language for x in s.slots} >= {"vi", "tay"}
    assert (s.quiet_start, s.quiet_end) == (21 * 60 + 45, 5 * 60)
    assert s.holidays and s.holidays[0].name.startswith("Tết")


def test_the_template_loads_with_warnings_only() -> None:
    s = load_schedule(REPO / "schedules" / "templates" / "lang-son.toml")
    text = "\n".join(map(str, s.warnings))
    assert "placeholder address" in text and "chưa có âm thanh" in text
    relays = {(x.kind, x.window) for x in s.slots if x.is_relay}
    assert ("vov_relay", "06:00–06:30") in relays and ("vov_relay", "18:00–18:30") in relays
    assert any(x.language in ("tay", "nung") for x in s.slots)


def test_a_good_file(tmp_path: Path) -> None:
    media = tmp_path / "am-thanh"
    media.mkdir()
    (media / "bt.wav").write_bytes(b"RIFF")
    p = write(tmp_path, """
[[slots]]
id = "ban-tin"
title = "Bản tin"
kind = "local_bulletin"
target = ["na-pan", "group:tay"]
start = 17:30:00
duration = 15
days = ["mon", "Wed"]
from = 2026-01-01
until = "2026-12-31"
except = ["2026-09-02"]
media = "am-thanh/bt.wav"

[[slots]]
id = "bao-dong"
title = "Báo động lũ"
kind = "emergency"
date = "2026-07-01"
start = "23:00"
end = "23:10"
""")
    s = load_schedule(p)
    bt, alarm = s.slot("ban-tin"), s.slot("bao-dong")
    assert bt.villages == ("na-pan", "ban-chu") and bt.start == 17 * 60 + 30
    assert bt.end == 17 * 60 + 45 and bt.days == {0, 2} and bt.media == media / "bt.wav"
    assert not bt.placeholder and bt.priority == NORMAL
    assert alarm.priority == EMERGENCY and alarm.quiet_ok and alarm.placeholder
    assert s.slot("vov-sang").source is not None and s.slot("vov-sang").villages == (
        "na-pan", "ban-chu")


BAD = {
    # name: (extra text, needle for the line, [words in the error])
    "same-class overlap": ("""
[[slots]]
id = "tin-sang"
title = "Tin sáng"
kind = "notice"
start = "06:20"
duration = 20
days = ["mon"]
from = "2026-03-01"
""", 'id = "tin-sang"', ["slot 'tin-sang'", "slot 'vov-sang'", "both class normal",
                         "06:20–06:30", "village 'na-pan'", "n-napan-1", "2026-03-02"]),
    "quiet hours": ("""
[[slots]]
id = "tiep-song-dem"
title = "Tiếp sóng đêm"
kind = "vov_relay"
source = "vov1"
start = "03:15"
end = "03:45"
""", 'start = "03:15"', ["slot 'tiep-song-dem'", "quiet hours", "21:45–05:00",
                         "03:15–03:45", "emergency", "allow_quiet"]),
    "unknown village": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
target = ["na-pan", "khau-phai"]
start = "07:00"
duration = 5
""", "khau-phai", ["slot 'x'", "unknown village 'khau-phai'"]),
    "unknown group": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
target = "group:dao"
start = "07:00"
duration = 5
""", "group:dao", ["slot 'x'", "unknown group 'dao'"]),
    "bad end time": ("""
[[slots]]
id = "ban-tin-t2"
title = "X"
kind = "notice"
start = "17:00"
end = "25:00"
""", 'end = "25:00"', ["slot 'ban-tin-t2'", "end 25:00 is not a time"]),
    "end before start": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
start = "17:00"
end = "16:00"
""", 'end = "16:00"', ["slot 'x'", "not after start", "midnight"]),
    "past midnight": ("""
[[slots]]
id = "x"
title = "X"
kind = "emergency"
start = "23:50"
duration = 20
""", "duration = 20", ["slot 'x'", "past midnight"]),
    "bad weekday": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
start = "07:00"
duration = 5
days = ["mon", "thứ hai"]
""", "days =", ["slot 'x'", "'thứ hai' not a weekday"]),
    "bad date": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
start = "07:00"
duration = 5
date = "2026-02-30"
""", "date =", ["slot 'x'", "2026-02-30 is not a date"]),
    "wrong type": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
start = "07:00"
duration = "15 phút"
""", "duration =", ["slot 'x'", "duration 15 phút must be a whole number"]),
    "wrong type bool": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
start = "07:00"
duration = 5
allow_quiet = "yes"
""", "allow_quiet", ["slot 'x'", "'allow_quiet' must be true or false"]),
    "unknown kind": ("""
[[slots]]
id = "x"
title = "X"
kind = "music"
start = "07:00"
duration = 5
""", 'kind = "music"', ["slot 'x'", "kind music is not one of"]),
    "unknown class": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
class = "urgent"
start = "07:00"
duration = 5
""", 'class = "urgent"', ["slot 'x'", "class urgent is not one of"]),
    "unknown source": ("""
[[slots]]
id = "tinh"
title = "Đài tỉnh"
kind = "province_relay"
source = "lang-son"
start = "17:00"
end = "17:30"
""", 'source = "lang-son"', ["slot 'tinh'", "unknown source lang-son", "vov1"]),
    "duplicate id": ("""
[[slots]]
id = "vov-sang"
title = "VOV again"
kind = "vov_relay"
source = "vov1"
start = "18:00"
end = "18:30"
""", 'title = "VOV again"', ["slot 'vov-sang'", "listed twice"]),
    "unknown key": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
start = "07:00"
duration = 5
tartget = "all"
""", "tartget", ["slot 'x'", "unknown key 'tartget'"]),
    "media missing": ("""
[[slots]]
id = "x"
title = "X"
kind = "notice"
start = "07:00"
duration = 5
media = "khong-co.wav"
""", "media =", ["slot 'x'", "media file 'khong-co.wav' not found"]),
    "bad quiet hours": ("""
[quiet_hours]
start = "9pm"
""", 'start = "9pm"', ["[quiet_hours]", "start 9pm is not a time"]),
    "bad source url": ("""
[sources.tinh]
name = "Đài tỉnh"
primary = "rtsp://cam"
""", "rtsp://cam", ["source 'tinh'", "primary rtsp://cam is not an http(s) stream"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_schedule_names_file_line_and_item(tmp_path: Path, case: str) -> None:
    extra, needle, words = BAD[case]
    p = write(tmp_path, extra)
    found = errors(p)
    # The line of the needle, or of the [[slots]] header just above it.
    line = line_of(p, needle)
    where = (f"{p}:{line}: ", f"{p}:{line - 1}: ")
    hit = [e for e in found if e.startswith(where)]
    assert hit, f"no error at {where}: {found}"
    for w in words:
        assert w in hit[0], f"{w!r} not in {hit[0]!r}"


def test_every_error_is_reported_not_only_the_first(tmp_path: Path) -> None:
    p = write(tmp_path, BAD["bad end time"][0] + BAD["unknown kind"][0].replace('"x"', '"y"')
              + BAD["quiet hours"][0])
    found = errors(p)
    assert len(found) == 3, found
    with pytest.raises(ScheduleError) as e:
        load_schedule(p)
    assert str(e.value).splitlines()[0] == f"{p}: 3 errors"


def test_emergency_and_allow_quiet_may_sound_in_quiet_hours(tmp_path: Path) -> None:
    p = write(tmp_path, """
[[slots]]
id = "canh-bao-lu"
title = "Cảnh báo lũ"
kind = "emergency"
date = "2026-07-01"
start = "03:15"
duration = 10

[[slots]]
id = "tiep-song-dem"
title = "Tiếp sóng đêm (được phép)"
kind = "vov_relay"
source = "vov1"
start = "22:00"
end = "22:30"
allow_quiet = true
""")
    assert {s.id for s in load_schedule(p).slots} == {"vov-sang", "canh-bao-lu", "tiep-song-dem"}


def test_overlaps_that_never_meet_are_fine(tmp_path: Path) -> None:
    # Same hours, same class, but different days, villages or date ranges.
    def bulletin(sid: str, extra: str) -> str:
        return (f'\n[[slots]]\nid = "{sid}"\ntitle = "{sid}"\nkind = "local_bulletin"\n'
                f'start = "17:30"\nduration = 15\n{extra}\n')

    p = write(tmp_path, bulletin("a", 'days = ["mon"]\nexcept = ["2026-06-01"]')
              + bulletin("b", 'days = ["tue"]\ntarget = "group:tay"')
              + bulletin("e", 'days = ["tue"]\ntarget = ["na-pan"]')
              + bulletin("c", 'days = ["wed"]\nuntil = "2026-12-31"')
              + bulletin("d", 'days = ["wed"]\nfrom = "2027-01-01"')
              + bulletin("f", 'date = "2026-06-01"'))  # a Monday, but a has except
    assert len(load_schedule(p).slots) == 7


def test_a_higher_class_cutting_a_recording_is_a_warning(tmp_path: Path) -> None:
    p = write(tmp_path, """
[[slots]]
id = "ban-tin"
title = "Bản tin"
kind = "local_bulletin"
start = "17:30"
duration = 15

[[slots]]
id = "thong-bao"
title = "Thông báo"
kind = "notice"
class = "priority"
start = "17:35"
duration = 5
days = ["fri"]
""")
    s = load_schedule(p)
    text = "\n".join(map(str, s.warnings))
    line = line_of(p, 'id = "ban-tin"') - 1
    assert f"{p}:{line}: slot 'ban-tin': cut by priority slot 'thong-bao' 17:35–17:40" in text
    assert "every fri" in text


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "cp1258.toml"
    p.write_bytes((HEAD + '\n[[slots]]\nid = "x"\ntitle = "').encode()
                  + "Thôn Nà Pàn".encode("cp1258") + b'"\n')
    found = errors(p)
    assert len(found) == 1
    assert found[0].startswith(f"{p}:{HEAD.count(chr(10)) + 4}: not UTF-8")


def test_toml_syntax_error(tmp_path: Path) -> None:
    p = write(tmp_path, '\n[[slots]]\nid = "x"\ntitle = Bản tin\n')
    found = errors(p)
    assert found[0].startswith(f"{p}:{line_of(p, 'title = Bản tin')}: TOML syntax")


def test_commune_problems_keep_their_words(tmp_path: Path) -> None:
    p = write(tmp_path, "").with_name("x.toml")
    p.write_text(HEAD.replace('"n-banchu-1"', '"n-napan-1"'), encoding="utf-8")
    found = errors(p)
    line = line_of(p, 'nodes = ["n-napan-1"]')
    assert found[0].startswith(f"{p}:{line}:")
    assert "listed twice" in found[0]
    with pytest.raises(CommuneFileError, match="listed twice"):
        load_commune(p)


@pytest.mark.parametrize(("name", "slug"), [
    ("Xã Tân Lang", "xa-tan-lang"),
    ("Xã Đồng Đăng", "xa-dong-dang"),
    ("Thị trấn Na Sầm", "thi-tran-na-sam"),
    ("  Xã   Khuất Xá!! ", "xa-khuat-xa"),
    ("Xã Hữu Lũng (mới)", "xa-huu-lung-moi"),
])
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug

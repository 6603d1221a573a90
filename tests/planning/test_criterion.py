"""Criterion 8.3 per ISO week, over plans and over diary-like records alike."""

from __future__ import annotations

import wave
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from support.schedule_files import load, slot

from headend.planning.criterion import (
    MIN_NEWS_SECONDS,
    MIN_RELAY_MINUTES,
    REQUIRED_LOCAL_NEWS,
    Aired,
    aired_from_plan,
    format_week,
    judge,
    judge_plan,
)
from headend.planning.expansion import expand
from headend.planning.schedule import load_schedule

REPO = Path(__file__).resolve().parents[2]
VN = ZoneInfo("Asia/Ho_Chi_Minh")
MONDAY = date(2026, 3, 2)
MIN = 60_000


def at(d: date, hh: int, mm: int = 0) -> int:
    return int(datetime(d.year, d.month, d.day, hh, mm, tzinfo=VN).timestamp() * 1000)


def full_week(skip_vov: set[int] = frozenset(), news: int = 3) -> list[Aired]:  # type: ignore[assignment]
    out = []
    for i in range(7):
        d = MONDAY + timedelta(days=i)
        out.append(Aired(f"tinh@{d}", "province_relay", "vi", at(d, 17), at(d, 17, 30)))
        if i not in skip_vov:
            out.append(Aired(f"vov@{d}", "vov_relay", "vi", at(d, 18), at(d, 18, 30)))
        if i < news:
            out.append(Aired(f"bt@{d}", "local_bulletin", "tay", at(d, 17, 30), at(d, 17, 45)))
    return out


def test_a_full_week_meets_the_criterion() -> None:
    [v] = judge(full_week(), VN, MONDAY, 1)
    assert v.ok and v.week == "2026-W10"
    assert len(v.vov_days) == 7 and len(v.province_days) == 7
    assert len(v.local_news) == REQUIRED_LOCAL_NEWS
    assert v.hours_per_day[0] == 1.25 and v.hours_per_day[6] == 1.0
    assert v.hours_per_language == {"tay": 0.75, "vi": 7.0}
    assert "ĐẠT (met)" in format_week(v)[0]


def test_missing_relay_day_and_news_are_named() -> None:
    [v] = judge(full_week(skip_vov={6}, news=2), VN, MONDAY + timedelta(days=3), 1)
    assert v.monday == MONDAY and not v.ok
    text = "\n".join(format_week(v))
    assert "CHƯA ĐẠT" in text
    assert "tiếp sóng VOV 6/7 ngày (thiếu CN 2026-03-08)" in text
    assert "tin xã tự sản xuất: 2 tin, cần ít nhất 3" in text


def test_diary_records_count_once_however_many_nodes_aired_them() -> None:
    # The diary has one record per node; a bulletin aired by 20 nodes is one item.
    records = [a for a in full_week(news=2) for _ in range(20)]
    [v] = judge(records, VN, MONDAY, 1)
    assert len(v.local_news) == 2 and v.hours_per_day[0] == 1.25


def test_short_relays_and_snippets_do_not_count() -> None:
    d = MONDAY
    short = [Aired(f"vov@{d}", "vov_relay", "vi", at(d, 18), at(d, 18, MIN_RELAY_MINUTES - 1)),
             Aired(f"bt@{d}", "local_bulletin", "vi", at(d, 17), at(d, 17) + 30_000)]
    [v] = judge(short, VN, MONDAY, 1)
    assert not v.vov_days and not v.local_news


def test_a_record_across_midnight_is_split_between_days() -> None:
    sunday = MONDAY + timedelta(days=6)
    rec = Aired("kc@x", "emergency", "vi", at(sunday, 23), at(sunday, 23) + 2 * 3600_000)
    v1, v2 = judge([rec], VN, MONDAY, 2)
    assert v1.hours_per_day[6] == 1.0 and v2.hours_per_day[0] == 1.0


def test_the_plan_of_the_example_commune_counts_no_placeholder() -> None:
    # Its six bulletins a week (Mon/Wed/Fri in Vietnamese to all, Tue/Thu/Sat in Tày to the Tày
    # villages) have no recording yet: slots kept for them, nothing that will air. The relays
    # are complete; the news is not: "0 tin", never "6/3 – Đạt".
    s = load_schedule(REPO / "schedules" / "tan-lang.toml")
    start = at(MONDAY, 0)
    plans = expand(s, start, start + 7 * 86_400_000)
    [v] = judge(aired_from_plan(plans), VN, MONDAY, 1)
    assert [v] == judge_plan(s, MONDAY + timedelta(days=4), 1)
    assert len(v.vov_days) == 7 and len(v.province_days) == 7
    assert v.local_news == () and v.short_news == () and not v.ok
    assert [d.weekday() for d, _ in v.placeholders] == [0, 1, 2, 3, 4, 5]
    assert [occ for _, occ in v.placeholders][:2] == ["ban-tin-xa@2026-03-02",
                                                      "ban-tin-tay@2026-03-03"]
    assert v.news_text == "0 tin, cần ít nhất 3"
    assert v.warnings == ["6 bản tin thiếu bản ghi, không tính (T2 02/03, T3 03/03, T4 04/03, "
                          "T5 05/03, T6 06/03, T7 07/03)"]
    assert v.missing == ["tin xã tự sản xuất: 0 tin, cần ít nhất 3"]
    # A placeholder never sounds: no Tày hours until a Tày bulletin has a recording.
    assert set(v.hours_per_language) == {"vi"}


# --- What counts: the audio's own length, not the slot's -------------------------------------

def silence_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A recording of `seconds` (8-bit silence: the length is what matters here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(b"\x80" * int(seconds * rate))
    return path


def relays() -> str:
    return (slot("vov", "vov_relay", "06:00", "06:30")
            + slot("tinh", "province_relay", "17:00", "17:30"))


def test_a_short_bulletin_in_a_longer_slot_does_not_count_however_often_it_is_placed(
        tmp_path: Path) -> None:
    silence_wav(tmp_path / "dai.wav", 75)
    silence_wav(tmp_path / "vua.wav", MIN_NEWS_SECONDS)
    silence_wav(tmp_path / "ngan.wav", 19)
    s = load(tmp_path, relays()
             + slot("dai", "local_bulletin", "17:30", "17:45", days='["mon"]',
                    media='"dai.wav"')
             # 19 s in a one-minute slot, on two days: the bug counted it as 2 items of 60 s.
             + slot("ngan", "local_bulletin", "17:30", "17:31", days='["tue", "thu"]',
                    media='"ngan.wav"')
             + slot("cho", "local_bulletin", "17:30", "17:45", days='["wed"]')
             + slot("vua", "local_bulletin", "17:30", "17:31", days='["fri"]',
                    media='"vua.wav"'))
    assert [s.slot(x).audio_ms for x in ("dai", "ngan", "cho", "vua")] == [
        75_000, 19_000, None, MIN_NEWS_SECONDS * 1000]
    [v] = judge_plan(s, MONDAY, 1)
    assert [(d.weekday(), occ.split("@")[0]) for d, occ in v.local_news] == [
        (0, "dai"), (4, "vua")]
    assert [(d.weekday(), occ.split("@")[0]) for d, occ in v.short_news] == [
        (1, "ngan"), (3, "ngan")]
    assert [(d.weekday(), occ.split("@")[0]) for d, occ in v.placeholders] == [(2, "cho")]
    assert v.relays_ok and not v.news_ok and not v.ok
    assert v.news_text == "2 tin, cần ít nhất 3"
    assert v.warnings == ["1 bản tin thiếu bản ghi, không tính (T4 04/03)",
                          "2 bản tin ngắn dưới 60 giây, không tính (T3 03/03, T5 05/03)"]
    # The hours are the audio's too: Tuesday has its relays and 19 s of bulletin.
    assert round(v.hours_per_day[1] * 3_600_000) == 3_619_000
    assert round(v.hours_per_day[2] * 3_600_000) == 3_600_000  # a placeholder never sounds
    text = "\n".join(format_week(v))
    assert "2 tin, cần ít nhất 3 (items counted)" in text
    assert ("  Không tính (not counted): 1 bản tin thiếu bản ghi (no recording yet): "
            "cho@2026-03-04") in text
    assert ("  Không tính (not counted): 2 bản tin ngắn dưới 60 giây (shorter than 60 s): "
            "ngan@2026-03-03, ngan@2026-03-05") in text
    assert "CHƯA ĐẠT" in text


def test_a_bulletin_cut_by_a_higher_class_sounds_until_its_audio_ends(tmp_path: Path) -> None:
    # 17:30-17:45, cut 17:31-17:33 by a priority notice: the first segment sounds 60 s; the
    # second starts 180 s into the item (time-anchored), so 200 s of audio gives 20 s more and
    # 150 s of audio nothing more.
    silence_wav(tmp_path / "a.wav", 200)
    silence_wav(tmp_path / "b.wav", 150)
    silence_wav(tmp_path / "c.wav", 50)
    cut = slot("tb", "notice", "17:31", "17:33", **{"class": '"priority"'})
    for name, sounded in (("a", 80), ("b", 60), ("c", 50)):
        s = load(tmp_path, cut + slot("bt", "local_bulletin", "17:30", "17:45",
                                      days='["mon"]', media=f'"{name}.wav"'))
        plans = expand(s, at(MONDAY, 0), at(MONDAY, 0) + 86_400_000)
        news = [a for a in aired_from_plan(plans) if a.kind == "local_bulletin"]
        assert sum(a.end_ms - a.start_ms for a in news) == sounded * 1000, name
        [v] = judge_plan(s, MONDAY, 1)
        assert len(v.local_news) == (sounded >= MIN_NEWS_SECONDS), name
        assert len(v.short_news) == (sounded < MIN_NEWS_SECONDS), name
        assert v.placeholders == ()  # the notice has no media, but it is not news


def test_a_recording_whose_length_cannot_be_read_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "hong.wav").write_bytes(b"RIFF" + b"\0" * 60)
    s = load(tmp_path, slot("bt", "local_bulletin", "17:30", "17:45", days='["mon"]',
                            media='"hong.wav"'))
    assert s.slot("bt").audio_ms is None and not s.slot("bt").placeholder  # it is sent
    assert any("không đọc được độ dài âm thanh" in str(w) and "slot 'bt'" in str(w)
               for w in s.warnings)
    [v] = judge_plan(s, MONDAY, 1)
    assert v.local_news == () and [occ for _, occ in v.short_news] == ["bt@2026-03-02"]


def test_what_the_diary_says_sounded_is_what_counts() -> None:
    # Nodes report when the audio ended: 19 s of a bulletin, or 45 s of one cut off by a
    # fault, is not a news item; a placeholder never reaches the diary.
    d = MONDAY
    records = [Aired(f"bt@{d}", "local_bulletin", "vi", at(d, 17, 30), at(d, 17, 30) + 19_000),
               Aired(f"bt2@{d}", "local_bulletin", "vi", at(d, 18), at(d, 18) + 45_000),
               Aired(f"bt3@{d}", "local_bulletin", "vi", at(d, 19), at(d, 19) + 61_000)]
    [v] = judge([r for r in records for _ in range(3)], VN, MONDAY, 1)
    assert [occ for _, occ in v.local_news] == [f"bt3@{d}"]
    assert {occ for _, occ in v.short_news} == {f"bt@{d}", f"bt2@{d}"}
    assert v.placeholders == () and v.news_text == "1 tin, cần ít nhất 3"

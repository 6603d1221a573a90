"""Criterion 8.3 of the New Rural Area programme, week by week (seed 003, docs/schedules.md).

The station must relay the time slots of VOV and of the provincial station, and broadcast at
least 3 locally produced news items a week. `judge` works on a neutral list of `Aired` items, so
the same function judges the plan (`aired_from_plan`, before the week) and the diary (what the
nodes reported, after it).

What "relays every day" means here: on each of the 7 days of the ISO week (Monday to Sunday, in
the commune's timezone) at least MIN_RELAY_MINUTES of a VOV relay and as much of a provincial
relay sounded somewhere in the commune. The thresholds are the constants below.

What counts as a local news item: a local bulletin occurrence of which at least MIN_NEWS_SECONDS
sounded. In the plan, a bulletin sounds for its own audio's length, not its slot's (a 19-second
recording in a one-minute slot sounds 19 s; the node stops when the audio ends), and a
placeholder (a slot kept for a bulletin that has no recording yet) sounds not at all. Neither
counts; the verdict lists them apart (`placeholders`, "thiếu bản ghi", and `short_news`) so
every view can warn about them. This is the one rule: the calendar badge, the overview, `loaxa
schedule check`, the monthly report and the API all read `WeekVerdict`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from headend.planning.expansion import PlanEntry, expand
from headend.planning.schedule import Schedule

REQUIRED_VOV_DAYS = 7  # days a week with the VOV relay
REQUIRED_PROVINCE_DAYS = 7  # days a week with the provincial relay
REQUIRED_LOCAL_NEWS = 3  # locally produced news items a week ("ít nhất 03 tin/tuần")
MIN_RELAY_MINUTES = 15  # a relay counts for a day when this much of it sounded that day
MIN_NEWS_SECONDS = 60  # a bulletin counts when this much of it sounded
LOCAL_NEWS_KINDS = frozenset({"local_bulletin"})
DAY_LABELS = ("T2", "T3", "T4", "T5", "T6", "T7", "CN")  # Thứ Hai .. Chủ nhật


@dataclass(frozen=True)
class Aired:
    """Something that sounded (or, for a plan, will): one node's record or one plan segment.

    The same occurrence may appear many times (one per node, one per segment); `judge` counts
    occurrences and merges time, so duplicates do not inflate anything. A plan's placeholder
    (a recorded item without audio) is kept, flagged, so the verdict can name it; it never
    sounds.
    """

    occurrence: str
    kind: str
    language: str
    start_ms: int
    end_ms: int
    placeholder: bool = False


@dataclass(frozen=True)
class WeekVerdict:
    monday: date
    vov_days: frozenset[date]
    province_days: frozenset[date]
    local_news: tuple[tuple[date, str], ...]  # (day, occurrence), sorted: what counts
    hours_per_day: tuple[float, ...]  # Monday..Sunday
    hours_per_language: dict[str, float] = field(default_factory=dict)
    # Local bulletins that do not count, (day, occurrence), sorted: planned without a
    # recording ("thiếu bản ghi"), and sounding less than MIN_NEWS_SECONDS.
    placeholders: tuple[tuple[date, str], ...] = ()
    short_news: tuple[tuple[date, str], ...] = ()

    @property
    def week(self) -> str:
        y, w, _ = self.monday.isocalendar()
        return f"{y}-W{w:02d}"

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @property
    def relays_ok(self) -> bool:
        return (len(self.vov_days) >= REQUIRED_VOV_DAYS
                and len(self.province_days) >= REQUIRED_PROVINCE_DAYS)

    @property
    def news_ok(self) -> bool:
        return len(self.local_news) >= REQUIRED_LOCAL_NEWS

    @property
    def news_text(self) -> str:
        """What is counted, against what is needed: "5 tin, cần ít nhất 3"."""
        return f"{len(self.local_news)} tin, cần ít nhất {REQUIRED_LOCAL_NEWS}"

    @property
    def placeholder_warning(self) -> str | None:
        if not self.placeholders:
            return None
        return (f"{len(self.placeholders)} bản tin thiếu bản ghi, không tính "
                f"({_days(self.placeholders)})")

    @property
    def short_warning(self) -> str | None:
        if not self.short_news:
            return None
        return (f"{len(self.short_news)} bản tin ngắn dưới {MIN_NEWS_SECONDS} giây, không "
                f"tính ({_days(self.short_news)})")

    @property
    def warnings(self) -> list[str]:
        """The bulletins that do not count, in Vietnamese for the officer."""
        return [w for w in (self.placeholder_warning, self.short_warning) if w]

    @property
    def missing(self) -> list[str]:
        out = []
        days = [self.monday + timedelta(days=i) for i in range(7)]
        if len(self.vov_days) < REQUIRED_VOV_DAYS:
            gaps = [d for d in days if d not in self.vov_days]
            out.append(f"tiếp sóng VOV {len(self.vov_days)}/{REQUIRED_VOV_DAYS} ngày "
                       f"(thiếu {', '.join(_day(d) for d in gaps)})")
        if len(self.province_days) < REQUIRED_PROVINCE_DAYS:
            gaps = [d for d in days if d not in self.province_days]
            out.append(f"tiếp sóng Đài tỉnh {len(self.province_days)}/"
                       f"{REQUIRED_PROVINCE_DAYS} ngày (thiếu {', '.join(map(_day, gaps))})")
        if not self.news_ok:
            out.append(f"tin xã tự sản xuất: {self.news_text}")
        return out

    @property
    def ok(self) -> bool:
        return not self.missing


def _day(d: date) -> str:
    return f"{DAY_LABELS[d.weekday()]} {d.isoformat()}"


def _days(items: Sequence[tuple[date, str]]) -> str:
    """The days of (day, occurrence) items, each once: "T2 23/11, T4 25/11"."""
    return ", ".join(f"{DAY_LABELS[d.weekday()]} {d.strftime('%d/%m')}"
                     for d in dict.fromkeys(d for d, _ in items))


def _merged_ms(spans: list[tuple[int, int]]) -> int:
    """Total length of the union of [start, end) spans."""
    total, cur_s, cur_e = 0, 0, -1
    for s, e in sorted(spans):
        if s > cur_e:
            total += max(0, cur_e - cur_s)
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + max(0, cur_e - cur_s)


def _midnight_ms(d: date, tz: ZoneInfo) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000)


def judge(aired: Iterable[Aired], tz: ZoneInfo, first_monday: date,
          weeks: int) -> list[WeekVerdict]:
    """One verdict per ISO week from `first_monday` (moved back to its Monday)."""
    monday = first_monday - timedelta(days=first_monday.weekday())
    days = [monday + timedelta(days=i) for i in range(7 * weeks + 1)]
    bounds = [_midnight_ms(d, tz) for d in days]
    n_days = 7 * weeks
    everything: list[list[tuple[int, int]]] = [[] for _ in range(n_days)]
    relay: dict[str, list[list[tuple[int, int]]]] = {
        k: [[] for _ in range(n_days)] for k in ("vov_relay", "province_relay")}
    language: list[dict[str, list[tuple[int, int]]]] = [{} for _ in range(weeks)]
    news: dict[str, list[tuple[int, int]]] = {}
    waiting: dict[str, int] = {}  # placeholder occurrence -> its first start
    for a in aired:
        # A span of no length (a plan's bulletin with no sound) still names its occurrence.
        if a.start_ms >= bounds[-1] or max(a.end_ms, a.start_ms + 1) <= bounds[0]:
            continue
        if a.kind in LOCAL_NEWS_KINDS:
            if a.placeholder:
                waiting[a.occurrence] = min(waiting.get(a.occurrence, a.start_ms), a.start_ms)
            else:
                news.setdefault(a.occurrence, []).append((a.start_ms, a.end_ms))
        if a.placeholder or a.end_ms <= a.start_ms:
            continue  # nothing sounds
        i = max(0, bisect.bisect_right(bounds, a.start_ms) - 1)
        while i < n_days and bounds[i] < a.end_ms:  # a diary item may cross midnight
            span = (max(a.start_ms, bounds[i]), min(a.end_ms, bounds[i + 1]))
            everything[i].append(span)
            if a.kind in relay:
                relay[a.kind][i].append(span)
            language[i // 7].setdefault(a.language, []).append(span)
            i += 1
    need = MIN_RELAY_MINUTES * 60_000
    news_days: list[list[tuple[date, str]]] = [[] for _ in range(weeks)]
    short_days: list[list[tuple[date, str]]] = [[] for _ in range(weeks)]
    waiting_days: list[list[tuple[date, str]]] = [[] for _ in range(weeks)]

    def file(into: list[list[tuple[date, str]]], occ: str, start: int) -> None:
        i = max(0, bisect.bisect_right(bounds, start) - 1)
        if i < n_days:
            into[i // 7].append((days[i], occ))

    for occ, spans in news.items():
        counts = _merged_ms(spans) >= MIN_NEWS_SECONDS * 1000
        file(news_days if counts else short_days, occ, min(s for s, _ in spans))
    for occ, start in waiting.items():
        if occ not in news:
            file(waiting_days, occ, start)
    out = []
    for w in range(weeks):
        r = range(7 * w, 7 * w + 7)
        out.append(WeekVerdict(
            monday=days[7 * w],
            vov_days=frozenset(days[i] for i in r
                               if _merged_ms(relay["vov_relay"][i]) >= need),
            province_days=frozenset(days[i] for i in r
                                    if _merged_ms(relay["province_relay"][i]) >= need),
            local_news=tuple(sorted(news_days[w])),
            hours_per_day=tuple(_merged_ms(everything[i]) / 3_600_000 for i in r),
            hours_per_language={lang: _merged_ms(spans) / 3_600_000
                                for lang, spans in sorted(language[w].items())},
            placeholders=tuple(sorted(waiting_days[w])),
            short_news=tuple(sorted(short_days[w])),
        ))
    return out


def aired_from_plan(plans: Mapping[str, Sequence[PlanEntry]]) -> list[Aired]:
    """The plan as if it all aired as planned: one Aired per distinct segment (not one per
    node). A recorded item sounds for its own audio's length, not its slot's: each segment
    ends where the audio does (segments are time-anchored, see expansion), and one past the
    audio's end sounds nothing; a recording whose length is unknown sounds nothing either. A
    placeholder (no recording) is flagged: it is never sent, so it never sounds."""
    seen: dict[tuple[str, int, int], Aired] = {}
    for e in (e for entries in plans.values() for e in entries):
        key = (e.id, e.start_ms, e.end_ms)
        if key in seen:
            continue
        end = e.end_ms
        if e.media is not None:
            audio_end = e.start_ms - e.offset_ms + (e.audio_ms or 0)
            end = max(e.start_ms, min(end, audio_end))
        seen[key] = Aired(e.occurrence, e.kind, e.language, e.start_ms, end,
                          placeholder=e.placeholder)
    return list(seen.values())


def judge_plan(schedule: Schedule, first_monday: date, weeks: int) -> list[WeekVerdict]:
    """The schedule (with the calendar's edits, if the caller applied them) judged week by week
    as if everything aired as planned: what `loaxa schedule check`, the calendar badge, the
    overview and the API show before a week has aired."""
    tz = ZoneInfo(schedule.commune.timezone)
    monday = first_monday - timedelta(days=first_monday.weekday())
    lo = _midnight_ms(monday, tz)
    hi = _midnight_ms(monday + timedelta(days=7 * weeks), tz)
    return judge(aired_from_plan(expand(schedule, lo, hi)), tz, monday, weeks)


def format_week(v: WeekVerdict) -> list[str]:
    """The week as a plain-text table, Vietnamese labels with English in brackets."""
    days = [v.monday + timedelta(days=i) for i in range(7)]
    sunday = days[-1]
    verdict = "ĐẠT (met)" if v.ok else "CHƯA ĐẠT (falls short)"
    head = f"{'':<34}" + "".join(f"{DAY_LABELS[i]:>6}" for i in range(7)) + "   tuần (week)"

    def row(label: str, cells: list[str], total: str) -> str:
        return f"{label:<34}" + "".join(f"{c:>6}" for c in cells) + f"   {total}"

    per_day_news = [sum(1 for d, _ in v.local_news if d == day) for day in days]
    lines = [
        f"Tuần {v.week} (week) {v.monday.isoformat()} – {sunday.isoformat()}: {verdict}",
        head,
        row("Tiếp sóng VOV (VOV relay)", ["x" if d in v.vov_days else "-" for d in days],
            f"{len(v.vov_days)}/{REQUIRED_VOV_DAYS} ngày (days)"),
        row("Tiếp sóng Đài tỉnh (provincial)",
            ["x" if d in v.province_days else "-" for d in days],
            f"{len(v.province_days)}/{REQUIRED_PROVINCE_DAYS} ngày (days)"),
        row("Tin xã tự sản xuất (local news)", [str(n) for n in per_day_news],
            f"{v.news_text} (items counted)"),
        row("Giờ phát (hours on air)", [f"{h:.2f}" for h in v.hours_per_day],
            f"{sum(v.hours_per_day):.2f} giờ (h)"),
        "Theo ngôn ngữ (per language): " + (", ".join(
            f"{lang} {h:.2f} giờ (h)" for lang, h in v.hours_per_language.items()) or "-"),
    ]
    lines.extend(f"  Không tính (not counted): {w}" for w in _not_counted(v))
    lines.extend(f"  Thiếu (missing): {m}" for m in v.missing)
    return lines


def _not_counted(v: WeekVerdict) -> list[str]:
    """The bulletins that do not count, named (a terminal has room), English in brackets."""
    out = []
    if v.placeholders:
        out.append(f"{len(v.placeholders)} bản tin thiếu bản ghi (no recording yet): "
                   + ", ".join(occ for _, occ in v.placeholders))
    if v.short_news:
        out.append(f"{len(v.short_news)} bản tin ngắn dưới {MIN_NEWS_SECONDS} giây (shorter "
                   f"than {MIN_NEWS_SECONDS} s): " + ", ".join(occ for _, occ in v.short_news))
    return out

"""The monthly report on criterion 8.3 (seed 003): what aired, and whether the commune met it.

From the commune's diary lines for the month (`commune_diary.lines_for_days`, the same lines the
exported diary shows, corrections applied):

- hours on air by source (VOV relay, provincial relay, local production = bulletins, notices and
  emergencies) and by language, from the time each item sounded;
- per ISO week (Monday to Sunday, commune time): the days with a VOV and a provincial relay and the
  locally produced news items, judged by `criterion.judge` with its thresholds (7 relay days each,
  at least 3 news items, each a bulletin of which at least 60 s aired; shorter ones are named
  apart). A week that straddles two months is judged whole, on its seven days, and
  appears in the report of both months; a week that has not ended is shown but not judged;
- the share of villages whose loudspeakers work, against 2/3 (standard level) and 90 %
  (mountainous communes) or 100 % (lowland communes) for the advanced level.

A village's loudspeakers WORK in the month when the village aired, fully or in part, at least
WORKING_SHARE (90 %) of the programme items addressed to it that month whose time has come
(planned items listing the village and broadcasts sent to it). Partial airings count: the speakers
sounded. An item with no report from the village counts as not aired: the diary has no evidence
that it sounded. A village with no item due in the month has no evidence either and does not count
as working.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

from sqlalchemy import Engine

from headend.diary.exports import (
    SOURCE_VI,
    Document,
    Table,
    Totals,
    aired_s,
    commune_label,
    hours_text,
    place_name,
    province_label,
    source_group,
    totals,
    tz_line,
    vn_date,
    write_document,
)
from headend.diary.reconciliation import (
    AIRED,
    LANGUAGE_VI,
    PARTIAL,
    PLANNED,
    CommuneInfo,
    DiaryQueryError,
    ProgrammeLine,
    lines_for_days,
    local_day,
)
from headend.planning.criterion import (
    MIN_NEWS_SECONDS,
    REQUIRED_LOCAL_NEWS,
    REQUIRED_PROVINCE_DAYS,
    REQUIRED_VOV_DAYS,
    Aired,
    WeekVerdict,
    judge,
)

WORKING_SHARE = Fraction(9, 10)  # of a village's due items aired, for "its loudspeakers work"
STANDARD_SHARE = Fraction(2, 3)  # of villages with working loudspeakers: standard level
ADVANCED_SHARE = {"mountainous": Fraction(9, 10), "lowland": Fraction(1)}  # advanced level
MET, NOT_MET, NOT_JUDGED = "Đạt", "Chưa đạt", "Chưa đánh giá"


@dataclass(frozen=True)
class VillageMonth:
    name: str
    due: int  # items addressed to the village whose time has come
    aired: int  # of those, aired fully or in part

    @property
    def working(self) -> bool:
        return self.due > 0 and self.aired >= WORKING_SHARE * self.due


@dataclass(frozen=True)
class WeekResult:
    verdict: WeekVerdict
    complete: bool  # the week had ended when the report was made

    @property
    def relays_ok(self) -> bool:
        return self.verdict.relays_ok

    @property
    def news_ok(self) -> bool:
        return self.verdict.news_ok


@dataclass(frozen=True)
class CriterionResult:
    label: str
    requirement: str
    actual: str
    met: bool | None  # None: nothing to judge yet

    @property
    def verdict(self) -> str:
        return NOT_JUDGED if self.met is None else MET if self.met else NOT_MET


@dataclass(frozen=True)
class MonthlyReport:
    info: CommuneInfo
    year: int
    month: int
    complete: bool  # the month had ended when the report was made
    totals: Totals
    items_by_source: dict[str, int]  # aired items per SOURCE_VI group
    hours_by_language: dict[str, float]  # language code -> hours
    weeks: list[WeekResult]
    villages: list[VillageMonth]
    criteria: list[CriterionResult]

    @property
    def first(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def hours_by_source(self) -> dict[str, float]:
        return {g: s / 3600 for g, s in self.totals.airtime_s.items()}

    @property
    def working_villages(self) -> int:
        return sum(1 for v in self.villages if v.working)


def monthly_report(engine: Engine, commune_id: str, year: int, month: int,
                   now_ms: int) -> MonthlyReport:
    """The commune's month. Raises DiaryQueryError for an unknown commune or month."""
    if not 1 <= month <= 12 or not 1 <= year <= 9998:
        raise DiaryQueryError(f"no such month: {year}-{month:02d}")
    first = date(year, month, 1)
    last = date(year, month, calendar.monthrange(year, month)[1])
    monday = first - timedelta(days=first.weekday())
    sunday = last + timedelta(days=6 - last.weekday())
    info, wide = lines_for_days(engine, commune_id, monday, sunday, now_ms)
    lines = [x for x in wide if first <= local_day(x.sort_ms, info.tz) <= last]

    by_source = dict.fromkeys(SOURCE_VI, 0)
    by_language: dict[str, float] = {}
    for x in lines:
        if x.outcome in (AIRED, PARTIAL):
            by_source[source_group(x.kind)] += 1
            by_language[x.language] = by_language.get(x.language, 0.0) + aired_s(x) / 3600

    n_weeks = ((sunday - monday).days + 1) // 7
    ends = [_midnight_ms(monday + timedelta(days=7 * (w + 1)), info) for w in range(n_weeks)]
    weeks = [WeekResult(v, ends[i] <= now_ms)
             for i, v in enumerate(judge(_aired(wide), info.tz, monday, n_weeks))]
    villages = village_months(info, lines)
    complete = _midnight_ms(last + timedelta(days=1), info) <= now_ms
    report = MonthlyReport(info, year, month, complete, totals(lines), by_source,
                           dict(sorted(by_language.items(), key=lambda kv: -kv[1])), weeks,
                           villages, [])
    report.criteria.extend(_criteria(report))
    return report


def _midnight_ms(d: date, info: CommuneInfo) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=info.tz).timestamp() * 1000)


def _aired(lines: Sequence[ProgrammeLine]) -> list[Aired]:
    """What sounded, for `criterion.judge`: each aired item from its first start to its last
    end in any village (the diary's actual times). Taken from the commune's diary lines rather
    than `diary.aired_between`, which reads every commune's records and ignores corrections."""
    return [Aired(x.key, x.kind, x.language, x.start_ms, x.end_ms) for x in lines
            if x.outcome in (AIRED, PARTIAL) and x.start_ms is not None and x.end_ms is not None]


def village_months(info: CommuneInfo, lines: Sequence[ProgrammeLine]) -> list[VillageMonth]:
    """Per village: the items due for it in `lines` and how many it aired."""
    due = dict.fromkeys(info.villages.values(), 0)
    aired = dict.fromkeys(info.villages.values(), 0)
    for x in lines:
        for v in x.villages:
            if v.outcome == PLANNED:
                continue  # not due yet
            due[v.village] = due.get(v.village, 0) + 1
            if v.outcome in (AIRED, PARTIAL):
                aired[v.village] = aired.get(v.village, 0) + 1
    return [VillageMonth(name, due[name], aired.get(name, 0)) for name in due]


def _pct(f: Fraction | float) -> str:
    return f"{float(f) * 100:.1f}".replace(".", ",").removesuffix(",0") + " %"


def _criteria(r: MonthlyReport) -> list[CriterionResult]:
    judged = [w for w in r.weeks if w.complete]
    out = []
    ok_relay = sum(1 for w in judged if w.relays_ok)
    out.append(CriterionResult(
        "Tiếp sóng chương trình của Đài TNVN (VOV) và Đài PT-TH tỉnh",
        f"Hằng ngày: VOV {REQUIRED_VOV_DAYS}/7 ngày và Đài tỉnh {REQUIRED_PROVINCE_DAYS}/7 "
        "ngày mỗi tuần",
        f"{ok_relay}/{len(judged)} tuần đủ",
        None if not judged else ok_relay == len(judged)))
    ok_news = sum(1 for w in judged if w.news_ok)
    fewest = min((len(w.verdict.local_news) for w in judged), default=0)
    out.append(CriterionResult(
        "Tin, bài địa phương tự sản xuất",
        f"Ít nhất {REQUIRED_LOCAL_NEWS} tin/tuần",
        f"{ok_news}/{len(judged)} tuần đạt; tuần ít nhất {fewest} tin",
        None if not judged else ok_news == len(judged)))
    n = len(r.villages)
    working = r.working_villages
    share = Fraction(working, n) if n else Fraction(0)
    actual = f"{working}/{n} thôn ({_pct(share)})"
    out.append(CriterionResult(
        "Thôn có hệ thống loa hoạt động (mức đạt chuẩn)",
        f"Ít nhất 2/3 số thôn ({_pct(STANDARD_SHARE)})", actual,
        None if not n else share >= STANDARD_SHARE))
    terrain = "lowland" if r.info.terrain == "lowland" else "mountainous"
    need = ADVANCED_SHARE[terrain]
    where = "xã đồng bằng" if terrain == "lowland" else "xã miền núi"
    out.append(CriterionResult(
        "Thôn có hệ thống loa hoạt động thường xuyên (mức nâng cao)",
        f"{_pct(need)} số thôn ({where})", actual, None if not n else share >= need))
    return out


# --- rendering -----------------------------------------------------------------------------


def monthly_document(r: MonthlyReport) -> Document:
    t = r.totals
    sources = [[label, str(r.items_by_source[g]), hours_text(t.airtime_s[g])]
               for g, label in SOURCE_VI.items() if g != "other" or t.airtime_s[g]]
    sources.append(["Tổng cộng", str(t.aired), hours_text(t.total_airtime_s)])
    languages = [[LANGUAGE_VI.get(code, code), hours_text(round(h * 3600))]
                 for code, h in r.hours_by_language.items()] or [["—", hours_text(0)]]
    weeks = []
    for w in r.weeks:
        v = w.verdict
        y, n, _ = v.monday.isocalendar()
        result = (("Đạt" if w.relays_ok and w.news_ok else "Chưa đạt") if w.complete
                  else "Tuần chưa kết thúc")
        weeks.append([f"Tuần {n:02d}/{y}",
                      f"{vn_date(v.monday)}–{vn_date(v.monday + timedelta(days=6))}",
                      f"{len(v.vov_days)}/7", f"{len(v.province_days)}/7", v.news_text,
                      result])
    villages = [[v.name, str(v.due), str(v.aired),
                 _pct(Fraction(v.aired, v.due)) if v.due else "—",
                 "Có" if v.working else "Không"] for v in r.villages]
    criteria = [[c.label, c.requirement, c.actual, c.verdict] for c in r.criteria]
    subtitle = [f"Tháng {r.month:02d} năm {r.year} (từ ngày {vn_date(r.first)} đến ngày "
                f"{vn_date(r.last)})", tz_line(r.info.tz, r.first)]
    if not r.complete:
        subtitle.append("Số liệu tạm tính: tháng chưa kết thúc")
    summary = [
        f"Tổng số lượt phát: {t.items} (đã phát: {t.aired}; không phát: {t.not_aired}"
        + (f"; chưa đến giờ: {t.pending})" if t.pending else ")"),
        "Thôn có loa hoạt động: thôn đã phát (toàn bộ hoặc một phần) ít nhất "
        f"{_pct(WORKING_SHARE)} số lượt phát dành cho thôn trong tháng.",
        f"Tin địa phương: chỉ tính bản tin đã phát ít nhất {MIN_NEWS_SECONDS} giây; bản tin "
        "chưa có bản ghi không được phát nên không tính.",
    ]
    for w in r.weeks:  # the bulletins that aired but do not count, week by week
        y, n, _ = w.verdict.monday.isocalendar()
        summary += [f"Tuần {n:02d}/{y}: {text}." for text in w.verdict.warnings]
    return Document(
        province_label(r.info), commune_label(r.info),
        "BÁO CÁO THÁNG VỀ HOẠT ĐỘNG ĐÀI TRUYỀN THANH XÃ", subtitle,
        [Table(("Nguồn chương trình", "Số lượt đã phát", "Thời lượng"), (90, 40, 50),
               sources, "1. Thời lượng phát theo nguồn"),
         Table(("Ngôn ngữ", "Thời lượng"), (90, 50), languages,
               "2. Thời lượng phát theo ngôn ngữ"),
         Table(("Tuần", "Từ ngày – đến ngày", "Tiếp sóng VOV", "Tiếp sóng Đài tỉnh",
                "Tin địa phương", "Kết quả"), (25, 55, 35, 35, 35, 40), weeks,
               "3. Tiếp sóng và tin địa phương theo tuần"),
         Table(("Thôn", "Lượt phát theo lịch", "Lượt đã phát", "Tỉ lệ", "Loa hoạt động"),
               (60, 40, 40, 30, 35), villages, "4. Thôn có loa hoạt động"),
         Table(("Tiêu chí 8.3", "Yêu cầu", "Thực tế", "Kết quả"), (100, 75, 65, 37),
               criteria, "5. Đánh giá tiêu chí 8.3 (thông tin và truyền thông)")],
        summary, place_name(r.info), signatures=("Người lập báo cáo", "Trưởng ban biên tập"))


def render_text(r: MonthlyReport) -> str:
    """The report as plain text for a terminal."""
    doc = monthly_document(r)
    out = [doc.province, doc.commune, "", doc.title, *doc.subtitle]
    for table in doc.tables:
        out += ["", table.title]
        cells = [list(table.columns), *table.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
        for j, row in enumerate(cells):
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                       .rstrip())
            if j == 0:
                out.append("  " + "  ".join("-" * w for w in widths))
    out += ["", *doc.summary]
    return "\n".join(out) + "\n"


def export_monthly(r: MonthlyReport, fmt: str, output: Path,
                   progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the report as pdf, xlsx or csv (see headend.diary.exports); raises ExportError."""
    write_document(monthly_document(r), fmt, Path(output), progress)
    return Path(output)

"""Criterion 8.3 for a commune's week, as the pages show it: what aired (the diary) beside what
the schedule, with the calendar's edits, plans; and the villages whose loudspeakers worked."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from headend.diary.monthly import STANDARD_SHARE, village_months
from headend.diary.reading import aired_between, day_bounds_ms
from headend.diary.reconciliation import LANGUAGE_VI, commune_info, commune_lines
from headend.planning.criterion import (
    MIN_NEWS_SECONDS,
    REQUIRED_LOCAL_NEWS,
    REQUIRED_PROVINCE_DAYS,
    REQUIRED_VOV_DAYS,
    WeekVerdict,
    judge,
    judge_plan,
)
from headend.planning.schedule import Schedule, ScheduleError
from headend.web.context import WebContext


def _criterion_rows(v: WeekVerdict) -> dict[str, Any]:
    days = [v.monday + timedelta(days=i) for i in range(7)]
    return {
        "week": v.week, "monday": v.monday, "sunday": days[-1], "ok": v.ok,
        "vov": len(v.vov_days), "province": len(v.province_days), "news": len(v.local_news),
        "hours": f"{sum(v.hours_per_day):.1f}".replace(".", ","),
        "languages": ", ".join(f"{LANGUAGE_VI.get(lang, lang)} {h:.1f} giờ".replace(".", ",")
                               for lang, h in v.hours_per_language.items()) or "—",
        "vov_need": REQUIRED_VOV_DAYS, "province_need": REQUIRED_PROVINCE_DAYS,
        "news_need": REQUIRED_LOCAL_NEWS,
        # Bulletins that do not count, shown apart with a warning (criterion.WeekVerdict).
        "placeholders": len(v.placeholders), "short": len(v.short_news),
        "min_news_s": MIN_NEWS_SECONDS,
    }


def criterion_weeks(ctx: WebContext, commune_id: str, day: date, tz: ZoneInfo,
                    today: date, schedule: Schedule | ScheduleError | None,
                    villages: bool = True) -> dict[str, Any] | None:
    """Criterion 8.3 for the week of `day`: what aired (the diary) and, for this week and
    later ones, what `schedule` (the commune's, with the calendar's edits, as
    `ctx.schedule_or_error` gives it) plans; with `villages`, the villages whose loudspeakers
    worked (the slow part: every village's records). None for a week at the end of the
    calendar."""
    monday = day - timedelta(days=day.weekday())
    try:
        lo, _ = day_bounds_ms(monday, tz)
        hi, _ = day_bounds_ms(monday + timedelta(days=7), tz)
    except OverflowError:
        return None
    (aired,) = judge(aired_between(ctx.engine, lo, hi, commune_id), tz, monday, 1)
    out: dict[str, Any] = {"aired": _criterion_rows(aired), "planned": None, "plan_error": None,
                           "villages": _working_villages(ctx.engine, commune_id, lo, hi,
                                                         ctx.now()) if villages else None}
    if monday + timedelta(days=6) >= today:
        if isinstance(schedule, ScheduleError):
            out["plan_error"] = f"Lịch phát có lỗi: {schedule}"
        elif schedule is not None:
            (planned,) = judge_plan(schedule, monday, 1)
            out["planned"] = _criterion_rows(planned)
    return out


def _working_villages(engine: Engine, commune_id: str, lo: int, hi: int,
                      now_ms: int) -> dict[str, Any] | None:
    """The other half of 8.3: villages whose loudspeakers worked this week (aired at least
    90 % of the items due for them so far), against 2/3 of the commune's villages."""
    info = commune_info(engine, commune_id)
    months = village_months(info, commune_lines(engine, info, lo, hi, now_ms))
    due = [v for v in months if v.due]
    if not due:
        return None
    working = sum(v.working for v in months)
    return {"working": working, "total": len(months),
            "ok": working >= STANDARD_SHARE * len(months),
            "silent": [v.name for v in due if not v.working]}

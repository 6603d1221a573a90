"""The commune's week calendar: relays, bulletins, notices and emergencies in their colours,
the week's criterion 8.3 badge for this and next week, and forms (checked on the server) to put
an approved bulletin on a day, move an item or take it off."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from headend.core.auth import SCHEDULE, VIEW, Principal
from headend.diary.reading import commune_name, commune_timezone
from headend.diary.reconciliation import KIND_VI, LANGUAGE_VI
from headend.media import bulletins
from headend.planning import calendar as calendar_items
from headend.planning.calendar import LOCK_MIN, CalendarError, Occurrence
from headend.planning.schedule import DAY_MINUTES, Schedule, ScheduleError, hhmm
from headend.web.context import WebContext, parse_day
from headend.web.pages.criterion import criterion_weeks

WEEKDAY_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật")
KLASS_VI = {"normal": "", "priority": "ưu tiên", "emergency": "khẩn cấp"}


def parse_time(raw: str) -> int:
    """"17:30" -> minutes after midnight; CalendarError in Vietnamese otherwise."""
    try:
        h, m = (int(x) for x in raw.strip().split(":")[:2])
    except ValueError:
        raise CalendarError(f"Giờ không hợp lệ: “{raw[:20]}” (cần dạng GIỜ:PHÚT, ví dụ "
                            "17:30).") from None
    if not (0 <= h < 24 and 0 <= m < 60):
        raise CalendarError(f"Giờ không hợp lệ: “{raw[:20]}”.")
    return h * 60 + m


def _date_field(raw: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise CalendarError(f"Ngày không hợp lệ: “{raw[:20]}”.") from None


def week_view(schedule: Schedule, monday: date, now_ms: int,
              village_names: dict[str, str]) -> list[dict[str, Any]]:
    """Seven days of items for the page, each with whether it can still be changed."""
    tz = ZoneInfo(schedule.commune.timezone)
    now = datetime.fromtimestamp(now_ms / 1000, tz)
    today, minute = now.date(), now.hour * 60 + now.minute
    everyone = len(schedule.commune.villages)
    days = []
    for i in range(7):
        day = monday + timedelta(days=i)
        items = []
        for o in calendar_items.occurrences(schedule, day, day):
            ahead = (day - today).days * DAY_MINUTES + o.start - minute
            items.append(_item(o, ahead >= LOCK_MIN, everyone, village_names))
        days.append({"day": day, "name": WEEKDAY_VI[i], "today": day == today, "entries": items})
    return days


def _item(o: Occurrence, editable: bool, everyone: int,
          village_names: dict[str, str]) -> dict[str, Any]:
    where = ("Toàn xã" if len(o.villages) == everyone
             else ", ".join(village_names.get(v, v) for v in o.villages))
    return {"ref": o.ref, "window": o.window, "start": hhmm(o.start), "title": o.title,
            "kind": o.kind, "kind_vi": KIND_VI.get(o.kind, o.kind),
            "klass_vi": KLASS_VI.get(o.klass, ""), "where": where, "origin": o.origin,
            "placeholder": o.placeholder, "editable": editable}


def calendar_router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    me_dep = Depends(ctx.user)

    def usable(loaded: Schedule | ScheduleError | None) -> Schedule:
        """The schedule, or a clear page when the commune has no usable one."""
        if isinstance(loaded, ScheduleError):
            raise HTTPException(503, f"Lịch phát của xã có lỗi, kỹ thuật viên cần sửa tệp "
                                     f"lịch: {loaded}")
        if loaded is None:
            raise HTTPException(404, "Xã này chưa có lịch phát trên máy chủ này.")
        return loaded

    def file_schedule(commune_id: str) -> Schedule:
        """The schedule file alone: calendar edits are checked against it plus the edits."""
        f = ctx.schedule_files.get(commune_id)
        try:
            loaded: Schedule | ScheduleError | None = f.get() if f is not None else None
        except ScheduleError as e:
            loaded = e
        return usable(loaded)

    def render(request: Request, me: Principal, commune_id: str, week: date | None,
               error: str | None = None, done: str | None = None,
               status_code: int = 200) -> Response:
        loaded = ctx.schedule_or_error(commune_id)
        schedule = usable(loaded)
        tz = commune_timezone(ctx.engine, commune_id)
        today = ctx.today(tz)
        day = week or today
        monday = day - timedelta(days=day.weekday())
        names = {v.id: v.name for v in schedule.commune.villages}
        approved = bulletins.listing(ctx.engine, commune_id, "approved")
        badges = []
        for label, d in (("Tuần này", today), ("Tuần sau", today + timedelta(days=7))):
            c = criterion_weeks(ctx, commune_id, d, tz, today, loaded, villages=False)
            if c is not None:
                badges.append({"label": label, **c})
        return ctx.page(request, "calendar.html", me, {
            "commune_id": commune_id, "commune": commune_name(ctx.engine, commune_id),
            "monday": monday, "sunday": monday + timedelta(days=6),
            "prev_week": monday - timedelta(days=7), "next_week": monday + timedelta(days=7),
            "days": week_view(schedule, monday, ctx.now(), names),
            "villages": schedule.commune.villages, "approved": approved,
            "badges": badges, "today": today, "error": error, "done": done,
            "can_edit": me.can(SCHEDULE), "lock_min": LOCK_MIN,
            "languages": LANGUAGE_VI,
        }, status_code=status_code)

    @r.get("/c/{commune_id}/calendar")
    def calendar(request: Request, commune_id: str, week: str | None = None,
                 done: str | None = None, me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        return render(request, me, commune_id, parse_day(week, None),
                      done=DONE_VI.get(done or ""))

    def edit(request: Request, me: Principal, commune_id: str, csrf: str, back: str,
             change: Any, what: str) -> Response:
        me.check(SCHEDULE, commune_id)
        ctx.check_csrf(request, me, csrf)
        schedule = file_schedule(commune_id)
        try:
            week: date | None = date.fromisoformat(back)  # the week to show afterwards
        except ValueError:
            week = None
        try:
            change(schedule)
        except CalendarError as e:
            return render(request, me, commune_id, week, error=str(e), status_code=422)
        if ctx.on_schedule_change is not None:
            ctx.on_schedule_change()
        q = f"?done={what}" + (f"&week={week.isoformat()}" if week else "")
        return RedirectResponse(f"/c/{commune_id}/calendar{q}", status_code=303)

    @r.post("/c/{commune_id}/calendar/add")
    def add(request: Request, commune_id: str, bulletin: str = Form(""), day: str = Form(""),
            start: str = Form(""), villages: Annotated[list[str] | None, Form()] = None,
            csrf: str = Form(""), week: str = Form(""), me: Principal = me_dep) -> Response:
        def change(raw: Schedule) -> None:
            if not bulletin.isdigit():
                raise CalendarError("Hãy chọn một bản tin đã duyệt.")
            calendar_items.add_item(ctx.engine, raw, ctx.media_dir, ctx.actor(request, me),
                                    int(bulletin), _date_field(day), parse_time(start),
                                    [v for v in villages or [] if v != "*"], ctx.now())
        return edit(request, me, commune_id, csrf, week or day, change, "add")

    @r.post("/c/{commune_id}/calendar/move")
    def move(request: Request, commune_id: str, ref: str = Form(""), day: str = Form(""),
             start: str = Form(""), csrf: str = Form(""), week: str = Form(""),
             me: Principal = me_dep) -> Response:
        def change(raw: Schedule) -> None:
            calendar_items.move(ctx.engine, raw, ctx.media_dir, ctx.actor(request, me), ref,
                                _date_field(day), parse_time(start), ctx.now())
        return edit(request, me, commune_id, csrf, week, change, "move")

    @r.post("/c/{commune_id}/calendar/remove")
    def remove(request: Request, commune_id: str, ref: str = Form(""), csrf: str = Form(""),
               week: str = Form(""), me: Principal = me_dep) -> Response:
        def change(raw: Schedule) -> None:
            calendar_items.remove(ctx.engine, raw, ctx.media_dir, ctx.actor(request, me), ref,
                                  ctx.now())
        return edit(request, me, commune_id, csrf, week, change, "remove")

    return r


DONE_VI = {"add": "Đã đưa bản tin vào lịch. Các cụm loa sẽ nhận lịch mới trong ít phút.",
           "move": "Đã dời giờ phát.", "remove": "Đã bỏ mục này khỏi lịch."}

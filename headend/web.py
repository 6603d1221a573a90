"""The web page (nodes and a day's diary, in Vietnamese), its JSON API, and media for nodes.

People get HTML error pages in Vietnamese; /api/ and /media/ (read by programs and nodes) get
JSON. A broken database answers 503 and the server keeps running.
"""

from __future__ import annotations

import http
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from headend.commune_diary import LANGUAGE_VI, OUTCOME_VI, commune_info, commune_lines
from headend.criterion import (
    REQUIRED_LOCAL_NEWS,
    REQUIRED_PROVINCE_DAYS,
    REQUIRED_VOV_DAYS,
    WeekVerdict,
    aired_from_plan,
    judge,
)
from headend.diary import (
    DiaryRow,
    aired_between,
    commune_name,
    commune_timezone,
    day_bounds_ms,
    diary_for_day,
    first_commune_id,
    node_rows,
    time_of_day,
)
from headend.monthly import STANDARD_SHARE, village_months
from headend.plan import expand
from headend.schedule import Schedule, ScheduleError, load_schedule
from headend.web_diary import diary_router

log = logging.getLogger("loaxa.web")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
MEDIA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
MACHINE_PREFIXES = ("/api/", "/media/")

# Reasons the firmware writes into as-run records; others are shown as the node sent them.
REASON_VI = {
    "stopped": "bị dừng giữa chừng",
    "stopped before start": "bị dừng trước khi phát",
    "stream ended early": "nguồn phát bị ngắt giữa chừng",
}
ERROR_VI = {
    400: ("Yêu cầu không hợp lệ", "Địa chỉ trang có chỗ không đúng."),
    404: ("Không tìm thấy trang", "Trang này không có. Hãy quay về trang chính."),
    405: ("Không thực hiện được", "Trang này không nhận thao tác đó."),
    503: ("Tạm thời không xem được",
          "Không đọc được cơ sở dữ liệu của LoaXa. Hãy báo kỹ thuật viên kiểm tra thư mục "
          "trạng thái và tệp loaxa.db."),
}
DB_ERROR_VI = ERROR_VI[503][1]


def _fmt_seen(ms: int | None, tz: ZoneInfo, today: date) -> str:
    if ms is None:
        return "Chưa liên lạc"
    t = datetime.fromtimestamp(ms / 1000, tz)
    if t.date() == today:
        return t.strftime("%H:%M:%S")  # a time alone is today's
    return t.strftime("%H:%M %d/%m/%Y")


def _commune_title(name: str | None) -> str:
    """"Xã Tân Lang" -> "xã Tân Lang", to follow "Đài truyền thanh"."""
    if not name:
        return "xã"
    for unit in ("Xã ", "Phường ", "Thị trấn ", "Đặc khu "):
        if name.startswith(unit):
            return unit.lower() + name[len(unit):]
    return name


def _iso(ms: int | None, tz: ZoneInfo) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz).isoformat()


def _fmt_duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{h} giờ"] if h else []
    if m:
        parts.append(f"{m} phút")
    if s or not parts:
        parts.append(f"{s} giây")
    return " ".join(parts)


def _reason_vi(reason: str | None) -> str | None:
    if not reason:
        return None
    return REASON_VI.get(reason, reason)


def _shift(day: date, days: int) -> date | None:
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return None


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _parse_day(raw: str | None, today: date) -> date:
    if raw is None or raw == "":
        return today
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(
            400, f"Ngày không hợp lệ: “{raw[:40]}”. Hãy ghi ngày theo dạng NĂM-THÁNG-NGÀY, "
                 "ví dụ 2026-11-22."
        ) from None


def _diary_json(r: DiaryRow, tz: ZoneInfo) -> dict[str, Any]:
    return dict(asdict(r), duration_s=r.duration_s, start_local=_iso(r.start_ms, tz),
                end_local=_iso(r.end_ms, tz), planned_local=_iso(r.planned_ms, tz))


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(MACHINE_PREFIXES)


def _error_page(request: Request, status: int, message: str | None = None) -> Response:
    title, default = ERROR_VI.get(status, ("Có lỗi xảy ra", "Hãy thử lại sau ít phút."))
    return TEMPLATES.TemplateResponse(
        request, "error.html", {"status": status, "title": title, "message": message or default},
        status_code=status,
    )


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
    }


class ScheduleFile:
    """The schedule file, read again only when it changes (the page reloads every 5 s)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int] | None = None
        self._loaded: Schedule | ScheduleError | None = None

    def get(self) -> Schedule:
        """The schedule; ScheduleError when the file is broken or gone."""
        try:
            st = self.path.stat()
            key: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            key = None  # load_schedule says what is wrong
        if key is None or key != self._key or self._loaded is None:
            try:
                self._loaded = load_schedule(self.path)
            except ScheduleError as e:
                self._loaded = e
            self._key = key
        if isinstance(self._loaded, ScheduleError):
            raise self._loaded
        return self._loaded


def criterion_weeks(engine: Engine, schedule_file: ScheduleFile | None, day: date, tz: ZoneInfo,
                    today: date, now_ms: int | None = None) -> dict[str, Any] | None:
    """Criterion 8.3 for the week of `day`: what aired (the diary) and, for this week and
    later ones, what the schedule plans. None for a week at the end of the calendar."""
    monday = day - timedelta(days=day.weekday())
    try:
        lo, _ = day_bounds_ms(monday, tz)
        hi, _ = day_bounds_ms(monday + timedelta(days=7), tz)
    except OverflowError:
        return None
    (aired,) = judge(aired_between(engine, lo, hi), tz, monday, 1)
    out: dict[str, Any] = {"aired": _criterion_rows(aired), "planned": None, "plan_error": None,
                           "villages": _working_villages(engine, lo, hi, now_ms)}
    if schedule_file is not None and monday + timedelta(days=6) >= today:
        try:
            schedule = schedule_file.get()
        except ScheduleError as e:
            out["plan_error"] = f"Lịch phát có lỗi: {e}"
        else:
            (planned,) = judge(aired_from_plan(expand(schedule, lo, hi)), tz, monday, 1)
            out["planned"] = _criterion_rows(planned)
    return out


def _working_villages(engine: Engine, lo: int, hi: int,
                      now_ms: int | None) -> dict[str, Any] | None:
    """The other half of 8.3: villages whose loudspeakers worked this week (aired at least
    90 % of the items due for them so far), against 2/3 of the commune's villages."""
    commune_id = first_commune_id(engine)
    if commune_id is None or now_ms is None:
        return None
    info = commune_info(engine, commune_id)
    months = village_months(info, commune_lines(engine, info, lo, hi, now_ms))
    due = [v for v in months if v.due]
    if not due:
        return None
    working = sum(v.working for v in months)
    return {"working": working, "total": len(months),
            "ok": working >= STANDARD_SHARE * len(months),
            "silent": [v.name for v in due if not v.working]}


def make_app(engine: Engine, media_dir: Path,
             clock: Callable[[], int] = _wall_clock_ms,
             schedule_path: Path | None = None) -> FastAPI:
    """The app over `engine`; `clock` (UTC ms) decides which day is "today"; with a schedule
    file the page also shows what it plans against criterion 8.3."""
    schedule_file = ScheduleFile(schedule_path) if schedule_path is not None else None
    app = FastAPI(title="LoaXa", summary="Commune radio headend")
    media_root = media_dir.resolve()

    def today(tz: ZoneInfo) -> date:
        return datetime.fromtimestamp(clock() / 1000, tz).date()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                headers=exc.headers)
        # Starlette's own errors carry the English phrase ("Not Found"): show ours instead.
        try:
            phrase = http.HTTPStatus(exc.status_code).phrase
        except ValueError:
            phrase = ""
        own = exc.detail if exc.detail and exc.detail != phrase else None
        return _error_page(request, exc.status_code, own)

    @app.exception_handler(SQLAlchemyError)
    async def db_error(request: Request, exc: SQLAlchemyError) -> Response:
        log.error("database error on %s: %s", request.url.path, exc)
        if _wants_json(request):
            return JSONResponse({"detail": DB_ERROR_VI}, status_code=503)
        return _error_page(request, 503)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, day: str | None = None) -> Response:
        tz = commune_timezone(engine)
        now_day = today(tz)
        d = _parse_day(day, now_day)
        nodes = node_rows(engine)
        diary = diary_for_day(engine, d, tz)
        name = commune_name(engine)
        commune_id = first_commune_id(engine)
        criterion = criterion_weeks(engine, schedule_file, d, tz, now_day, clock())
        return TEMPLATES.TemplateResponse(request, "index.html", {
            "criterion": criterion,
            "commune": name or "", "commune_title": _commune_title(name),
            "commune_id": commune_id,
            "day": d, "today": now_day, "tz": tz,
            "tz_label": "giờ Việt Nam" if tz.key == "Asia/Ho_Chi_Minh" else f"múi giờ {tz.key}",
            "prev_day": _shift(d, -1), "next_day": _shift(d, 1),
            "online": sum(n.online for n in nodes),
            "nodes": [dict(asdict(n), seen=_fmt_seen(n.last_seen_ms, tz, now_day)) for n in nodes],
            "diary": [dict(asdict(r), start=time_of_day(r.start_ms, tz),
                           end=time_of_day(r.end_ms, tz), planned=time_of_day(r.planned_ms, tz),
                           duration=_fmt_duration(r.duration_s),
                           outcome_vi=OUTCOME_VI.get(r.outcome, r.outcome),
                           reason_vi=_reason_vi(r.reason))
                      for r in diary],
        })

    @app.get("/api/nodes")
    def api_nodes() -> list[dict[str, Any]]:
        tz = commune_timezone(engine)
        return [dict(asdict(n), last_seen_local=_iso(n.last_seen_ms, tz))
                for n in node_rows(engine)]

    @app.get("/api/diary")
    def api_diary(day: str | None = None) -> list[dict[str, Any]]:
        tz = commune_timezone(engine)
        d = _parse_day(day, today(tz))
        return [_diary_json(r, tz) for r in diary_for_day(engine, d, tz)]

    @app.get("/media/{name}")
    def media(name: str) -> FileResponse:
        # Names only: no directories, no dotfiles, nothing that resolves outside media_dir.
        if not MEDIA_NAME.match(name):
            raise HTTPException(404, "no such media")
        path = (media_root / name).resolve()
        if path.parent != media_root or not path.is_file():
            raise HTTPException(404, "no such media")
        return FileResponse(path)

    app.include_router(diary_router(engine, clock, TEMPLATES))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

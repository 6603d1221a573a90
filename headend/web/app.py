"""The web app: the officer's pages (in Vietnamese), the JSON API, and media for nodes.

Everything but the log-in form, /healthz, /static/ (the pages' stylesheet and scripts) and
/media/ needs a logged-in user, and each page checks the user's role and communes
(headend/core/auth.py); /media/ checks its own (a user who sees the file's commune, or a node
with the token of its URL: headend/media/access.py). People get HTML error pages in
Vietnamese; /api/, /metrics and /media/ (read by programs and nodes) get JSON. A broken
database answers 503 and the server keeps running. Every response carries the security
headers of web/headers.py.
"""

from __future__ import annotations

import gc
import http
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from headend.api.v1 import API_DESCRIPTION, api_router
from headend.core import i18n
from headend.core.auth import VIEW, Forbidden, LoginLimiter, Principal
from headend.diary.reading import (
    NODE_STATE_VI,
    commune_name,
    commune_rows,
    commune_timezone,
    diary_for_day,
    first_commune_id,
    node_rows,
    time_of_day,
)
from headend.diary.reasons import reason_vi
from headend.diary.reconciliation import OUTCOME_VI
from headend.media import access
from headend.media.access import MEDIA_NAME
from headend.planning.schedule import ScheduleError, load_schedule
from headend.web.context import (
    FIRST_DAY,
    LAST_DAY,
    CsrfFailed,
    LoginRequired,
    ScheduleFile,
    WebContext,
    auth_router,
    home_path,
    login_redirect,
    parse_day,
    wall_clock_ms,
)
from headend.web.docs import docs_router
from headend.web.headers import SecurityHeaders
from headend.web.pages.bulletins import bulletin_router
from headend.web.pages.calendar import calendar_router
from headend.web.pages.commune import commune_health, commune_router
from headend.web.pages.criterion import criterion_weeks
from headend.web.pages.diary import diary_router
from headend.web.pages.emergency import emergency_router

log = logging.getLogger("loaxa.web")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC_DIR = Path(__file__).parent / "static"
NO_MEDIA = "no such media"
MACHINE_PREFIXES = ("/api/", "/media/", "/metrics")
LOGIN_VI = "Cần đăng nhập (hoặc mã truy cập API hợp lệ: Authorization: Bearer ...)."
CSRF_VI = ("Biểu mẫu đã cũ hoặc phiên làm việc đã hết hạn. Hãy tải lại trang rồi làm lại "
           "(không có gì bị thay đổi).")

ERROR_VI = {
    400: ("Yêu cầu không hợp lệ", "Địa chỉ trang có chỗ không đúng."),
    403: ("Không có quyền", "Tài khoản của bạn không được xem hoặc làm việc này."),
    404: ("Không tìm thấy trang", "Trang này không có. Hãy quay về trang chính."),
    405: ("Không thực hiện được", "Trang này không nhận thao tác đó."),
    503: ("Tạm thời không xem được",
          "Không đọc được cơ sở dữ liệu của LoaXa. Hãy báo kỹ thuật viên kiểm tra thư mục "
          "trạng thái và tệp loaxa.db."),
}
DB_ERROR_VI = ERROR_VI[503][1]
# What a query value that FastAPI could not take needed, by pydantic's error type.
QUERY_NEEDS_VI = {
    "int_parsing": "cần một số nguyên",
    "int_from_float": "cần một số nguyên",
    "bool_parsing": "cần true hoặc false",
    "greater_than_equal": "số nhỏ quá",
    "greater_than": "số nhỏ quá",
    "less_than_equal": "số lớn quá",
    "less_than": "số lớn quá",
}


def _query_error_vi(errors: Sequence[Any]) -> str:
    """The first bad query value in Vietnamese: which parameter, what was sent, what it needs."""
    e = next(e for e in errors if e.get("loc", ("",))[0] == "query")
    name = str(e["loc"][-1]) if len(e["loc"]) > 1 else "?"
    sent = str(e.get("input", ""))[:40]
    need = QUERY_NEEDS_VI.get(e.get("type", ""), "giá trị không đúng")
    return f"Giá trị không hợp lệ ở “{name}”: “{sent}” ({need})."


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


def _shift(day: date, days: int) -> date | None:
    """The day before or after, for the page's arrows; None past the days pages show."""
    try:
        shifted = day + timedelta(days=days)
    except OverflowError:
        return None
    return shifted if FIRST_DAY <= shifted <= LAST_DAY else None


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(MACHINE_PREFIXES)


def _error_page(request: Request, status: int, message: str | None = None) -> Response:
    title, default = ERROR_VI.get(status, ("Có lỗi xảy ra", "Hãy thử lại sau ít phút."))
    return TEMPLATES.TemplateResponse(
        request, "error.html", {"status": status, "title": title, "message": message or default,
                                **i18n.page_values(request)},
        status_code=status,
    )


def _schedule_files(engine: Engine, schedule_path: Path | None,
                    schedule_paths: Mapping[str, Path] | None) -> dict[str, ScheduleFile]:
    files = {cid: ScheduleFile(path) for cid, path in (schedule_paths or {}).items()}
    if schedule_path is not None:
        try:
            cid: str | None = load_schedule(schedule_path).commune.id
        except ScheduleError:
            cid = first_commune_id(engine)  # broken now: the page says so
        if cid is not None:
            files.setdefault(cid, ScheduleFile(schedule_path))
    return files


def make_app(engine: Engine, media_dir: Path,
             clock: Callable[[], int] = wall_clock_ms,
             schedule_path: Path | None = None, *,
             schedule_paths: Mapping[str, Path] | None = None,
             emergency: Callable[..., Awaitable[Any]] | None = None,
             limiter: LoginLimiter | None = None,
             secure_cookies: bool = False,
             on_schedule_change: Callable[[], None] | None = None) -> FastAPI:
    """The web app over `engine`; `clock` (UTC ms) decides which day is "today"; the schedule
    files (one per commune) give the calendar and the planned side of criterion 8.3;
    `emergency` sends through the running headend."""
    ctx = WebContext(engine, media_dir, TEMPLATES, clock, limiter or LoginLimiter(),
                     secure_cookies, emergency,
                     _schedule_files(engine, schedule_path, schedule_paths),
                     on_schedule_change)
    # FastAPI's own /docs, /redoc and /openapi.json are open to anyone and load from a CDN:
    # ours are behind the login, with Swagger UI's files served here (web/docs.py).
    app = FastAPI(title="LoaXa", summary="Commune radio headend",
                  description=API_DESCRIPTION, version="1", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(SecurityHeaders)
    # The pages' stylesheet and scripts: the CSP allows no inline ones (web/headers.py).
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    media_root = media_dir.resolve()
    me_dep = Depends(ctx.user)

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

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": LOGIN_VI}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return login_redirect(request)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=403)
        return _error_page(request, 403, str(exc))

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": CSRF_VI}, status_code=403)
        return _error_page(request, 403, CSRF_VI)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # A path that is no id (/bulletins/abc, an id past MAX_ID) names no page: 404. A bad
        # query value: 400 in Vietnamese, never pydantic's English. Bodies keep FastAPI's 422.
        errors = exc.errors()
        places = {e.get("loc", ("",))[0] for e in errors}
        if "path" in places:
            return await http_error(request, StarletteHTTPException(404))
        if "query" in places:
            return await http_error(request, StarletteHTTPException(400, _query_error_vi(errors)))
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(SQLAlchemyError)
    async def db_error(request: Request, exc: SQLAlchemyError) -> Response:
        log.error("database error on %s: %s", request.url.path, exc)
        if _wants_json(request):
            return JSONResponse({"detail": DB_ERROR_VI}, status_code=503)
        return _error_page(request, 503)

    @app.get("/", response_class=HTMLResponse)
    def root(request: Request) -> Response:
        return RedirectResponse(home_path(ctx.user(request)), status_code=303)

    @app.get("/communes", response_class=HTMLResponse)
    def communes(request: Request, me: Principal = me_dep) -> Response:
        me.check(VIEW)
        rows = [c for c in commune_rows(engine) if me.sees(c["id"])]
        return ctx.page(request, "communes.html", me, communes=rows)

    @app.get("/c/{commune_id}", response_class=HTMLResponse)
    def overview(request: Request, commune_id: str, day: str | None = None,
                 me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        name = commune_name(engine, commune_id)
        if name is None:
            raise HTTPException(404, "Không có xã này.")
        tz = commune_timezone(engine, commune_id)
        now_day = ctx.today(tz)
        d = parse_day(day, now_day)
        nodes = node_rows(engine, [commune_id])
        diary = diary_for_day(engine, d, tz, commune_id)
        criterion = criterion_weeks(ctx, commune_id, d, tz, now_day,
                                    ctx.schedule_or_error(commune_id))
        return ctx.page(request, "index.html", me, {
            "criterion": criterion,
            "commune": name, "commune_title": _commune_title(name),
            "commune_id": commune_id,
            "day": d, "today": now_day, "tz": tz,
            "tz_label": "giờ Việt Nam" if tz.key == "Asia/Ho_Chi_Minh" else f"múi giờ {tz.key}",
            "prev_day": _shift(d, -1), "next_day": _shift(d, 1),
            **commune_health(engine, commune_id, nodes, tz,
                             i18n.translator(i18n.lang_of(request))),
            "nodes": [dict(asdict(n), state=n.state, state_vi=NODE_STATE_VI[n.state],
                           seen=_fmt_seen(n.last_seen_ms, tz, now_day)) for n in nodes],
            "diary": [dict(asdict(r), start=time_of_day(r.start_ms, tz),
                           end=time_of_day(r.end_ms, tz), planned=time_of_day(r.planned_ms, tz),
                           duration=_fmt_duration(r.duration_s),
                           outcome_vi=OUTCOME_VI.get(r.outcome, r.outcome),
                           reason_vi=reason_vi(r.reason))
                      for r in diary],
        })

    @app.get("/media/{name}")
    def media(request: Request, name: str, n: str = "", t: str = "") -> FileResponse:
        """A file for a node whose URL carries its token (n, t), or for a logged-in user who
        sees a commune using it (headend/media/access.py). Anyone else, a wrong token, a file
        that does not exist: the same 404, so nothing tells them apart."""
        # Names only: no directories, no dotfiles, nothing that resolves outside media_dir.
        if not MEDIA_NAME.fullmatch(name):
            raise HTTPException(404, NO_MEDIA)
        path = (media_root / name).resolve()
        if path.parent != media_root or not path.is_file():
            raise HTTPException(404, NO_MEDIA)
        if n or t:
            allowed = access.node_may_fetch(engine, n[:64], t[:64], name)
        else:
            try:
                me: Principal | None = ctx.user(request)
            except LoginRequired:
                me = None
            allowed = me is not None and access.user_may_fetch(engine, me, name)
        if not allowed:
            raise HTTPException(404, NO_MEDIA)
        return FileResponse(path)

    app.include_router(auth_router(ctx))
    app.include_router(diary_router(ctx))
    app.include_router(calendar_router(ctx))
    app.include_router(bulletin_router(ctx))
    app.include_router(emergency_router(ctx))
    app.include_router(commune_router(ctx))
    app.include_router(api_router(ctx))
    app.include_router(docs_router(ctx, app))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Everything loaded so far lives as long as the process: keep it out of the garbage
    # collector's full passes, which otherwise scanned it every dozen page loads and added
    # about 100 ms to that request (loaxa bench web).
    gc.collect()
    gc.freeze()
    return app

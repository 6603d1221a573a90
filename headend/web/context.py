"""Logging in to the web app and what every page and API endpoint shares: who is asking
(a session cookie, or a bearer token for the API) and whether they may.

Pages call `ctx.user(request)` (through `Depends`) and then `me.check(permission, commune)`.
Forms that change something carry the session's CSRF token (`csrf` field or X-CSRF-Token
header); requests with a bearer token carry no cookies, so they need none.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from headend.core import audit, auth, i18n
from headend.core.auth import IMPORT, Forbidden, LoginLimiter, Principal
from headend.planning.calendar import effective
from headend.planning.schedule import Schedule, ScheduleError, load_schedule

SESSION_COOKIE = "loaxa_session"
# The log-in form's CSRF token, before there is a session to hold one: a random value in a
# cookie that only this site can set, repeated in the form (another site can send neither).
LOGIN_CSRF_COOKIE = "loaxa_login_csrf"
D = TypeVar("D")
LOGIN_ERROR_VI = "Sai tên đăng nhập hoặc mật khẩu."
LOGIN_CSRF_VI = ("Trang đăng nhập đã cũ hoặc không đến từ LoaXa. Hãy đăng nhập lại trên "
                 "trang này.")


class LoginRequired(Exception):
    """No valid session or token: pages send people to the log-in form, the API says 401."""


class CsrfFailed(Exception):
    """A form sent without the session's CSRF token (or with another session's)."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# The days the pages and the API look at: wide enough for any diary, narrow enough that no
# arithmetic on them (a week's Sunday, a day's UTC bounds, a month's end) can overflow.
FIRST_DAY: Final = date(2000, 1, 1)
LAST_DAY: Final = date(2099, 12, 31)
DAY_RANGE_VI: Final = "LoaXa chỉ xem được các ngày từ 01/01/2000 đến 31/12/2099"
# The largest integer SQLite (and PostgreSQL's bigint) stores: a larger id is no row, and
# binding it raised OverflowError (a 500).
MAX_ID: Final = 2**63 - 1
# An id in a page's path: a number from 1 to MAX_ID, else the page does not exist (404).
PathId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def day_in_range(day: date, raw: str) -> date:
    """`day` when the pages can show it; 400 in Vietnamese when it is too early or too late."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise HTTPException(400, f"Ngày nằm ngoài khoảng cho phép: “{raw[:40]}”. "
                                 f"{DAY_RANGE_VI}.")
    return day


def parse_day(raw: str | None, default: D) -> date | D:
    """A YYYY-MM-DD query parameter; `default` when absent; 400 in Vietnamese when wrong."""
    if not raw:
        return default
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(400, f"Ngày không hợp lệ: “{raw[:40]}”. Hãy ghi ngày theo dạng "
                                 "NĂM-THÁNG-NGÀY, ví dụ 2026-11-22.") from None
    return day_in_range(day, raw)


def same_token(sent: str, expected: str) -> bool:
    """A token as sent against the one expected, in constant time; bytes, because
    compare_digest raises on non-ASCII text (an attacker's form would give a 500)."""
    return bool(sent and expected) and secrets.compare_digest(sent.encode(), expected.encode())


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


TRUSTED_PROXY_ENV = "LOAXA_TRUSTED_PROXY"


def proxy_options() -> dict[str, Any]:
    """uvicorn's settings for X-Forwarded-For: believed only from the reverse proxy named in
    $LOAXA_TRUSTED_PROXY (its address); without one, never (anyone can write the header, and
    the log-in limiter and the audit log would take it for the peer)."""
    trusted = os.environ.get(TRUSTED_PROXY_ENV, "").strip()
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted}


class ScheduleFile:
    """A schedule file, read again only when it changes (pages reload often)."""

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


@dataclass
class WebContext:
    """What the web app's routers share."""

    engine: Engine
    media_dir: Path
    templates: Jinja2Templates
    clock: Callable[[], int] = wall_clock_ms
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    secure_cookies: bool = False
    # Sends an emergency through the running headend (None when the web app runs alone).
    emergency: Callable[..., Awaitable[Any]] | None = None
    schedule_files: dict[str, ScheduleFile] = field(default_factory=dict)
    # Called (from a worker thread) after the calendar changed, to publish plans at once.
    on_schedule_change: Callable[[], None] | None = None

    def now(self) -> int:
        return self.clock()

    def today(self, tz: ZoneInfo) -> date:
        return datetime.fromtimestamp(self.clock() / 1000, tz).date()

    def schedule(self, commune_id: str) -> Schedule | None:
        """The commune's schedule with the calendar's edits; None when it has no schedule
        file here; ScheduleError when the file is broken."""
        f = self.schedule_files.get(commune_id)
        if f is None:
            return None
        return effective(self.engine, f.get(), self.media_dir)

    def schedule_or_error(self, commune_id: str) -> Schedule | ScheduleError | None:
        """`schedule()`, with a broken file's error returned for the page to show."""
        try:
            return self.schedule(commune_id)
        except ScheduleError as e:
            return e

    def user(self, request: Request) -> Principal:
        """The principal of this request, or LoginRequired."""
        cached = getattr(request.state, "principal", None)
        if isinstance(cached, Principal):
            return cached
        header = request.headers.get("authorization", "")
        me: Principal | None = None
        if header.lower().startswith("bearer ") and request.url.path.startswith("/api/"):
            # Tokens are for tools on the API; the pages and their forms need a person.
            me = auth.token_principal(self.engine, header[7:].strip(), self.now())
        elif cookie := request.cookies.get(SESSION_COOKIE):
            me = auth.session_principal(self.engine, cookie, self.now())
        if me is None:
            raise LoginRequired()
        if me.scopes is not None and IMPORT not in me.scopes \
                and request.method not in ("GET", "HEAD"):
            raise Forbidden("Mã truy cập này chỉ được đọc (a read-only API token).")
        request.state.principal = me
        return me

    def actor(self, request: Request, me: Principal) -> audit.Actor:
        return audit.Actor(me.username, me.role, client_ip(request))

    def check_csrf(self, request: Request, me: Principal, token: str | None) -> None:
        """Forms from a session must carry its token; bearer-token requests have none."""
        if not me.csrf:
            return
        sent = token or request.headers.get("x-csrf-token", "")
        if not same_token(sent, me.csrf):
            raise CsrfFailed()

    def page(self, request: Request, template: str, me: Principal | None,
             values: Mapping[str, Any] | None = None, status_code: int = 200,
             **more: Any) -> Response:
        """A page; every template gets the user (`me`), the CSRF token for its forms and the
        chosen language (`lang`, `_`, `lang_switch`: headend/core/i18n.py)."""
        return self.templates.TemplateResponse(
            request, template, {"me": me, "csrf": me.csrf if me else "",
                                **i18n.page_values(request), **(values or {}), **more},
            status_code=status_code)


def home_path(me: Principal) -> str:
    """Where a user lands after logging in."""
    if me.province_wide or len(me.communes) != 1:
        return "/communes"
    (commune,) = me.communes
    return f"/c/{commune}/calendar" if me.can(auth.SCHEDULE) else f"/c/{commune}"


_LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")


def _safe_next(raw: str | None) -> str | None:
    # Only paths on this site: "//evil.example" or "https://..." would leave it.
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return None


def auth_router(ctx: WebContext) -> APIRouter:
    r = APIRouter()

    def login_page(request: Request, next: str, username: str = "", error: str | None = None,
                   status_code: int = 200) -> Response:
        """The log-in form with its CSRF token: the browser's token when it has a well-formed
        one (a second tab keeps working), else a new one."""
        token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not _LOGIN_TOKEN.fullmatch(token):
            token = secrets.token_urlsafe(32)
        resp = ctx.page(request, "login.html", None, status_code=status_code, next=next,
                        username=username, error=error, login_csrf=token)
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=ctx.secure_cookies, path="/login")
        return resp

    @r.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        return login_page(request, _safe_next(next) or "")

    @r.post("/login")
    def login(request: Request, username: str = Form(""), password: str = Form(""),
              next: str = Form(""), csrf: str = Form("")) -> Response:
        ip, now = client_ip(request), ctx.now()
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not same_token(csrf, expected):
            # Another site's form (or a stale one): nothing is tried or counted.
            return login_page(request, _safe_next(next) or "", username[:64],
                              LOGIN_CSRF_VI, 403)
        wait = ctx.limiter.wait_ms(ip, username, now)
        if wait:
            minutes = max(1, -(-wait // 60_000))
            return login_page(request, next, username,
                              f"Đăng nhập sai quá nhiều lần. Hãy thử lại sau {minutes} phút.",
                              429)
        user = auth.authenticate(ctx.engine, username, password)
        if user is None:
            ctx.limiter.failed(ip, username, now)
            # Filed under the communes of the account tried, so their pages show it.
            audit.record_for(ctx.engine, audit.Actor(username[:64], "", ip), "login_failed",
                             now, audit.filed_under(auth.communes_of(ctx.engine, username)))
            return login_page(request, next, username, LOGIN_ERROR_VI, 401)
        ctx.limiter.succeeded(ip, username)
        cookie, me = auth.start_session(ctx.engine, user, ip, now)
        audit.record_for(ctx.engine, audit.Actor(me.username, me.role, ip), "login", now,
                         audit.filed_under(me.communes))
        resp = RedirectResponse(_safe_next(next) or home_path(me), status_code=303)
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        resp.set_cookie(SESSION_COOKIE, cookie, max_age=auth.SESSION_MS // 1000,
                        httponly=True, samesite="lax", secure=ctx.secure_cookies, path="/")
        return resp

    @r.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        me = ctx.user(request)
        ctx.check_csrf(request, me, csrf)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            auth.end_session(ctx.engine, cookie)
        audit.record_for(ctx.engine, ctx.actor(request, me), "logout", ctx.now(),
                         audit.filed_under(me.communes))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @r.get("/lang/{code}")
    def choose_language(code: str, next: str | None = None) -> Response:
        """Pages in this language from now on (a cookie, for everyone, logged in or not),
        then back to the page the switch was on."""
        if code not in i18n.LANGUAGES:
            raise HTTPException(404, i18n.unknown_language(code))
        resp = RedirectResponse(_safe_next(next) or "/", status_code=303)
        resp.set_cookie(i18n.COOKIE, code, max_age=i18n.COOKIE_MAX_AGE, httponly=True,
                        samesite="lax", secure=ctx.secure_cookies, path="/")
        return resp

    return r


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


__all__ = ["CsrfFailed", "Forbidden", "LoginRequired", "ScheduleFile", "WebContext",
           "auth_router", "home_path", "login_redirect"]

"""Security headers on every response of the web app: pages, the JSON API, /media, static
files, error pages, and the 500 of an unexpected exception.

The Content-Security-Policy allows scripts and styles only from the app's own files
(headend/web/static, the API docs' assets): no inline <script>, no style= attribute, no
onsubmit=, so a value that slipped through escaping still could not run. Pages cannot be
framed (clickjacking on the emergency button), browsers may not guess a file's type (a
bulletin upload served as HTML), and another site is not told which page linked to it.
"""

from __future__ import annotations

import logging
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("loaxa.web")

CSP: Final = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",  # Swagger UI's icons are data: URLs in its stylesheet
    "media-src 'self' blob:",  # a recording is played back from a blob: before upload
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # The recorder needs the microphone of this site; nothing needs a camera or a location.
    "Permissions-Policy": "camera=(), geolocation=(), microphone=(self)",
}
HSTS: Final = "max-age=31536000"  # a year; no includeSubDomains: the province's other sites
CRASH_VI: Final = "Máy chủ gặp lỗi khi làm việc này. Hãy thử lại sau ít phút."


class SecurityHeaders:
    """ASGI middleware: HEADERS on every response (set, not added: one of each). Inside
    Starlette's ServerErrorMiddleware, it also answers an unexpected exception itself, so
    the 500 carries them too (and says so in Vietnamese), then lets the exception go on to
    be logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if scope.get("scheme") == "https":  # served over TLS: never in the clear again
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                response: Response
                if str(scope.get("path", "")).startswith(("/api/", "/media/", "/metrics")):
                    response = JSONResponse({"detail": CRASH_VI}, status_code=500)
                else:
                    response = PlainTextResponse(CRASH_VI, status_code=500)
                await response(scope, receive, send_with_headers)
            raise

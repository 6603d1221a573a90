"""The web page (nodes and today's diary, in Vietnamese), its JSON API, and media for nodes."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from headend.diary import commune_timezone, diary_for_day, node_rows

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
MEDIA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")

OUTCOME_VI = {"aired": "Đã phát", "partial": "Phát dở", "failed": "Lỗi", "missed": "Bỏ lỡ"}


def _fmt_time(ms: int | None, tz: ZoneInfo) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%H:%M:%S")


def _fmt_seen(ms: int | None, tz: ZoneInfo) -> str:
    if ms is None:
        return "chưa bao giờ"
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%d/%m %H:%M:%S")


def _parse_day(raw: str | None, tz: ZoneInfo) -> date:
    if raw is None:
        return datetime.now(tz).date()
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(
            400, f"Ngày không hợp lệ: {raw!r}. Dùng dạng NĂM-THÁNG-NGÀY, ví dụ 2026-11-22."
        ) from None


def make_app(engine: Engine, media_dir: Path) -> FastAPI:
    app = FastAPI(title="LoaXa", summary="Commune radio headend")

    @app.exception_handler(SQLAlchemyError)
    async def db_error(request: Request, exc: SQLAlchemyError) -> Any:
        msg = "Không đọc được cơ sở dữ liệu của LoaXa. Báo cho kỹ thuật viên kiểm tra thư mục trạng thái."
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": msg}, status_code=503)
        return HTMLResponse(f"<h1>Lỗi</h1><p>{msg}</p>", status_code=503)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, day: str | None = None) -> Any:
        tz = commune_timezone(engine)
        d = _parse_day(day, tz)
        nodes = node_rows(engine)
        diary = diary_for_day(engine, d, tz)
        return TEMPLATES.TemplateResponse(request, "index.html", {
            "day": d, "tz": tz,
            "online": sum(n.online for n in nodes),
            "nodes": [dict(asdict(n), seen=_fmt_seen(n.last_seen_ms, tz)) for n in nodes],
            "diary": [dict(asdict(r), start=_fmt_time(r.start_ms, tz),
                           end=_fmt_time(r.end_ms, tz), planned=_fmt_time(r.planned_ms, tz),
                           duration=r.duration_s, outcome_vi=OUTCOME_VI.get(r.outcome, r.outcome))
                      for r in diary],
        })

    @app.get("/api/nodes")
    def api_nodes() -> list[dict[str, Any]]:
        return [asdict(n) for n in node_rows(engine)]

    @app.get("/api/diary")
    def api_diary(day: str | None = None) -> list[dict[str, Any]]:
        tz = commune_timezone(engine)
        return [asdict(r) for r in diary_for_day(engine, _parse_day(day, tz), tz)]

    @app.get("/media/{name}")
    def media(name: str) -> FileResponse:
        path = media_dir / name
        if not MEDIA_NAME.match(name) or not path.is_file():
            raise HTTPException(404, "no such media")
        return FileResponse(path)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

"""The emergency button: choose the villages (or all), say what to broadcast (typed text read
aloud, or a bulletin already made), confirm, and every chosen loudspeaker plays it at once,
interrupting the programme and quiet hours. It goes into the diary (through the nodes'
records) and into the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.core import audit
from headend.core.auth import EMERGENCY, Principal
from headend.core.models import Broadcast, Village
from headend.diary.reading import commune_name, commune_timezone
from headend.media import bulletins
from headend.media.pipeline import prepare_speech
from headend.media.probe import AudioRejected
from headend.media.store import StoredMedia
from headend.nodes.emergency import (
    ANSWERING,
    HEARD,
    STATE_VI,
    AlreadySent,
    scoped_key,
    village_states,
)
from headend.web.context import PathId, WebContext


def emergency_router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    me_dep = Depends(ctx.user)

    def villages_of(commune_id: str) -> list[tuple[str, str]]:
        with Session(ctx.engine) as s:
            return [(v.id, v.name) for v in s.scalars(
                select(Village).where(Village.commune_id == commune_id).order_by(Village.name))]

    def form_page(request: Request, me: Principal, commune_id: str, status_code: int = 200,
                  **values: Any) -> Response:
        name = commune_name(ctx.engine, commune_id)
        if name is None:
            raise HTTPException(404, "Không có xã này.")
        with Session(ctx.engine) as s:
            recent = list(s.scalars(select(Broadcast).where(Broadcast.commune_id == commune_id)
                                    .order_by(Broadcast.sent_ms.desc()).limit(10)))
            s.expunge_all()
        form = {"title": "", "text": "", "bulletin": "", "villages": [], "all": True,
                **values}
        tz = commune_timezone(ctx.engine, commune_id)
        sent = [{"at": datetime.fromtimestamp(b.sent_ms / 1000, tz).strftime("%H:%M %d/%m/%Y"),
                 "title": b.title, "by": b.sent_by, "started": b.started, "nodes": b.nodes}
                for b in recent]
        return ctx.page(request, "emergency.html", me, {
            "commune_id": commune_id, "commune": name, "villages": villages_of(commune_id),
            # Only what the editorial board approved goes out as an emergency.
            "bulletins": bulletins.listing(ctx.engine, commune_id, "approved"), "form": form,
            "recent": sent, "running": ctx.emergency is not None}, status_code=status_code)

    @r.get("/c/{commune_id}/emergency")
    def emergency(request: Request, commune_id: str, me: Principal = me_dep) -> Response:
        me.check(EMERGENCY, commune_id)
        return form_page(request, me, commune_id)

    def checked(commune_id: str, title: str, text: str, bulletin: str, villages: list[str],
                everyone: bool) -> tuple[str, list[str], str]:
        """(title, villages, what) or ValueError with a Vietnamese message."""
        known = dict(villages_of(commune_id))
        chosen = [] if everyone else [v for v in villages if v in known]
        if not everyone and not chosen:
            raise ValueError("Hãy chọn ít nhất một thôn, hoặc chọn “Toàn xã”.")
        if bool(text.strip()) == bool(bulletin):
            raise ValueError("Hãy gõ nội dung cần đọc, hoặc chọn một bản tin có sẵn "
                             "(chỉ một trong hai).")
        what = text.strip()
        if bulletin:
            try:
                b = bulletins.get(ctx.engine, commune_id, int(bulletin))
            except (ValueError, bulletins.BulletinError):
                raise ValueError("Không có bản tin này.") from None
            if b.status != "approved":
                raise ValueError("Bản tin này chưa được duyệt (hoặc đã bị từ chối): chỉ phát "
                                 "được bản tin đã duyệt, hoặc gõ nội dung cần đọc.")
            what = f"Bản tin “{b.title}”"
            title = title.strip() or b.title
        if not title.strip():
            raise ValueError("Hãy ghi tiêu đề (ví dụ: Cảnh báo lũ quét).")
        return " ".join(title.split())[:120], chosen, what

    @r.post("/c/{commune_id}/emergency/confirm")
    def confirm(request: Request, commune_id: str, title: str = Form(""),
                text: str = Form(""), bulletin: str = Form(""),
                villages: Annotated[list[str] | None, Form()] = None, all: bool = Form(False),
                csrf: str = Form(""), me: Principal = me_dep) -> Response:
        me.check(EMERGENCY, commune_id)
        ctx.check_csrf(request, me, csrf)
        villages = villages or []
        values = {"title": title, "text": text, "bulletin": bulletin, "villages": villages,
                  "all": all}
        try:
            title, chosen, what = checked(commune_id, title, text, bulletin, villages, all)
        except ValueError as e:
            return form_page(request, me, commune_id, 422, error=str(e), **values)
        names = dict(villages_of(commune_id))
        return ctx.page(request, "emergency_confirm.html", me, {
            "commune_id": commune_id, "commune": commune_name(ctx.engine, commune_id),
            "key": secrets.token_urlsafe(18),  # one send per confirmation, however tapped
            "title": title, "text": text, "bulletin": bulletin, "what": what,
            "chosen": chosen, "where": ", ".join(names[v] for v in chosen) or "Toàn xã"})

    @r.post("/c/{commune_id}/emergency/send")
    async def send(request: Request, commune_id: str, title: str = Form(""),
                   text: str = Form(""), bulletin: str = Form(""),
                   villages: Annotated[list[str] | None, Form()] = None, csrf: str = Form(""),
                   key: str = Form(""), me: Principal = me_dep) -> Response:
        """Sends once per key (the confirmation page's), then redirects to the broadcast's
        status page (POST-redirect-GET): reload, back and a second tap send nothing more."""
        me.check(EMERGENCY, commune_id)
        ctx.check_csrf(request, me, csrf)
        villages = villages or []
        values = {"title": title, "text": text, "bulletin": bulletin, "villages": villages,
                  "all": not villages}
        if ctx.emergency is None:
            return form_page(request, me, commune_id, 503, error=NOT_RUNNING_VI, **values)
        if not KEY_RE.fullmatch(key):
            return form_page(request, me, commune_id, 422, error=NO_KEY_VI, **values)
        earlier = await asyncio.to_thread(_broadcast_with_key, commune_id, key)
        if earlier is not None:
            return status_redirect(commune_id, earlier)
        try:
            title, chosen, _ = await asyncio.to_thread(
                checked, commune_id, title, text, bulletin, villages, not villages)
            if bulletin:
                b = bulletins.get(ctx.engine, commune_id, int(bulletin))
                name = bulletins.media_names(b)["esp32"]
                path = ctx.media_dir / name
                data = await asyncio.to_thread(path.read_bytes)
                media = StoredMedia(name, hashlib.sha256(data).hexdigest(), len(data), path)
            else:
                prepared = await asyncio.to_thread(prepare_speech, text, "vi", ctx.media_dir,
                                                   chime=True)
                media = prepared.files["esp32"]
        except (ValueError, AudioRejected, KeyError, OSError) as e:
            return form_page(request, me, commune_id, 422, error=str(e), **values)
        actor = ctx.actor(request, me)
        try:
            broadcast_id = await ctx.emergency(commune_id, chosen, media, title,
                                               text.strip() or None, me.username,
                                               f"web@{actor.ip}", key)
        except AlreadySent as e:  # the same key, sent meanwhile by another request
            return status_redirect(commune_id, e.broadcast_id)
        await asyncio.to_thread(
            audit.record, ctx.engine, actor, "emergency", ctx.now(), commune_id,
            f"phát khẩn cấp #{broadcast_id}",
            f"“{title}” tới {len(chosen) or 'toàn'} thôn")
        return status_redirect(commune_id, broadcast_id)

    def _broadcast_with_key(commune_id: str, key: str) -> int | None:
        with Session(ctx.engine) as s:
            return s.scalar(select(Broadcast.id).where(
                Broadcast.idem_key == scoped_key(commune_id, key),
                Broadcast.commune_id == commune_id))

    def status_redirect(commune_id: str, broadcast_id: int) -> Response:
        return RedirectResponse(f"/c/{commune_id}/emergency/{broadcast_id}", status_code=303)

    def status_of(commune_id: str, broadcast_id: int) -> dict[str, Any]:
        with Session(ctx.engine) as s:
            b = s.get(Broadcast, broadcast_id)
            if b is None or b.commune_id != commune_id:
                raise HTTPException(404, "Không có lần phát khẩn cấp này.")
            s.expunge(b)
        now = ctx.now()
        states = village_states(ctx.engine, broadcast_id, now)
        waiting = any(v.state in ANSWERING for v in states)
        names = [v.village for v in states]
        return {
            "id": b.id, "title": b.title, "sent_by": b.sent_by,
            "where": ", ".join(names) if json.loads(b.villages) else "Toàn xã",
            "started": sum(1 for v in states if v.state in HEARD), "total": len(states),
            "waiting": waiting,
            "villages": [{"village": v.village, "state": v.state,
                          "state_vi": STATE_VI[v.state], "reason": v.reason} for v in states],
        }

    @r.get("/c/{commune_id}/emergency/{broadcast_id}")
    def status_page(request: Request, commune_id: str, broadcast_id: PathId,
                    me: Principal = me_dep) -> Response:
        me.check(EMERGENCY, commune_id)
        return ctx.page(request, "emergency_done.html", me, {
            "commune_id": commune_id, "commune": commune_name(ctx.engine, commune_id),
            "b": status_of(commune_id, broadcast_id)})

    @r.get("/c/{commune_id}/emergency/{broadcast_id}/status")
    def status_json(commune_id: str, broadcast_id: PathId,
                    me: Principal = me_dep) -> dict[str, Any]:
        """What the status page refreshes itself from while nodes are still answering."""
        me.check(EMERGENCY, commune_id)
        return status_of(commune_id, broadcast_id)

    return r


KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
NO_KEY_VI = ("Trang xác nhận đã cũ hoặc thiếu mã gửi. Hãy soạn lại và bấm “Tiếp tục” để "
             "xác nhận lần nữa.")
NOT_RUNNING_VI = ("Máy chủ phát chưa chạy (chỉ mở trang xem), nên không gửi được lệnh phát. "
                  "Hãy báo kỹ thuật viên khởi động LoaXa (loaxa serve).")

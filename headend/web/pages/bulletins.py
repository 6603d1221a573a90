"""Bulletin pages: the list, a new bulletin (upload a file, record from the microphone, or type
text for Vietnamese speech), one bulletin with its audio, and the approver's decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response

from headend.core.auth import APPROVE, MAKE, SCHEDULE, VIEW, Principal
from headend.diary.reading import commune_name
from headend.media import bulletins
from headend.media.bulletins import (
    BULLETIN_KINDS,
    KIND_VI,
    LANGUAGES,
    ORIGIN_VI,
    STATUS_VI,
    BulletinError,
    Meta,
)
from headend.media.pipeline import prepare_speech, prepare_upload
from headend.media.probe import MAX_BYTES, AudioRejected
from headend.web.context import PathId, WebContext
from headend.web.uploads import FormRefused, read_form

SOURCES = ("upload", "record", "tts")


def bulletin_row(b: Any) -> dict[str, Any]:
    minutes, seconds = divmod(round(b.duration_ms / 1000), 60)
    return {"id": b.id, "title": b.title, "summary": b.summary, "status": b.status,
            "status_vi": STATUS_VI.get(b.status, b.status), "kind_vi": KIND_VI.get(b.kind, b.kind),
            "language_vi": LANGUAGES.get(b.language, b.language),
            "origin_vi": ORIGIN_VI.get(b.origin, b.origin), "duration": f"{minutes}:{seconds:02d}",
            "created_by": b.created_by, "decided_by": b.decided_by or "",
            "note": b.decision_note or "", "lufs": b.lufs, "text": b.text}


def bulletin_router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    me_dep = Depends(ctx.user)

    def base(commune_id: str) -> dict[str, Any]:
        name = commune_name(ctx.engine, commune_id)
        if name is None:
            raise HTTPException(404, "Không có xã này.")
        return {"commune_id": commune_id, "commune": name, "languages": LANGUAGES,
                "kinds": {k: KIND_VI[k] for k in BULLETIN_KINDS}}

    @r.get("/c/{commune_id}/bulletins")
    def listing(request: Request, commune_id: str, me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        rows = [bulletin_row(b) for b in bulletins.listing(ctx.engine, commune_id)]
        return ctx.page(request, "bulletins.html", me, base(commune_id), rows=rows)

    def new_form(request: Request, me: Principal, commune_id: str, status_code: int = 200,
                 **values: Any) -> Response:
        form = {"title": "", "summary": "", "language": "vi", "kind": "local_bulletin",
                "source": "upload", "text": "", "chime": True, **values}
        return ctx.page(request, "bulletin_new.html", me, base(commune_id), form=form,
                        max_mb=MAX_BYTES // (1024 * 1024), status_code=status_code)

    @r.get("/c/{commune_id}/bulletins/new")
    def new(request: Request, commune_id: str, me: Principal = me_dep) -> Response:
        me.check(MAKE, commune_id)
        return new_form(request, me, commune_id)

    def make(request: Request, me: Principal, commune_id: str, f: dict[str, str],
             file: Path | None, filename: str) -> Response:
        source, text = f.get("source", "upload"), f.get("text", "")
        chime = f.get("chime", "") in ("true", "on", "1")
        kept: dict[str, Any] = {
            "title": f.get("title", ""), "summary": f.get("summary", ""), "text": text,
            "language": f.get("language", "vi"), "kind": f.get("kind", "local_bulletin"),
            "source": source, "chime": chime}
        try:
            meta = Meta(kept["title"], kept["summary"], kept["language"], kept["kind"]).checked()
            if source == "tts":
                prepared = prepare_speech(text, meta.language, ctx.media_dir, chime=chime)
            elif source in ("upload", "record"):
                if file is None or not filename:
                    raise BulletinError("Hãy chọn tệp âm thanh (hoặc ghi âm) trước khi gửi.")
                prepared = prepare_upload(file, filename, ctx.media_dir, chime=chime)
            else:
                raise BulletinError("Hãy chọn cách làm bản tin.")
            bid = bulletins.create(ctx.engine, commune_id, ctx.actor(request, me), meta,
                                   prepared, source, ctx.now(),
                                   text=text if source == "tts" else None)
        except (BulletinError, AudioRejected) as e:
            return new_form(request, me, commune_id, 422, error=str(e), **kept)
        return RedirectResponse(f"/c/{commune_id}/bulletins/{bid}?done=created",
                                status_code=303)

    @r.post("/c/{commune_id}/bulletins")
    async def create(request: Request, commune_id: str, me: Principal = me_dep) -> Response:
        me.check(MAKE, commune_id)
        try:
            async with read_form(request, "audio", MAX_BYTES) as form:
                ctx.check_csrf(request, me, form.fields.get("csrf"))
                return await run_in_threadpool(make, request, me, commune_id, form.fields,
                                               form.file, form.filename)
        except FormRefused as e:
            return await run_in_threadpool(new_form, request, me, commune_id, e.status,
                                           error=str(e))

    @r.get("/c/{commune_id}/bulletins/{bulletin_id}")
    def show(request: Request, commune_id: str, bulletin_id: PathId, done: str | None = None,
             me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        b = _get(commune_id, bulletin_id)
        return ctx.page(request, "bulletin.html", me, base(commune_id), b=bulletin_row(b),
                        done=DONE_VI.get(done or ""), error=None,
                        can_approve=me.can(APPROVE) and b.status != "approved",
                        can_delete=me.can(MAKE) and b.status != "approved",
                        can_schedule=me.can(SCHEDULE) and b.status == "approved")

    @r.get("/c/{commune_id}/bulletins/{bulletin_id}/audio")
    def audio_file(commune_id: str, bulletin_id: PathId, me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        names = bulletins.media_names(_get(commune_id, bulletin_id))
        # The Raspberry Pi profile's MP3 is small: quick to listen to over a slow link.
        name = names.get("rpi") or names.get("esp32")
        path = ctx.media_dir / name if name else None
        if path is None or not path.is_file():
            raise HTTPException(404, "Không tìm thấy tệp âm thanh của bản tin.")
        return FileResponse(path, media_type="audio/mpeg" if path.suffix == ".mp3"
                            else "audio/wav")

    def decision(request: Request, me: Principal, commune_id: str, bulletin_id: int,
                 csrf: str, approve: bool, note: str) -> Response:
        me.check(APPROVE, commune_id)
        ctx.check_csrf(request, me, csrf)
        try:
            bulletins.decide(ctx.engine, commune_id, bulletin_id, ctx.actor(request, me),
                             approve, ctx.now(), note)
        except BulletinError as e:
            b = _get(commune_id, bulletin_id)
            return ctx.page(request, "bulletin.html", me, base(commune_id), b=bulletin_row(b),
                            done=None, error=str(e), can_approve=b.status != "approved",
                            can_delete=me.can(MAKE) and b.status != "approved",
                            can_schedule=False, status_code=422)
        return RedirectResponse(f"/c/{commune_id}/bulletins/{bulletin_id}?done="
                                f"{'approved' if approve else 'rejected'}", status_code=303)

    @r.post("/c/{commune_id}/bulletins/{bulletin_id}/approve")
    def approve(request: Request, commune_id: str, bulletin_id: PathId, csrf: str = Form(""),
                me: Principal = me_dep) -> Response:
        return decision(request, me, commune_id, bulletin_id, csrf, True, "")

    @r.post("/c/{commune_id}/bulletins/{bulletin_id}/reject")
    def reject(request: Request, commune_id: str, bulletin_id: PathId, csrf: str = Form(""),
               note: str = Form(""), me: Principal = me_dep) -> Response:
        return decision(request, me, commune_id, bulletin_id, csrf, False, note)

    @r.post("/c/{commune_id}/bulletins/{bulletin_id}/delete")
    def delete(request: Request, commune_id: str, bulletin_id: PathId, csrf: str = Form(""),
               me: Principal = me_dep) -> Response:
        me.check(MAKE, commune_id)
        ctx.check_csrf(request, me, csrf)
        try:
            bulletins.delete(ctx.engine, commune_id, bulletin_id, ctx.actor(request, me),
                             ctx.now())
        except BulletinError as e:
            raise HTTPException(409, str(e)) from None
        return RedirectResponse(f"/c/{commune_id}/bulletins", status_code=303)

    def _get(commune_id: str, bulletin_id: int) -> Any:
        try:
            return bulletins.get(ctx.engine, commune_id, bulletin_id)
        except BulletinError as e:
            raise HTTPException(404, str(e)) from None

    return r


DONE_VI = {"created": "Đã tạo bản tin. Bản tin chờ trưởng ban biên tập duyệt trước khi phát.",
           "approved": "Đã duyệt. Bản tin có thể đưa vào lịch phát.",
           "rejected": "Đã ghi ý kiến không duyệt."}

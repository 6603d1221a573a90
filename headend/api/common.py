"""What /api/v1 and the HTTTN adapter (/api/httttn/v1) share: who may call (the OpenAPI
security schemes), the error shape, day ranges from the query, and reading a commune's plan and
diary and storing an imported bulletin the same way for both."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyCookie, HTTPBearer
from pydantic import BaseModel, Field

from headend.core.auth import Principal
from headend.diary.reading import commune_name, commune_timezone, day_bounds_ms
from headend.diary.reconciliation import (
    KIND_VI,
    CommuneInfo,
    DiaryQueryError,
    ProgrammeLine,
    lines_for_days,
)
from headend.media import bulletins
from headend.media.bulletins import BulletinError, Meta
from headend.media.pipeline import PreparedAudio, prepare_speech, prepare_upload
from headend.media.probe import AudioPipelineError, AudioRejected
from headend.planning.expansion import expand
from headend.planning.programme import programme_items
from headend.planning.schedule import CLASSES, ScheduleError
from headend.web.context import SESSION_COOKIE, WebContext, day_in_range

PLAN_MAX_DAYS: Final = 31
DEFAULT_DAYS: Final = 7  # plan: today and the 6 days after; diary: today and the 6 before


_bearer = HTTPBearer(auto_error=False, scheme_name="token",
                     description="API token: `loaxa user token USERNAME --label HTTTN`")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="session",
                       description="The web app's session (POSTs also need the CSRF token)")
# Only for the OpenAPI document: ctx.user decides who the caller is (token or session).
SECURITY: Final = [Security(_bearer), Security(_cookie)]


class ErrorOut(BaseModel):
    detail: str = Field(description="What is wrong, in Vietnamese")


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    code: {"model": ErrorOut, "description": text} for code, text in (
        (400, "Bad query value"), (401, "No, bad or revoked token / session"),
        (403, "Not allowed for this role or commune"), (404, "Unknown commune"))}


class PlanItemOut(BaseModel):
    occurrence: str = Field(description="<slot>@<local date>, stable for one item")
    kind: str = Field(description="vov_relay, province_relay, local_bulletin, notice, emergency")
    kind_vi: str
    priority: int = Field(description="0 normal, 1 priority, 2 emergency (Circular 39/2020)")
    priority_class: str
    language: str
    title: str
    summary: str
    source: str
    start_ms: int = Field(description="UTC milliseconds")
    end_ms: int
    start_local: str = Field(description="ISO 8601 in the commune's zone")
    end_local: str
    villages: list[str] = Field(description="Village ids")
    village_names: list[str]
    operator: str
    approver: str
    placeholder: bool = Field(
        description="A recorded item with no audio yet: planned, not sent to the nodes")



def iso(ms: int | None, tz: ZoneInfo) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz).isoformat()


def parse_day(raw: str | None, name: str) -> date | None:
    if raw is None or raw == "":
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(400, f"Ngày không hợp lệ ở “{name}”: “{raw[:40]}”. Hãy ghi theo "
                                 "dạng NĂM-THÁNG-NGÀY, ví dụ 2026-11-23.") from None
    return day_in_range(day, raw)


def day_range(first_raw: str | None, last_raw: str | None, default_today: date,
              max_days: int, ahead: bool) -> tuple[date, date]:
    """first..last (inclusive) from the query; missing ends make a week starting (`ahead`)
    or ending today. 400 for a bad date, a reversed or an over-long range."""
    first, last = parse_day(first_raw, "first"), parse_day(last_raw, "last")
    span = timedelta(days=DEFAULT_DAYS - 1)
    try:
        if first is None and last is None:
            first, last = ((default_today, default_today + span) if ahead
                           else (default_today - span, default_today))
        elif first is None:
            assert last is not None
            first = last - span
        elif last is None:
            last = first + span
    except OverflowError:
        raise HTTPException(400, "Ngày nằm ngoài khoảng cho phép.") from None
    assert first is not None and last is not None
    day_in_range(first, first.isoformat())  # a week from the first (or to the last) day
    day_in_range(last, last.isoformat())
    if last < first:
        raise HTTPException(400, f"Khoảng ngày không hợp lệ: ngày cuối ({last}) trước ngày "
                                 f"đầu ({first}).")
    days = (last - first).days + 1
    if days > max_days:
        raise HTTPException(400, f"Khoảng ngày dài quá: {days} ngày, tối đa {max_days} ngày "
                                 "mỗi lần. Hãy hỏi từng phần.")
    return first, last


def known_commune(ctx: WebContext, commune_id: str) -> str:
    """The commune's name; 404 when there is no such commune."""
    name = commune_name(ctx.engine, commune_id)
    if name is None:
        raise HTTPException(404, "Không có xã này.")
    return name


def plan_items(ctx: WebContext, commune_id: str, first: date, last: date
               ) -> tuple[ZoneInfo, list[PlanItemOut]]:
    """The commune's programme items (with the calendar's edits) starting first..last, by
    start time; recorded items still waiting for audio are flagged `placeholder`."""
    known_commune(ctx, commune_id)
    try:
        schedule = ctx.schedule(commune_id)
    except ScheduleError as e:
        raise HTTPException(409, f"Lịch phát của xã có lỗi, hãy báo kỹ thuật viên: {e}") \
            from None
    if schedule is None:
        raise HTTPException(404, "Xã này chưa có lịch phát trên máy chủ.")
    try:
        tz = ZoneInfo(schedule.commune.timezone)
    except (KeyError, ValueError):
        tz = commune_timezone(ctx.engine, commune_id)
    lo, _ = day_bounds_ms(first, tz)
    _, hi = day_bounds_ms(last, tz)
    entries = expand(schedule, lo, hi)
    # programme_items leaves placeholders out (they are not sent); the same rows for them.
    waiting = {n: [replace(e, placeholder=False) for e in es if e.placeholder]
               for n, es in entries.items()}
    names = {v.id: v.name for v in schedule.commune.villages}
    out: list[PlanItemOut] = []
    for rows, placeholder in ((programme_items(schedule, entries), False),
                              (programme_items(schedule, waiting), True)):
        for row in rows.values():
            if not lo <= row["start_ms"] < hi:
                continue
            chosen = set(json.loads(row["villages"]))  # programme rows keep them as JSON
            villages = [v for v in names if v in chosen]  # in the commune's order
            out.append(PlanItemOut(
                occurrence=row["occurrence"], kind=row["kind"],
                kind_vi=KIND_VI.get(row["kind"], row["kind"]), priority=row["priority"],
                priority_class=CLASSES[row["priority"]], language=row["language"],
                title=row["title"], summary=row["summary"], source=row["source"],
                start_ms=row["start_ms"], end_ms=row["end_ms"],
                start_local=iso(row["start_ms"], tz) or "", end_local=iso(row["end_ms"], tz) or "",
                villages=villages, village_names=[names[v] for v in villages],
                operator=row["operator"], approver=row["approver"], placeholder=placeholder))
    out.sort(key=lambda i: (i.start_ms, -i.priority, i.occurrence))
    return tz, out


def diary_lines(ctx: WebContext, commune_id: str, first: date, last: date
                ) -> tuple[CommuneInfo, list[ProgrammeLine]]:
    """The commune (name, zone, villages) and the lines of its diary, first..last."""
    known_commune(ctx, commune_id)
    try:
        return lines_for_days(ctx.engine, commune_id, first, last, ctx.now())
    except DiaryQueryError as e:
        raise HTTPException(400, f"Không đọc được sổ nhật ký: {e}") from None


async def store_bulletin(ctx: WebContext, request: Request, me: Principal, commune_id: str,
                         meta: Meta, origin: str, *, audio: Path | None = None,
                         filename: str = "", text: str | None = None, chime: bool = False,
                         external_id: str | None = None) -> int:
    """Check the metadata, run the audio pipeline (off the event loop), create the draft.
    422 for refused metadata or audio; nothing is stored then."""
    try:
        meta = meta.checked()
        prepared: PreparedAudio
        if audio is not None:
            prepared = await run_in_threadpool(prepare_upload, audio, filename, ctx.media_dir,
                                               chime=chime)
        elif text is not None:
            prepared = await run_in_threadpool(prepare_speech, text, meta.language,
                                               ctx.media_dir, chime=chime)
        else:
            raise BulletinError("Hãy gửi tệp âm thanh (audio) hoặc văn bản để đọc (text).")
        return await run_in_threadpool(
            bulletins.create, ctx.engine, commune_id, ctx.actor(request, me), meta, prepared,
            origin, ctx.now(), text, external_id)
    except (BulletinError, AudioRejected) as e:
        raise HTTPException(422, str(e)) from None
    except AudioPipelineError:
        raise HTTPException(500, "Máy chủ không xử lý được âm thanh này (lỗi ffmpeg). Hãy báo "
                                 "kỹ thuật viên.") from None

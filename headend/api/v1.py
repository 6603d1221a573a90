"""The REST API, version 1 (/api/v1), for the provincial information-source system (HTTTN,
adapter in headend/api/httttn.py) and other tools: who am I, the communes, a commune's plan,
diary, nodes and bulletins, and importing a bulletin as a draft.

Every endpoint asks who is calling (`ctx.user`: an API token, or the browser's session) and
then `Principal.check(permission, commune)`, like the pages: a user never reads or changes
another commune's data. Errors are `{"detail": "..."}` with a Vietnamese message.

Uploads are read from the request stream by a small multipart reader (`uploads.read_form`)
straight
into a temporary file, counting bytes: past `MAX_BYTES` the request is refused (413) without
reading the rest, and a request that declares a larger Content-Length is refused before its
body is read at all. Nothing is stored before the audio pipeline has accepted the file.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from headend.api.common import (
    ERRORS,
    PLAN_MAX_DAYS,
    SECURITY,
    ErrorOut,
    PlanItemOut,
    day_range,
    diary_lines,
    iso,
    known_commune,
    parse_day,
    plan_items,
    store_bulletin,
)
from headend.api.httttn import httttn_router
from headend.core.alarms import alarm_visible, list_alarms
from headend.core.auth import MAKE, NODES, PERMISSIONS, VIEW, Principal
from headend.core.models import Bulletin
from headend.diary.reading import (
    aired_between,
    commune_rows,
    commune_timezone,
    day_bounds_ms,
    diary_for_day,
    node_rows,
)
from headend.diary.reconciliation import (
    KIND_VI,
    OUTCOME_VI,
    TRIGGER_VI,
    ProgrammeLine,
    session_of,
)
from headend.diary.reconciliation import MAX_DAYS as DIARY_MAX_DAYS
from headend.media import bulletins
from headend.media.bulletins import (
    KIND_VI as BULLETIN_KIND_VI,
)
from headend.media.bulletins import (
    STATUS_VI,
    Meta,
)
from headend.media.probe import MAX_BYTES
from headend.planning.criterion import (
    MIN_NEWS_SECONDS,
    REQUIRED_LOCAL_NEWS,
    REQUIRED_PROVINCE_DAYS,
    REQUIRED_VOV_DAYS,
    WeekVerdict,
    judge,
    judge_plan,
)
from headend.planning.schedule import CLASSES, ScheduleError
from headend.web.context import WebContext
from headend.web.uploads import FormRefused, read_form

PREFIX: Final = "/api/v1"
API_DESCRIPTION = f"""\
LoaXa runs a commune's radio station (đài truyền thanh xã). This REST API serves the
provincial information-source system (**HTTTN**, Hệ thống thông tin nguồn) and other tools.

## Authentication

Create an API token for a user on the headend (shown once, stored only as its SHA-256):

```sh
loaxa user token USERNAME --label HTTTN
```

and send it on every request:

```
Authorization: Bearer lx_...
```

A token acts as its user: the same role and the same communes. A browser's session cookie
works too; then requests that change something also need the session's CSRF token (form field
`csrf` or header `X-CSRF-Token`). Bearer-token requests need none.

## Scopes

| role | communes | may |
| --- | --- | --- |
| `admin` | the whole province | everything |
| `technician` | listed communes or the province | view; control nodes |
| `officer` (cán bộ văn hóa xã) | one commune | view; make bulletins; schedule; emergency |
| `approver` (trưởng ban biên tập) | one commune | view; approve; schedule; emergency |

Reading a commune's plan, diary, criterion 8.3, nodes or bulletins needs *view* on that
commune; importing a
bulletin needs *make*. Imported bulletins are always **drafts**: only an approver of the
commune approves them, on the web page.

## Errors

Every error is JSON `{{"detail": "..."}}` with a Vietnamese message for the commune's
people: 400 bad query (dates as `YYYY-MM-DD`), 401 no or bad token, 403 not allowed here,
404 unknown commune, 409 the commune's schedule file is broken, 413 upload over
{MAX_BYTES // 2**20} MB, 422 refused content (not audio, empty title, ...).

## HTTTN

`/api/httttn/v1/...` speaks the HTTTN's shape (Vietnamese field names such as `maXa`,
`maBanTin`, `tieuDe`); see those endpoints and headend/api/httttn.py for the mapping.
"""

TAG_ACCOUNT, TAG_COMMUNES, TAG_BULLETINS, TAG_NODES = "tài khoản", "xã", "bản tin", "cụm loa"
class MeOut(BaseModel):
    username: str
    name: str
    role: str
    role_vi: str
    province_wide: bool
    communes: list[str] = Field(description="Commune ids; every commune if province_wide")
    permissions: list[str]


class CommuneOut(BaseModel):
    id: str
    name: str
    province: str
    nodes: int
    online: int


class PlanOut(BaseModel):
    commune_id: str
    timezone: str
    first: date
    last: date
    items: list[PlanItemOut]


class CriterionWeekOut(BaseModel):
    """Criterion 8.3 for one week, judged by `planning.criterion` (the rule every view uses)."""

    basis: str = Field(description="aired (the diary) or planned (the schedule with the "
                                   "calendar's edits, as if it all aired)")
    week: str = Field(description="ISO week, e.g. 2026-W48")
    monday: date
    sunday: date
    ok: bool
    verdict_vi: str = Field(description="Đạt or Chưa đạt")
    vov_days: int
    vov_days_required: int
    province_days: int
    province_days_required: int
    local_news: int = Field(description="Local bulletins that count: with audio, at least "
                                        "min_news_seconds of it")
    local_news_required: int
    local_news_text: str = Field(description="What is counted, e.g. \"5 tin, cần ít nhất 3\"")
    local_news_items: list[str] = Field(description="Occurrences counted")
    placeholders: list[str] = Field(description="Planned bulletins with no recording "
                                                "(thiếu bản ghi): not counted")
    short_news: list[str] = Field(description="Bulletins shorter than min_news_seconds "
                                              "(the audio's own length): not counted")
    min_news_seconds: int
    warnings: list[str] = Field(description="What does not count, in Vietnamese")
    missing: list[str] = Field(description="Why the week falls short")


class CriterionOut(BaseModel):
    commune_id: str
    timezone: str
    aired: CriterionWeekOut
    planned: CriterionWeekOut | None = Field(
        description="This week and later ones; none for a past week")


def criterion_week_out(v: WeekVerdict, basis: str) -> CriterionWeekOut:
    return CriterionWeekOut(
        basis=basis, week=v.week, monday=v.monday, sunday=v.sunday, ok=v.ok,
        verdict_vi="Đạt" if v.ok else "Chưa đạt", vov_days=len(v.vov_days),
        vov_days_required=REQUIRED_VOV_DAYS, province_days=len(v.province_days),
        province_days_required=REQUIRED_PROVINCE_DAYS, local_news=len(v.local_news),
        local_news_required=REQUIRED_LOCAL_NEWS, local_news_text=v.news_text,
        local_news_items=[occ for _, occ in v.local_news],
        placeholders=[occ for _, occ in v.placeholders],
        short_news=[occ for _, occ in v.short_news], min_news_seconds=MIN_NEWS_SECONDS,
        warnings=v.warnings, missing=v.missing)


class VillageOutcomeOut(BaseModel):
    village: str
    outcome: str = Field(description="aired, partial, failed, missed, no_report, planned")
    outcome_vi: str
    reason: str | None


class DiaryLineOut(BaseModel):
    key: str
    day: date
    session: str
    kind: str
    kind_vi: str
    priority: int
    priority_class: str
    language: str
    title: str
    summary: str
    source: str
    trigger: str
    trigger_vi: str
    planned_start_ms: int | None
    planned_end_ms: int | None
    planned_start_local: str | None
    planned_end_local: str | None
    start_ms: int | None
    end_ms: int | None
    start_local: str | None
    end_local: str | None
    duration_s: int | None
    outcome: str
    outcome_vi: str
    operator: str
    approver: str
    villages: list[VillageOutcomeOut]
    aired_villages: list[str]
    notes: list[str]


class DiaryOut(BaseModel):
    commune_id: str
    commune_name: str
    timezone: str
    first: date
    last: date
    lines: list[DiaryLineOut]


class NodeOut(BaseModel):
    id: str
    village_id: str
    village: str
    online: bool
    last_seen_ms: int | None
    last_seen_local: str | None
    playing: str | None
    fw: str | None
    volume: int | None
    telemetry: dict[str, Any] = Field(description="The newest telemetry, as the node sent it")
    alarms: list[str] = Field(description="Kinds of the node's open alarms")


class FleetNodeOut(NodeOut):
    commune_id: str
    commune: str
    province: str


class AsRunOut(BaseModel):
    """One item as one node played it (or did not): what the node reported."""

    node_id: str
    village: str
    title: str
    trigger: str = Field(description="plan, command, emergency, button ...")
    planned_ms: int | None
    start_ms: int | None
    end_ms: int | None
    planned_local: str | None
    start_local: str | None
    end_local: str | None
    duration_s: int | None
    outcome: str = Field(description="aired, partial, failed, missed")
    reason: str | None
    operator: str
    command_id: str | None


class AlarmOut(BaseModel):
    id: int
    kind: str
    label_vi: str
    subject: str = Field(description="The node, the source or the part the alarm is about")
    commune_id: str | None = Field(description="None: the province's (broker, headend)")
    detail: str
    raised_ms: int
    cleared_ms: int | None


class NodesOut(BaseModel):
    commune_id: str
    total: int
    online: int
    nodes: list[NodeOut]


class BulletinOut(BaseModel):
    id: int
    commune_id: str
    title: str
    summary: str
    language: str
    kind: str
    kind_vi: str
    origin: str = Field(description="upload, record, tts or httttn")
    status: str = Field(description="draft, approved or rejected")
    status_vi: str
    duration_ms: int
    lufs: float | None
    media: dict[str, str] = Field(description="Node profile -> media file name (/media/NAME)")
    text: str | None
    created_by: str
    created_ms: int
    decided_by: str | None
    decided_ms: int | None
    decision_note: str | None
    external_id: str | None = Field(description="The HTTTN's id (maBanTin) of an import")


def diary_line_out(line: ProgrammeLine, tz: ZoneInfo) -> DiaryLineOut:
    start = line.sort_ms
    return DiaryLineOut(
        key=line.key, day=datetime.fromtimestamp(start / 1000, tz).date(),
        session=session_of(start, tz), kind=line.kind, kind_vi=KIND_VI.get(line.kind, line.kind),
        priority=line.priority, priority_class=CLASSES[min(max(line.priority, 0), 2)],
        language=line.language, title=line.title, summary=line.summary, source=line.source,
        trigger=line.trigger, trigger_vi=TRIGGER_VI.get(line.trigger, line.trigger),
        planned_start_ms=line.planned_start_ms, planned_end_ms=line.planned_end_ms,
        planned_start_local=iso(line.planned_start_ms, tz),
        planned_end_local=iso(line.planned_end_ms, tz),
        start_ms=line.start_ms, end_ms=line.end_ms, start_local=iso(line.start_ms, tz),
        end_local=iso(line.end_ms, tz), duration_s=line.duration_s, outcome=line.outcome,
        outcome_vi=OUTCOME_VI.get(line.outcome, line.outcome), operator=line.operator,
        approver=line.approver,
        villages=[VillageOutcomeOut(village=v.village, outcome=v.outcome,
                                    outcome_vi=OUTCOME_VI.get(v.outcome, v.outcome),
                                    reason=v.reason) for v in line.villages],
        aired_villages=line.aired_villages, notes=list(line.notes))


def bulletin_out(b: Bulletin) -> BulletinOut:
    return BulletinOut(
        id=b.id, commune_id=b.commune_id, title=b.title, summary=b.summary or "",
        language=b.language, kind=b.kind, kind_vi=BULLETIN_KIND_VI.get(b.kind, b.kind),
        origin=b.origin, status=b.status, status_vi=STATUS_VI.get(b.status, b.status),
        duration_ms=b.duration_ms, lufs=b.lufs, media=bulletins.media_names(b), text=b.text,
        created_by=b.created_by, created_ms=b.created_ms, decided_by=b.decided_by,
        decided_ms=b.decided_ms, decision_note=b.decision_note, external_id=b.external_id)


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "on", "yes")


_FORM_FIELDS_DOC: Final[dict[str, Any]] = {
    "title": {"type": "string", "maxLength": 300, "description": "Tiêu đề"},
    "summary": {"type": "string", "maxLength": 2000, "description": "Tóm tắt"},
    "language": {"type": "string", "default": "vi", "description": "vi, tay, nung, dao"},
    "kind": {"type": "string", "enum": list(bulletins.BULLETIN_KINDS),
             "default": "local_bulletin"},
    "text": {"type": "string", "description": "Text to speak (instead of audio)"},
    "chime": {"type": "boolean", "default": False, "description": "A chime before and after"},
    "csrf": {"type": "string", "description": "Only with a session cookie"},
}
_UPLOAD_FORM: Final[dict[str, Any]] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["title"], "properties": {
            **_FORM_FIELDS_DOC,
            "audio": {"type": "string", "format": "binary",
                      "description": f"mp3, wav, m4a, ogg, opus or webm; at most "
                                     f"{MAX_BYTES // 2**20} MB and 30 minutes"}}}},
    "application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["title", "text"], "properties": _FORM_FIELDS_DOC}},
}}}


def api_router(ctx: WebContext) -> APIRouter:
    root = APIRouter()
    r = APIRouter(prefix=PREFIX, dependencies=SECURITY, responses=ERRORS)
    me_dep = Depends(ctx.user)

    @r.get("/me", tags=[TAG_ACCOUNT], summary="Who am I: user, role, communes")
    def who(me: Principal = me_dep) -> MeOut:
        me.check(VIEW)
        return MeOut(username=me.username, name=me.name, role=me.role, role_vi=me.role_vi,
                     province_wide=me.province_wide, communes=sorted(me.communes),
                     permissions=sorted(PERMISSIONS.get(me.role, ())))

    @r.get("/communes", tags=[TAG_COMMUNES], summary="The communes the caller sees")
    def communes(me: Principal = me_dep) -> list[CommuneOut]:
        me.check(VIEW)
        return [CommuneOut(**c) for c in commune_rows(ctx.engine) if me.sees(c["id"])]

    @r.get("/communes/{commune_id}/plan", tags=[TAG_COMMUNES],
           summary=f"The planned programme, first..last (default a week from today, at most "
                   f"{PLAN_MAX_DAYS} days)", responses={409: {"model": ErrorOut}})
    def plan(commune_id: str, first: str | None = None, last: str | None = None,
             me: Principal = me_dep) -> PlanOut:
        me.check(VIEW, commune_id)
        tz = commune_timezone(ctx.engine, commune_id)
        d0, d1 = day_range(first, last, ctx.today(tz), PLAN_MAX_DAYS, ahead=True)
        tz, items = plan_items(ctx, commune_id, d0, d1)
        return PlanOut(commune_id=commune_id, timezone=tz.key, first=d0, last=d1, items=items)

    @r.get("/communes/{commune_id}/diary", tags=[TAG_COMMUNES],
           summary=f"The broadcast diary (sổ nhật ký), first..last (default the week to "
                   f"today, at most {DIARY_MAX_DAYS} days)")
    def diary(commune_id: str, first: str | None = None, last: str | None = None,
              me: Principal = me_dep) -> DiaryOut:
        me.check(VIEW, commune_id)
        tz = commune_timezone(ctx.engine, commune_id)
        d0, d1 = day_range(first, last, ctx.today(tz), DIARY_MAX_DAYS, ahead=False)
        info, lines = diary_lines(ctx, commune_id, d0, d1)
        return DiaryOut(commune_id=commune_id, commune_name=info.name, timezone=info.tz.key,
                        first=d0, last=d1, lines=[diary_line_out(line, info.tz) for line in lines])

    @r.get("/communes/{commune_id}/criterion", tags=[TAG_COMMUNES],
           summary="Criterion 8.3 for the week holding `week` (default this week): what aired, "
                   "and for this week and later what the schedule plans",
           responses={409: {"model": ErrorOut}})
    def criterion(commune_id: str, week: str | None = None,
                  me: Principal = me_dep) -> CriterionOut:
        me.check(VIEW, commune_id)
        known_commune(ctx, commune_id)
        tz = commune_timezone(ctx.engine, commune_id)
        today = ctx.today(tz)
        day = parse_day(week, "week") or today
        monday = day - timedelta(days=day.weekday())
        try:
            lo, _ = day_bounds_ms(monday, tz)
            hi, _ = day_bounds_ms(monday + timedelta(days=7), tz)
        except OverflowError:
            raise HTTPException(400, "Ngày nằm ngoài khoảng cho phép.") from None
        (aired,) = judge(aired_between(ctx.engine, lo, hi, commune_id), tz, monday, 1)
        planned = None
        if monday + timedelta(days=6) >= today:
            try:
                schedule = ctx.schedule(commune_id)
            except ScheduleError as e:
                raise HTTPException(409, f"Lịch phát của xã có lỗi, hãy báo kỹ thuật viên: "
                                         f"{e}") from None
            if schedule is not None:
                (verdict,) = judge_plan(schedule, monday, 1)
                planned = criterion_week_out(verdict, "planned")
        return CriterionOut(commune_id=commune_id, timezone=tz.key,
                            aired=criterion_week_out(aired, "aired"), planned=planned)

    @r.get("/communes/{commune_id}/nodes", tags=[TAG_COMMUNES],
           summary="Loudspeaker clusters: online, last seen, telemetry, open alarms")
    def nodes(commune_id: str, me: Principal = me_dep) -> NodesOut:
        me.check(VIEW, commune_id)
        known_commune(ctx, commune_id)
        tz = commune_timezone(ctx.engine, commune_id)
        rows = [NodeOut(id=n.id, village_id=n.village_id, village=n.village, online=n.online,
                        last_seen_ms=n.last_seen_ms, last_seen_local=iso(n.last_seen_ms, tz),
                        playing=n.playing, fw=n.fw, volume=n.volume, telemetry=n.telemetry,
                        alarms=list(n.alarms))
                for n in node_rows(ctx.engine, [commune_id])]
        return NodesOut(commune_id=commune_id, total=len(rows),
                        online=sum(n.online for n in rows), nodes=rows)

    def scope(me: Principal) -> list[str] | None:
        return None if me.province_wide else sorted(me.communes)

    @r.get("/nodes", tags=[TAG_NODES],
           summary="Every loudspeaker cluster the caller sees, of all their communes")
    def all_nodes(me: Principal = me_dep) -> list[FleetNodeOut]:
        me.check(VIEW)
        tz = commune_timezone(ctx.engine)
        return [FleetNodeOut(
            id=n.id, village_id=n.village_id, village=n.village, online=n.online,
            last_seen_ms=n.last_seen_ms, last_seen_local=iso(n.last_seen_ms, tz),
            playing=n.playing, fw=n.fw, volume=n.volume, telemetry=n.telemetry,
            alarms=list(n.alarms), commune_id=n.commune_id, commune=n.commune,
            province=n.province) for n in node_rows(ctx.engine, scope(me))]

    @r.get("/asrun", tags=[TAG_NODES],
           summary="What each node reported it aired on a day (default: today), every commune "
                   "the caller sees")
    def asrun(day: str | None = None, me: Principal = me_dep) -> list[AsRunOut]:
        me.check(VIEW)
        tz = commune_timezone(ctx.engine)
        d = parse_day(day, "day") or ctx.today(tz)
        visible = scope(me)
        rows = diary_for_day(ctx.engine, d, tz) if visible is None else [
            row for cid in visible for row in diary_for_day(ctx.engine, d, tz, cid)]
        return [AsRunOut(**asdict(row), duration_s=row.duration_s,
                         planned_local=iso(row.planned_ms, tz), start_local=iso(row.start_ms, tz),
                         end_local=iso(row.end_ms, tz)) for row in rows]

    @r.get("/alarms", tags=[TAG_NODES],
           summary="Open alarms (all=true: cleared ones too), for technicians")
    def alarms(all: bool = False, me: Principal = me_dep) -> list[AlarmOut]:
        me.check(NODES)
        return [AlarmOut(id=a.id, kind=a.kind, label_vi=a.label, subject=a.subject,
                         commune_id=a.commune_id, detail=a.detail, raised_ms=a.raised_ms,
                         cleared_ms=a.cleared_ms)
                for a in list_alarms(ctx.engine, open_only=not all) if alarm_visible(a, me)]

    @r.get("/communes/{commune_id}/bulletins", tags=[TAG_BULLETINS],
           summary="Bulletins, newest first (status: draft, approved, rejected)")
    def bulletin_list(commune_id: str, status: str | None = None,
                      me: Principal = me_dep) -> list[BulletinOut]:
        me.check(VIEW, commune_id)
        known_commune(ctx, commune_id)
        if status and status not in STATUS_VI:
            raise HTTPException(400, f"Trạng thái không đúng: “{status[:40]}” (draft, "
                                     "approved hoặc rejected).")
        return [bulletin_out(b) for b in bulletins.listing(ctx.engine, commune_id, status)]

    @r.post("/communes/{commune_id}/bulletins", tags=[TAG_BULLETINS], status_code=201,
            summary="Import a bulletin as a draft (audio file or text to speak)",
            openapi_extra=_UPLOAD_FORM,
            responses={413: {"model": ErrorOut, "description": "Audio over the limit"},
                       415: {"model": ErrorOut}, 422: {"model": ErrorOut}})
    async def bulletin_create(request: Request, commune_id: str,
                              me: Principal = me_dep) -> BulletinOut:
        me.check(MAKE, commune_id)
        await run_in_threadpool(known_commune, ctx, commune_id)
        try:
            async with read_form(request, "audio", MAX_BYTES) as form:
                f = form.fields
                ctx.check_csrf(request, me, f.get("csrf"))
                meta = Meta(f.get("title", ""), f.get("summary", ""),
                            f.get("language", "vi") or "vi",
                            f.get("kind", "local_bulletin") or "local_bulletin")
                text = f.get("text", "").strip() or None
                if form.file is not None and text is not None:
                    raise HTTPException(422, "Gửi tệp âm thanh hoặc văn bản, không gửi cả hai.")
                bid = await store_bulletin(
                    ctx, request, me, commune_id, meta,
                    "upload" if form.file is not None else "tts", audio=form.file,
                    filename=form.filename, text=text, chime=_flag(f.get("chime")))
        except FormRefused as e:
            raise HTTPException(e.status, str(e)) from None
        return bulletin_out(await run_in_threadpool(bulletins.get, ctx.engine, commune_id, bid))

    root.include_router(r)
    root.include_router(httttn_router(ctx))
    return root

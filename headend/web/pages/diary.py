"""Web pages of issue 4: the commune diary (one line per programme item) with its exports,
node health by province, commune and village with the open alarms, and /metrics for
Prometheus. Vietnamese for people; figures for machines."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from headend.core import i18n
from headend.core.alarms import LABELS_VI, TEMPERATURE, alarm_visible, detail_text, list_alarms
from headend.core.auth import NODES, VIEW, Forbidden, Principal
from headend.core.models import NODE_VILLAGE, Alarm, Commune, DiaryHead, Node, Village
from headend.diary.exports import ExportError, export_diary
from headend.diary.monthly import export_monthly, monthly_report
from headend.diary.reading import NODE_STATE_VI, commune_timezone, node_rows, time_of_day
from headend.diary.reconciliation import (
    KIND_VI,
    LANGUAGE_VI,
    TRIGGER_VI,
    DiaryQueryError,
    lines_for_days,
    outcome_vi,
    session_of,
)
from headend.web.context import WebContext, day_in_range, parse_day

PAGE_DAYS = 31  # the page shows at most a month; exports take up to a year
MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")  # ASCII digits only: int() takes " 7" and "٧"
EXPORT_TYPES = {"pdf": "application/pdf", "csv": "text/csv; charset=utf-8",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
RANGE_VI = "Khoảng ngày không hợp lệ"


def diary_router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    engine, clock = ctx.engine, ctx.clock
    me_dep = Depends(ctx.user)

    def today(commune_id: str) -> date:
        return ctx.today(commune_timezone(engine, commune_id))

    def span(commune_id: str, first: str | None, last: str | None) -> tuple[date, date]:
        lo = parse_day(first, today(commune_id))
        return lo, parse_day(last, lo)

    @r.get("/diary/{commune_id}")
    def commune_diary(request: Request, commune_id: str, first: str | None = None,
                      last: str | None = None, me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        lo, hi = span(commune_id, first, last)
        if (hi - lo).days + 1 > PAGE_DAYS:
            raise HTTPException(400, f"{RANGE_VI}: trang này xem tối đa {PAGE_DAYS} ngày; "
                                     "hãy tải tệp Excel hoặc PDF cho khoảng dài hơn.")
        try:
            info, lines = lines_for_days(engine, commune_id, lo, hi, clock())
        except DiaryQueryError as e:
            raise HTTPException(404 if "unknown commune" in str(e) else 400,
                                f"{RANGE_VI} hoặc không có xã này ({e})") from None
        rows = [{
            "day": datetime.fromtimestamp(line.sort_ms / 1000, info.tz).strftime("%d/%m"),
            "session": session_of(line.sort_ms, info.tz),
            "planned": _span(line.planned_start_ms, line.planned_end_ms, info.tz),
            "actual": _span(line.start_ms, line.end_ms, info.tz),
            "kind": KIND_VI.get(line.kind, line.kind), "kind_code": line.kind,
            "title": line.title, "source": line.source,
            "language": LANGUAGE_VI.get(line.language, line.language),
            "trigger": TRIGGER_VI.get(line.trigger, line.trigger),
            "outcome": line.outcome, "outcome_vi": outcome_vi(line),
            "aired": ", ".join(line.aired_villages) or "—",
            "silent": line.silent_text() or "—",
            "notes": "; ".join(line.notes)} for line in lines]
        return ctx.page(request, "diary.html", me, info=info, rows=rows, first=lo, last=hi,
                        commune_id=commune_id,
                        aired=sum(1 for line in lines if line.aired_villages))

    @r.get("/diary/{commune_id}/export")
    def export(commune_id: str, fmt: str = "pdf", first: str | None = None,
               last: str | None = None, me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        lo, hi = span(commune_id, first, last)
        return _download(fmt, f"so-nhat-ky-{commune_id}-{lo}-{hi}", "sổ nhật ký",
                         lambda out: export_diary(engine, commune_id, lo, hi, fmt, out,
                                                  clock()), ExportError)

    @r.get("/diary/{commune_id}/report")
    def report(commune_id: str, month: str | None = None, fmt: str = "pdf",
               me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        raw = month or today(commune_id).strftime("%Y-%m")
        try:
            if not MONTH.fullmatch(raw):
                raise ValueError(raw)
            year, mon = int(raw[:4]), int(raw[5:])
            day_in_range(date(year, mon, 1), raw)
        except ValueError:
            raise HTTPException(400, f"Tháng không hợp lệ: “{raw[:40]}” (cần dạng NĂM-THÁNG, "
                                     "ví dụ 2026-11)") from None
        try:
            result = monthly_report(engine, commune_id, year, mon, clock())
        except DiaryQueryError as e:
            raise HTTPException(404, f"Không có xã này ({e})") from None
        return _download(fmt, f"bao-cao-{commune_id}-{year}-{mon:02d}", "báo cáo",
                         lambda out: export_monthly(result, fmt, out), ExportError)

    @r.get("/health")
    def health(request: Request, me: Principal = me_dep) -> Response:
        me.check(NODES)
        tz = commune_timezone(engine)
        visible = None if me.province_wide else sorted(me.communes)
        nodes = node_rows(engine, visible)
        tree: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
        for n in nodes:
            seen = datetime.fromtimestamp(n.last_seen_ms / 1000, tz).strftime(
                "%d/%m %H:%M:%S") if n.last_seen_ms else "chưa kết nối"
            tree.setdefault(n.province or "—", {}).setdefault(n.commune, {}).setdefault(
                n.village, []).append({"id": n.id, "online": n.online, "seen": seen,
                                       "state": n.state, "state_vi": NODE_STATE_VI[n.state],
                                       "hot": TEMPERATURE in n.alarms, "tel": n.telemetry,
                                       "alarms": [LABELS_VI.get(a, a) for a in n.alarms]})
        translate = i18n.translator(i18n.lang_of(request))
        alarms = [{"label": a.label, "kind": a.kind, "subject": a.subject,
                   "detail": detail_text(a.detail, translate),
                   "raised": datetime.fromtimestamp(a.raised_ms / 1000, tz)
                   .strftime("%d/%m %H:%M")} for a in list_alarms(engine, open_only=True)
                  if alarm_visible(a, me)]
        return ctx.page(request, "health.html", me, tree=tree, alarms=alarms,
                        online=sum(n.working for n in nodes), total=len(nodes))

    @r.get("/metrics")
    def metrics(me: Principal = me_dep) -> Response:
        # Figures of the whole fleet: for the province's technicians and the admin.
        me.check(NODES)
        if not me.province_wide:
            raise Forbidden("Số liệu toàn tỉnh chỉ dành cho kỹ thuật viên cấp tỉnh.")
        return PlainTextResponse(generate_latest(fleet_metrics(engine, clock())),
                                 media_type=CONTENT_TYPE_LATEST)

    return r


def _span(start: int | None, end: int | None, tz: ZoneInfo) -> str:
    """"07:00:00–07:30:00"; a start without an end says so; nothing: a dash."""
    if start is None:
        return "—"
    if end is None:
        return f"{time_of_day(start, tz)} (chưa rõ giờ kết thúc)"
    return f"{time_of_day(start, tz)}–{time_of_day(end, tz)}"


def _download(fmt: str, name: str, what: str, write: Callable[[Path], object],
              error: type[Exception]) -> Response:
    """A file written by `write` into a temporary directory, sent, then removed."""
    if fmt not in EXPORT_TYPES:
        raise HTTPException(400, f"Định dạng không hỗ trợ: “{fmt[:40]}” (pdf, xlsx, csv)")
    out = Path(tempfile.mkdtemp(prefix="loaxa-export-")) / f"{name}.{fmt}"
    try:
        write(out)
    except error as e:
        _remove(out)
        raise HTTPException(400, f"Không xuất được {what}: {e}") from None
    return FileResponse(out, media_type=EXPORT_TYPES[fmt], filename=out.name,
                        background=BackgroundTask(_remove, out))


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.parent.rmdir()


def fleet_metrics(engine: Engine, now_ms: int) -> CollectorRegistry:
    """Fleet figures for Prometheus, read from the database at each scrape (a province is
    about 2,000 nodes: a few cheap queries, no per-record counting)."""
    reg = CollectorRegistry()
    nodes = Gauge("loaxa_nodes", "Provisioned loudspeaker clusters", ["commune", "state"],
                  registry=reg)
    alarms = Gauge("loaxa_alarms_open", "Open alarms", ["kind"], registry=reg)
    entries = Gauge("loaxa_diary_entries", "Entries in the commune's diary chain", ["commune"],
                    registry=reg)
    seen = Gauge("loaxa_node_last_seen_seconds", "Seconds since the node was last heard",
                 ["node", "commune"], registry=reg)
    signal = Gauge("loaxa_node_signal_dbm", "Signal strength", ["node", "commune"],
                   registry=reg)
    offset = Gauge("loaxa_node_clock_offset_ms", "Node clock minus headend clock",
                   ["node", "commune"], registry=reg)
    heap = Gauge("loaxa_node_heap_free_bytes", "Free heap", ["node", "commune"], registry=reg)
    with Session(engine) as s:
        for commune, online, count in s.execute(
                select(Village.commune_id, Node.online, func.count())
                .join(Village, NODE_VILLAGE)
                .group_by(Village.commune_id, Node.online)):
            nodes.labels(commune, "online" if online else "offline").set(count)
        for kind, count in s.execute(select(Alarm.kind, func.count())
                                     .where(Alarm.cleared_ms.is_(None)).group_by(Alarm.kind)):
            alarms.labels(kind).set(count)
        for commune, seq in s.execute(select(DiaryHead.commune_id, DiaryHead.seq)):
            entries.labels(commune).set(seq)
        for commune_id in s.scalars(select(Commune.id)):
            entries.labels(commune_id)  # a commune with no entries yet shows 0
        for node_id, commune, last, raw in s.execute(
                select(Node.id, Village.commune_id, Node.last_seen_ms, Node.telemetry)
                .join(Village, NODE_VILLAGE)):
            if last is not None:
                seen.labels(node_id, commune).set((now_ms - last) / 1000)
            try:
                tel = json.loads(raw) if raw else {}
            except ValueError:
                continue
            for gauge, key in ((signal, "signal_dbm"), (offset, "clock_offset_ms"),
                               (heap, "heap_free")):
                value = tel.get(key) if isinstance(tel, dict) else None
                if isinstance(value, int | float) and not isinstance(value, bool):
                    gauge.labels(node_id, commune).set(value)
    return reg

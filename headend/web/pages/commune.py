"""The commune's loudspeakers as the officer sees them (a tile per village, green when every
cluster there works), the health part of the commune's overview (open alarms first, a village
working only while one of its clusters sounds), and the audit log: the commune's, and the
whole province's for its admin."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy import Engine

from headend.core import audit
from headend.core.alarms import LABELS_VI, detail_text, list_alarms
from headend.core.audit import ACTION_VI
from headend.core.auth import ADMIN, ROLE_VI, VIEW, Forbidden, Principal
from headend.core.models import AuditEntry
from headend.diary.reading import (
    AMP_BROKEN,
    OFFLINE,
    WORKING,
    NodeRow,
    commune_name,
    commune_rows,
    commune_timezone,
    node_rows,
)
from headend.web.context import MAX_ID, WebContext

# A cluster's state inside a sentence (the village tiles).
STATE_LOWER_VI = {WORKING: "hoạt động", AMP_BROKEN: "lỗi ampli", OFFLINE: "mất kết nối"}
PROVINCE_AUDIT_VI = "Nhật ký thao tác toàn tỉnh chỉ dành cho quản trị viên tỉnh."
# "Older than entry N", from the page's own "more" link: an entry id, 1 to MAX_ID.
BEFORE = Query(None, ge=1, le=MAX_ID)


def commune_health(engine: Engine, commune_id: str, nodes: Sequence[NodeRow], tz: ZoneInfo,
                   translate: Callable[[str], str]) -> dict[str, Any]:
    """What the overview says about the commune's loudspeakers: clusters working (reachable,
    amplifier sound), offline or with an amplifier fault; villages where at least one cluster
    works; and the commune's open alarms, newest first, in the page's language."""
    villages: dict[str, tuple[str, bool]] = {}
    where: dict[str, str] = {}
    for n in nodes:
        name, ok = villages.get(n.village_id, (n.village, False))
        villages[n.village_id] = (name, ok or n.working)
        where[n.id] = f"{n.village} ({n.id})"
        where[n.village_id] = n.village
    alarms = [{"kind": a.kind, "label": a.label, "where": where.get(a.subject, a.subject),
               "detail": detail_text(a.detail, translate),
               "raised": datetime.fromtimestamp(a.raised_ms / 1000, tz).strftime("%H:%M %d/%m")}
              for a in sorted(list_alarms(engine, open_only=True),
                              key=lambda a: (a.raised_ms, a.id), reverse=True)
              if a.commune_id == commune_id]
    return {"working": sum(n.state == WORKING for n in nodes),
            "offline": sum(n.state == OFFLINE for n in nodes),
            "amp_faults": sum(n.state == AMP_BROKEN for n in nodes),
            "villages_total": len(villages),
            "villages_working": sum(ok for _, ok in villages.values()),
            "villages_down": [name for name, ok in villages.values() if not ok],
            "alarms": alarms}


def commune_router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    me_dep = Depends(ctx.user)

    def named(commune_id: str) -> str:
        name = commune_name(ctx.engine, commune_id)
        if name is None:
            raise HTTPException(404, "Không có xã này.")
        return name

    @r.get("/c/{commune_id}/nodes")
    def nodes(request: Request, commune_id: str, me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        name = named(commune_id)
        tz = commune_timezone(ctx.engine, commune_id)
        villages: dict[str, dict[str, Any]] = {}
        for n in node_rows(ctx.engine, [commune_id]):
            v = villages.setdefault(n.village_id, {"name": n.village, "nodes": [], "ok": True})
            seen = (datetime.fromtimestamp(n.last_seen_ms / 1000, tz).strftime("%H:%M %d/%m")
                    if n.last_seen_ms else "chưa liên lạc")
            v["nodes"].append({"id": n.id, "online": n.online, "seen": seen,
                               "state": n.state, "state_vi": STATE_LOWER_VI[n.state],
                               "playing": n.playing, "volume": n.volume,
                               "signal": n.reading("signal_dbm"),
                               "alarms": [LABELS_VI.get(a, a) for a in n.alarms]})
            v["ok"] = v["ok"] and n.working and not n.alarms
        return ctx.page(request, "nodes.html", me, commune_id=commune_id, commune=name,
                        villages=list(villages.values()))

    @r.get("/c/{commune_id}/audit")
    def audit_log(request: Request, commune_id: str, before: int | None = BEFORE,
                  me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        name = named(commune_id)
        tz = commune_timezone(ctx.engine, commune_id)
        rows = audit.entries(ctx.engine, [commune_id], 200, before)
        return ctx.page(request, "audit.html", me, commune_id=commune_id, commune=name,
                        rows=[_audit_row(e, tz) for e in rows],
                        more=rows[-1].id if len(rows) == 200 else None)

    @r.get("/audit")
    def province_audit(request: Request, before: int | None = BEFORE,
                       me: Principal = me_dep) -> Response:
        """Every entry, those of no commune too (the admin's own log-ins, users and tokens
        added, failed log-ins under unknown names): the province's admin only."""
        if me.role != ADMIN or not me.province_wide:
            raise Forbidden(PROVINCE_AUDIT_VI)
        tz = commune_timezone(ctx.engine)
        names = {c["id"]: c["name"] for c in commune_rows(ctx.engine)}
        rows = audit.entries(ctx.engine, None, 200, before)
        return ctx.page(request, "audit.html", me, commune_id=None, commune=None,
                        province=True,
                        rows=[_audit_row(e, tz, [names.get(c, c) for c in cs if c])
                              for e, cs in audit.merged(rows)],
                        more=rows[-1].id if len(rows) == 200 else None)

    return r


def _audit_row(e: AuditEntry, tz: ZoneInfo, communes: Sequence[str] = ()) -> dict[str, Any]:
    return {"id": e.id, "at": datetime.fromtimestamp(e.at_ms / 1000, tz)
            .strftime("%H:%M:%S %d/%m/%Y"), "who": e.username,
            "role": ROLE_VI.get(e.role, e.role), "action": ACTION_VI.get(e.action, e.action),
            "target": e.target, "detail": e.detail, "ip": e.ip, "communes": list(communes)}

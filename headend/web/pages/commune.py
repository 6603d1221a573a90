"""The commune's loudspeakers as the officer sees them (a tile per village, green when every
cluster there works), and the commune's audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from headend.core import audit
from headend.core.alarms import LABELS_VI
from headend.core.audit import ACTION_VI
from headend.core.auth import ROLE_VI, VIEW, Principal
from headend.diary.reading import commune_name, commune_timezone, node_rows
from headend.web.context import WebContext


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
                               "playing": n.playing, "volume": n.volume,
                               "signal": n.reading("signal_dbm"),
                               "alarms": [LABELS_VI.get(a, a) for a in n.alarms]})
            v["ok"] = v["ok"] and n.online and not n.alarms
        return ctx.page(request, "nodes.html", me, commune_id=commune_id, commune=name,
                        villages=list(villages.values()))

    @r.get("/c/{commune_id}/audit")
    def audit_log(request: Request, commune_id: str, before: int | None = None,
                  me: Principal = me_dep) -> Response:
        me.check(VIEW, commune_id)
        name = named(commune_id)
        tz = commune_timezone(ctx.engine, commune_id)
        rows = audit.entries(ctx.engine, [commune_id], 200, before)
        return ctx.page(request, "audit.html", me, commune_id=commune_id, commune=name, rows=[{
            "id": e.id, "at": datetime.fromtimestamp(e.at_ms / 1000, tz)
            .strftime("%H:%M:%S %d/%m/%Y"), "who": e.username,
            "role": ROLE_VI.get(e.role, e.role), "action": ACTION_VI.get(e.action, e.action),
            "target": e.target, "detail": e.detail, "ip": e.ip} for e in rows],
            more=rows[-1].id if len(rows) == 200 else None)

    return r

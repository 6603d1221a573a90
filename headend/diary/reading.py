"""Reading the diary (sổ nhật ký truyền thanh) and the node list for people."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from headend.core.alarms import AMP_FAULT, NODE_OFFLINE
from headend.core.models import NODE_VILLAGE, Alarm, AsRunRecord, Command, Commune, Node, Village
from headend.planning.criterion import Aired

log = logging.getLogger("loaxa.diary")
DEFAULT_TZ = "Asia/Ho_Chi_Minh"
DAY_MS = 86_400_000
# A node's state for people (NodeRow.state); a village is working when one of its nodes is.
WORKING, AMP_BROKEN, OFFLINE = "working", "amp_fault", "offline"
NODE_STATE_VI = {WORKING: "Hoạt động", AMP_BROKEN: "Lỗi ampli", OFFLINE: "Mất kết nối"}


@dataclass(frozen=True)
class DiaryRow:
    node_id: str
    village: str
    title: str
    trigger: str
    planned_ms: int | None
    start_ms: int | None
    end_ms: int | None
    outcome: str
    reason: str | None
    operator: str
    command_id: str | None

    @property
    def duration_s(self) -> int | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return round((self.end_ms - self.start_ms) / 1000)


@dataclass(frozen=True)
class NodeRow:
    id: str
    village: str
    commune: str
    online: bool
    last_seen_ms: int | None
    playing: str | None  # title of what is on air, or the command id
    fw: str | None
    volume: int | None
    province: str = ""
    commune_id: str = ""
    village_id: str = ""
    telemetry: dict[str, Any] = field(default_factory=dict)  # the newest, as the node sent it
    alarms: tuple[str, ...] = ()  # kinds of the node's open alarms

    def reading(self, key: str) -> Any:
        return self.telemetry.get(key)

    @property
    def amp_fault(self) -> bool:
        return AMP_FAULT in self.alarms or self.telemetry.get("amp_fault") is True

    @property
    def reachable(self) -> bool:
        """Online, and not silent for longer than the offline time (a half-open link)."""
        return self.online and NODE_OFFLINE not in self.alarms

    @property
    def state(self) -> str:
        """"working" (reachable, no amplifier fault: its loudspeakers sound), "amp_fault" or
        "offline"."""
        if not self.reachable:
            return OFFLINE
        return AMP_BROKEN if self.amp_fault else WORKING

    @property
    def working(self) -> bool:
        return self.state == WORKING


def commune_timezone(engine: Engine, commune_id: str | None = None) -> ZoneInfo:
    """The zone people read times in: the commune's (commune files are checked on load)."""
    q = select(Commune.timezone).order_by(Commune.id).limit(1)
    if commune_id is not None:
        q = q.where(Commune.id == commune_id)
    with Session(engine) as s:
        tz = s.scalar(q)
    try:
        return ZoneInfo(tz or DEFAULT_TZ)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("commune timezone %r is unknown; showing times in %s", tz, DEFAULT_TZ)
        return ZoneInfo(DEFAULT_TZ)


def commune_name(engine: Engine, commune_id: str | None = None) -> str | None:
    """The commune's name ("Xã Tân Lang"), or None before one is provisioned."""
    q = select(Commune.name).order_by(Commune.id).limit(1)
    if commune_id is not None:
        q = q.where(Commune.id == commune_id)
    with Session(engine) as s:
        return s.scalar(q)


def time_of_day(ms: int | None, tz: ZoneInfo) -> str:
    """HH:MM:SS in the commune's zone, or a dash when there is no time."""
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%H:%M:%S")


def commune_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every commune with its node counts, for the province's list."""
    stmt = (select(Commune.id, Commune.name, Commune.province, func.count(Node.id),
                   func.count(Node.id).filter(Node.online.is_(True)))
            .outerjoin(Village, Village.commune_id == Commune.id)
            .outerjoin(Node, NODE_VILLAGE)
            .group_by(Commune.id, Commune.name, Commune.province)
            .order_by(Commune.province, Commune.name))
    with Session(engine) as s:
        return [{"id": cid, "name": name, "province": province, "nodes": n, "online": on}
                for cid, name, province, n, on in s.execute(stmt)]


def first_commune_id(engine: Engine) -> str | None:
    with Session(engine) as s:
        return s.scalar(select(Commune.id).order_by(Commune.id).limit(1))


def day_bounds_ms(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) of the local day in UTC ms; the end of date.max is start + 24 h."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    lo = int(start.timestamp() * 1000)
    try:
        hi = int(datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).timestamp() * 1000)
    except OverflowError:
        hi = lo + DAY_MS
    return lo, hi


def diary_for_day(engine: Engine, day: date, tz: ZoneInfo | None = None,
                  commune_id: str | None = None) -> list[DiaryRow]:
    """What aired on `day` (the commune's local day), one line per node and item; of one
    commune, or of all."""
    tz = tz or commune_timezone(engine)
    lo, hi = day_bounds_ms(day, tz)
    stmt = (
        select(AsRunRecord, Village.name,
               func.coalesce(AsRunRecord.planned_start_ms, Command.issued_ms), Command.operator)
        .join(Node, Node.id == AsRunRecord.node_id)
        .join(Village, NODE_VILLAGE)
        .outerjoin(Command, Command.id == AsRunRecord.command_id)
        .where(
            # Items that never started are filed under the day the node reported them.
            ((AsRunRecord.start_ms >= lo) & (AsRunRecord.start_ms < hi))
            | (AsRunRecord.start_ms.is_(None) & (AsRunRecord.received_ms >= lo)
               & (AsRunRecord.received_ms < hi))
        )
        # Same order on every database: a record without a start sits where it was reported.
        .order_by(func.coalesce(AsRunRecord.start_ms, AsRunRecord.received_ms),
                  AsRunRecord.node_id, AsRunRecord.rid)
    )
    if commune_id is not None:
        stmt = stmt.where(Village.commune_id == commune_id)
    with Session(engine) as s:
        return [
            DiaryRow(r.node_id, village, r.title, r.trigger, planned, r.start_ms, r.end_ms,
                     r.outcome, r.reason,
                     operator or ("Lịch phát" if r.trigger == "plan" else ""), r.command_id)
            for r, village, planned, operator in s.execute(stmt)
        ]


def node_rows(engine: Engine, communes: Sequence[str] | None = None) -> list[NodeRow]:
    """Every node (of `communes`, or all), ordered province, commune, village, node, with its
    newest telemetry."""
    stmt = (
        select(Node, Village.name, Commune.name, Command.title, Commune.province, Commune.id)
        .join(Village, NODE_VILLAGE)
        .join(Commune, Commune.id == Village.commune_id)
        .outerjoin(Command, Command.id == Node.playing)
        .order_by(Commune.province, Commune.name, Village.name, Node.id)
    )
    if communes is not None:
        stmt = stmt.where(Commune.id.in_(communes))
    out = []
    with Session(engine) as s:
        open_alarms: dict[str, list[str]] = {}
        for kind, subject in s.execute(select(Alarm.kind, Alarm.subject)
                                       .where(Alarm.cleared_ms.is_(None))):
            open_alarms.setdefault(subject, []).append(kind)
        for node, village, commune, title, province, commune_id in s.execute(stmt):
            tel = _telemetry(node.telemetry)
            playing = (title or node.playing) if node.playing else None
            out.append(NodeRow(node.id, village, commune, node.online, node.last_seen_ms,
                               playing, node.fw, tel.get("volume"), province, commune_id,
                               node.village_id, tel, tuple(open_alarms.get(node.id, ()))))
    return out


def _telemetry(raw: str | None) -> dict[str, Any]:
    # Stored as received from the node: a bad one must not break the node list.
    try:
        tel = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return tel if isinstance(tel, dict) else {}


def aired_between(engine: Engine, lo_ms: int, hi_ms: int,
                  commune_id: str | None = None) -> list[Aired]:
    """What sounded in [lo, hi), from the as-run records, for the criterion 8.3 check: plan
    items by their occurrence (each node's record of it), emergencies and announcements too."""
    stmt = (select(AsRunRecord.item_id, AsRunRecord.command_id, AsRunRecord.kind,
                   AsRunRecord.trigger, AsRunRecord.language, AsRunRecord.start_ms,
                   AsRunRecord.end_ms)
            .where(AsRunRecord.outcome.in_(("aired", "partial")),
                   # No item lasts a day (slots end by midnight): a lower bound on the start
                   # lets the database use its start index instead of reading every earlier
                   # record.
                   AsRunRecord.start_ms >= lo_ms - DAY_MS,
                   AsRunRecord.start_ms < hi_ms, AsRunRecord.end_ms > lo_ms))
    if commune_id is not None:
        stmt = stmt.where(AsRunRecord.commune_id == commune_id)
    out = []
    with Session(engine) as s:
        for item, cmd, kind, trigger, lang, start, end in s.execute(stmt):
            if start is None or end is None:
                continue
            occurrence = item.split("#")[0] if item else f"cmd:{cmd}"
            kind = kind or ("emergency" if trigger == "emergency" else "notice")
            out.append(Aired(occurrence, kind, lang or "vi", start, end))
    return out

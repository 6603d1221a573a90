"""Alarms for technicians: raised once and cleared once, never repeated while they last.

An alarm is identified by (kind, subject), e.g. ("source_unreachable", "vov1:primary"). Raising
an alarm that is already open does nothing; clearing one that is not open does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.orm import Session

from headend.core.auth import Principal
from headend.core.models import Alarm

# Relay sources and plans (headend/media/sources.py, headend/nodes/ingest.py).
SOURCE_UNREACHABLE = "source_unreachable"
SOURCE_SILENT = "source_silent"
RELAY_FAILED = "relay_failed"  # a node could air neither the primary nor the backup stream
PLAN_REJECTED = "plan_rejected"
# Node health (headend/nodes/health.py).
NODE_OFFLINE = "node_offline"
BROADCAST_MISSED = "broadcast_missed"
AMP_FAULT = "amp_fault"
WEAK_SIGNAL = "weak_signal"
CLOCK_OFFSET = "clock_offset"
VILLAGE_SILENT = "village_silent"  # every loudspeaker cluster of a village has failed

LABELS_VI = {
    SOURCE_UNREACHABLE: "Nguồn tiếp sóng không truy cập được",
    SOURCE_SILENT: "Nguồn tiếp sóng im lặng",
    RELAY_FAILED: "Cụm loa không tiếp sóng được (đã phát thông báo dự phòng)",
    PLAN_REJECTED: "Cụm loa từ chối lịch phát",
    NODE_OFFLINE: "Cụm loa mất kết nối",
    BROADCAST_MISSED: "Cụm loa không phát được chương trình",
    AMP_FAULT: "Lỗi bộ khuếch đại (ampli)",
    WEAK_SIGNAL: "Sóng 4G yếu",
    CLOCK_OFFSET: "Đồng hồ cụm loa lệch quá 2 giây",
    VILLAGE_SILENT: "Cả thôn không còn loa hoạt động",
}


@dataclass(frozen=True)
class AlarmView:
    id: int
    kind: str
    subject: str
    detail: str
    raised_ms: int
    cleared_ms: int | None
    commune_id: str | None = None

    @property
    def label(self) -> str:
        return LABELS_VI.get(self.kind, self.kind)


def raise_on(conn: Connection, kind: str, subject: str, detail: str, now_ms: int,
             commune_id: str | None = None) -> bool:
    """Open the alarm unless it is already open, in the caller's transaction; True when it
    was raised now."""
    open_ = conn.scalar(select(Alarm.id).where(
        Alarm.kind == kind, Alarm.subject == subject, Alarm.cleared_ms.is_(None)))
    if open_ is not None:
        return False
    conn.execute(insert(Alarm).values(kind=kind, subject=subject[:200], commune_id=commune_id,
                                      detail=detail[:2000], raised_ms=now_ms))
    return True


def clear_on(conn: Connection, kind: str, subject: str, now_ms: int) -> bool:
    """Clear the open alarm, if any, in the caller's transaction; True when one was cleared."""
    done = conn.execute(update(Alarm).where(
        Alarm.kind == kind, Alarm.subject == subject, Alarm.cleared_ms.is_(None))
        .values(cleared_ms=now_ms))
    return bool(done.rowcount)


Decision = tuple[bool, str, str | None]  # (raise it, detail, commune) for one subject


def settle(conn: Connection, kind: str, decisions: Mapping[str, Decision], now_ms: int) -> None:
    """Raise or clear the alarm of `kind` for many subjects at once, in the caller's
    transaction: one query for what is open, one insert, one update. Storing a burst of node
    reports must not cost a query per report (measured in `loaxa bench ingest`)."""
    if not decisions:
        return
    open_ = set(conn.scalars(select(Alarm.subject).where(
        Alarm.kind == kind, Alarm.cleared_ms.is_(None), Alarm.subject.in_(list(decisions)))))
    raised = [{"kind": kind, "subject": s[:200], "commune_id": commune, "detail": detail[:2000],
               "raised_ms": now_ms}
              for s, (up, detail, commune) in decisions.items() if up and s not in open_]
    cleared = [{"k": kind, "s": s, "now": now_ms}
               for s, (up, _, _) in decisions.items() if not up and s in open_]
    if raised:
        conn.execute(insert(Alarm), raised)
    if cleared:
        conn.execute(update(Alarm).where(Alarm.kind == bindparam("k"),
                                         Alarm.subject == bindparam("s"),
                                         Alarm.cleared_ms.is_(None))
                     .values(cleared_ms=bindparam("now")), cleared)


def raise_alarm(engine: Engine, kind: str, subject: str, detail: str, now_ms: int,
                commune_id: str | None = None) -> bool:
    with engine.begin() as conn:
        return raise_on(conn, kind, subject, detail, now_ms, commune_id)


def clear_alarm(engine: Engine, kind: str, subject: str, now_ms: int) -> bool:
    with engine.begin() as conn:
        return clear_on(conn, kind, subject, now_ms)


def list_alarms(engine: Engine, open_only: bool = False) -> list[AlarmView]:
    with Session(engine) as s:
        q = select(Alarm).order_by(Alarm.raised_ms, Alarm.id)
        if open_only:
            q = q.where(Alarm.cleared_ms.is_(None))
        return [AlarmView(a.id, a.kind, a.subject, a.detail, a.raised_ms, a.cleared_ms,
                          a.commune_id)
                for a in s.scalars(q)]


def alarm_visible(a: AlarmView, me: Principal) -> bool:
    """Alarms of no commune (the broker, the headend) are the province's."""
    return me.province_wide if a.commune_id is None else me.sees(a.commune_id)

"""Alarms for technicians: raised once and cleared once, never repeated while they last.

An alarm is identified by (kind, subject), e.g. ("source_unreachable", "vov1:primary"). Raising
an alarm that is already open does nothing; clearing one that is not open does nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
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
PLAN_TOO_LARGE = "plan_too_large"  # a node's plan cannot be published (headend/planning)
# Node health (headend/nodes/health.py).
NODE_OFFLINE = "node_offline"
BROADCAST_MISSED = "broadcast_missed"
AMP_FAULT = "amp_fault"
WEAK_SIGNAL = "weak_signal"
CLOCK_OFFSET = "clock_offset"
VILLAGE_SILENT = "village_silent"  # every loudspeaker cluster of a village has failed
TEMPERATURE = "temperature"  # a board hotter than its limit (headend/nodes/health.py)
# Node reports (headend/nodes/admission.py, headend/nodes/ingest.py).
ASRUN_REFUSED = "asrun_refused"  # a signed as-run record of the wrong shape or impossible times
ASRUN_CONFLICT = "asrun_conflict"  # a record id came back with other content than stored

LABELS_VI = {
    SOURCE_UNREACHABLE: "Nguồn tiếp sóng không truy cập được",
    SOURCE_SILENT: "Nguồn tiếp sóng im lặng",
    RELAY_FAILED: "Cụm loa không tiếp sóng được (đã phát thông báo dự phòng)",
    PLAN_REJECTED: "Cụm loa từ chối lịch phát",
    PLAN_TOO_LARGE: "Lịch phát quá dày, không gửi được xuống cụm loa",
    NODE_OFFLINE: "Cụm loa mất kết nối",
    BROADCAST_MISSED: "Cụm loa không phát được chương trình",
    AMP_FAULT: "Lỗi bộ khuếch đại (ampli)",
    WEAK_SIGNAL: "Sóng 4G yếu",
    CLOCK_OFFSET: "Đồng hồ cụm loa lệch quá 2 giây",
    VILLAGE_SILENT: "Cả thôn không còn loa hoạt động",
    TEMPERATURE: "Cụm loa quá nóng",
    ASRUN_REFUSED: "Cụm loa gửi bản ghi phát sóng không hợp lệ",
    ASRUN_CONFLICT: "Cụm loa gửi hai bản ghi khác nhau cùng số",
}

# What an alarm's detail says, stored in Vietnamese (the CLI and the API show it as stored).
# Pages show it in their language: `detail_text` finds the template a detail was made from
# and formats the template's English (headend/core/i18n.py) with the same values. A detail
# made otherwise (a relay probe's error, an older English one) is shown as it is.
DETAIL_AMP_CURRENT = "Ampli đang bật nhưng chỉ tiêu thụ {ma} mA"
DETAIL_AMP_REPORTED = "Ampli báo lỗi (phần cứng báo, hoặc dòng điện quá thấp khi bật)"
DETAIL_WEAK_SIGNAL = "Sóng {dbm} dBm ({link})"
DETAIL_CLOCK = "Đồng hồ cụm loa lệch {ms} ms so với máy chủ"
DETAIL_SILENT_S = "Không nhận được tin nào từ cụm loa trong {seconds} giây"
DETAIL_SILENT_MIN = "Không nhận được tin nào từ cụm loa trong {minutes} phút"
DETAIL_GONE_S = ("Không nhận được tin nào từ cụm loa trong {seconds} giây (máy chủ MQTT đã "
                 "báo cụm loa mất kết nối)")
DETAIL_GONE_MIN = ("Không nhận được tin nào từ cụm loa trong {minutes} phút (máy chủ MQTT đã "
                   "báo cụm loa mất kết nối)")
DETAIL_MISSED = "Bỏ lỡ “{what}”: {reason}"
DETAIL_FAILED = "Không phát được “{what}”: {reason}"
DETAIL_NO_REASON = "không rõ lý do"
DETAIL_VILLAGE_ONE = "Cụm loa duy nhất của thôn mất kết nối hoặc lỗi ampli: {nodes}"
DETAIL_VILLAGE_ALL = "Cả {n} cụm loa của thôn đều mất kết nối hoặc lỗi ampli: {nodes}"
DETAIL_HOT = "Nhiệt độ {temp} °C, vượt ngưỡng {limit} °C của bo mạch {board}"
DETAIL_PLAN_TOO_LARGE = ("{items} mục trong {hours} giờ vượt giới hạn {kb} KB của một lịch "
                         "phát; cụm loa giữ lịch cũ")
DETAIL_ASRUN_REFUSED = ("Bản ghi số {rid} bị từ chối ({why}: {detail}); cụm loa đã bỏ bản ghi "
                        "này")
DETAIL_ASRUN_CONFLICT = ("Bản ghi số {rid} gửi lại với nội dung khác; nhật ký giữ bản nhận "
                         "trước")
DETAILS = (DETAIL_ASRUN_REFUSED, DETAIL_ASRUN_CONFLICT, DETAIL_AMP_CURRENT, DETAIL_AMP_REPORTED,
           DETAIL_WEAK_SIGNAL, DETAIL_CLOCK,
           DETAIL_SILENT_S, DETAIL_SILENT_MIN, DETAIL_GONE_S, DETAIL_GONE_MIN, DETAIL_MISSED,
           DETAIL_FAILED, DETAIL_VILLAGE_ONE, DETAIL_VILLAGE_ALL, DETAIL_HOT,
           DETAIL_PLAN_TOO_LARGE)
# Values that are words themselves (looked up in the catalog too); the others are data.
_WORDS = {DETAIL_NO_REASON}
_FIELD = re.compile(r"\{(\w+)\}")


def _pattern(template: str) -> re.Pattern[str]:
    parts, at = [], 0
    for m in _FIELD.finditer(template):
        parts += [re.escape(template[at:m.start()]), f"(?P<{m.group(1)}>.+?)"]
        at = m.end()
    parts.append(re.escape(template[at:]))
    return re.compile("".join(parts), re.S)


_PATTERNS = [(t, _pattern(t)) for t in DETAILS]


def detail_text(detail: str, translate: Callable[[str], str]) -> str:
    """An alarm's detail in the language of `translate` (a page's `_`)."""
    for template, pattern in _PATTERNS:
        m = pattern.fullmatch(detail)
        if m:
            values = {k: translate(v) if v in _WORDS else v for k, v in m.groupdict().items()}
            return translate(template).format(**values)
    return translate(detail)


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


def settle(conn: Connection, kind: str, decisions: Mapping[str, Decision], now_ms: int,
           commune_id: str | None = None) -> None:
    """Raise or clear the alarm of `kind` for many subjects at once, in the caller's
    transaction: one query for what is open, one insert, one update. Storing a burst of node
    reports must not cost a query per report (measured in `loaxa bench ingest`).
    With commune_id, only that commune's alarms: for subjects named within a commune (a
    village id), which another commune may use too."""
    if not decisions:
        return
    mine = [Alarm.commune_id == commune_id] if commune_id is not None else []
    open_ = set(conn.scalars(select(Alarm.subject).where(
        Alarm.kind == kind, Alarm.cleared_ms.is_(None), Alarm.subject.in_(list(decisions)),
        *mine)))
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
                                         Alarm.cleared_ms.is_(None), *mine)
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

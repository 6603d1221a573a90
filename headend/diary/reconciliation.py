"""The commune's diary (sổ nhật ký truyền thanh) as an assessor reads it: one line per programme
item, reconciled Rivendell-style against the plan. Planned start and end beside the actual ones,
what started it, the outcome, and the villages that actually aired it and those that did not.

Lines come from the planned programme (`programme`, written when plans are built) and from what
the nodes recorded (`asrun`); an airing nobody planned (an emergency, a command, a test tone) is
a line of its own. A correction entry replaces the outcome of the entry it corrects.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Engine, or_, select
from sqlalchemy.orm import Session

from headend.core.models import AsRunRecord, Command, Commune, Node, Programme, Village
from headend.diary.reading import DAY_MS, DEFAULT_TZ, day_bounds_ms

MAX_DAYS = 366  # one request covers at most a year; longer ranges are asked for in parts
LATE_MS = 6 * 3600_000  # records of an item may arrive for a while after it ends
AIRED, PARTIAL, MISSED, FAILED = "aired", "partial", "missed", "failed"
NO_REPORT, PLANNED = "no_report", "planned"  # nothing heard from a village yet
_RANK = {AIRED: 4, PARTIAL: 3, FAILED: 2, MISSED: 1, NO_REPORT: 0, PLANNED: 0}

OUTCOME_VI = {AIRED: "Đã phát", PARTIAL: "Phát dở", FAILED: "Không phát được",
              MISSED: "Bỏ lỡ", NO_REPORT: "Chưa có báo cáo", PLANNED: "Theo lịch"}
KIND_VI = {"vov_relay": "Tiếp sóng VOV", "province_relay": "Tiếp sóng Đài tỉnh",
           "local_bulletin": "Bản tin địa phương", "notice": "Thông báo",
           "emergency": "Khẩn cấp", "test": "Thử loa"}
TRIGGER_VI = {"plan": "Lịch phát", "emergency": "Khẩn cấp", "command": "Lệnh phát",
              "manual": "Kỹ thuật viên", "live": "Trực tiếp"}
LANGUAGE_VI = {"vi": "Tiếng Việt", "tay": "Tiếng Tày", "nung": "Tiếng Nùng",
               "dao": "Tiếng Dao", "hmong": "Tiếng Mông"}


class DiaryQueryError(ValueError):
    """A diary request that cannot be answered: says what is wrong with it."""


@dataclass(frozen=True)
class CommuneInfo:
    id: str
    name: str
    province: str
    terrain: str
    tz: ZoneInfo
    villages: dict[str, str]  # id -> name, in the commune's order


@dataclass(frozen=True)
class VillageOutcome:
    village: str  # name
    outcome: str
    reason: str | None = None


@dataclass
class ProgrammeLine:
    key: str  # the occurrence ("<slot>@<date>") or "cmd:<id>"
    kind: str
    title: str
    summary: str
    language: str
    priority: int
    trigger: str
    source: str
    planned_start_ms: int | None
    planned_end_ms: int | None
    start_ms: int | None = None
    end_ms: int | None = None
    operator: str = ""
    approver: str = ""
    villages: list[VillageOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # incidents and corrections

    @property
    def aired_villages(self) -> list[str]:
        return [v.village for v in self.villages if v.outcome in (AIRED, PARTIAL)]

    @property
    def silent_villages(self) -> list[VillageOutcome]:
        return [v for v in self.villages if v.outcome not in (AIRED, PARTIAL)]

    @property
    def outcome(self) -> str:
        outs = {v.outcome for v in self.villages}
        if not outs:
            return PLANNED
        if outs <= {AIRED}:
            return AIRED
        if outs & {AIRED, PARTIAL}:
            return PARTIAL
        if FAILED in outs:
            return FAILED
        if outs <= {PLANNED}:
            return PLANNED
        return MISSED if MISSED in outs else NO_REPORT

    @property
    def sort_ms(self) -> int:
        return self.planned_start_ms or self.start_ms or 0

    @property
    def duration_s(self) -> int | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return max(0, round((self.end_ms - self.start_ms) / 1000))


def session_of(ms: int, tz: ZoneInfo) -> str:
    """The broadcast session a time belongs to, as officers name them."""
    hour = datetime.fromtimestamp(ms / 1000, tz).hour
    return "Sáng" if hour < 11 else "Trưa" if hour < 14 else "Chiều" if hour < 18 else "Tối"


def commune_info(engine: Engine, commune_id: str) -> CommuneInfo:
    with Session(engine) as s:
        c = s.get(Commune, commune_id)
        if c is None:
            known = s.scalars(select(Commune.id).order_by(Commune.id)).all()
            raise DiaryQueryError(f"unknown commune {commune_id!r} (known: "
                                  f"{', '.join(known) or 'none'})")
        villages = dict(s.execute(select(Village.id, Village.name)
                                  .where(Village.commune_id == commune_id)
                                  .order_by(Village.id)).all())
        try:
            tz = ZoneInfo(c.timezone or DEFAULT_TZ)
        except (KeyError, ValueError):
            tz = ZoneInfo(DEFAULT_TZ)
        return CommuneInfo(c.id, c.name, c.province, c.terrain, tz, villages)


def check_range(first: date, last: date, max_days: int = MAX_DAYS) -> None:
    """A range of whole local days, first..last inclusive."""
    if last < first:
        raise DiaryQueryError(f"the range ends ({last}) before it starts ({first})")
    days = (last - first).days + 1
    if days > max_days:
        raise DiaryQueryError(f"{days} days asked for; at most {max_days} at a time "
                              "(ask for the range in parts, e.g. a month or a year)")


def range_ms(info: CommuneInfo, first: date, last: date) -> tuple[int, int]:
    lo, _ = day_bounds_ms(first, info.tz)
    _, hi = day_bounds_ms(last, info.tz)
    return lo, hi


def commune_lines(engine: Engine, info: CommuneInfo, lo_ms: int, hi_ms: int,
                  now_ms: int) -> list[ProgrammeLine]:
    """The commune's programme items that start (or were planned to start) in [lo, hi)."""
    lines: dict[str, ProgrammeLine] = {}
    targets: dict[str, list[str]] = {}
    with Session(engine) as s:
        for p in s.scalars(select(Programme).where(
                Programme.commune_id == info.id, Programme.start_ms >= lo_ms,
                Programme.start_ms < hi_ms)):
            lines[p.occurrence] = ProgrammeLine(
                p.occurrence, p.kind, p.title, p.summary, p.language, p.priority, "plan",
                p.source, p.start_ms, p.end_ms, operator=p.operator, approver=p.approver)
            targets[p.occurrence] = [v for v in json.loads(p.villages) if v in info.villages]
        # Plain rows of the columns used, not ORM objects: a week of a commune is thousands
        # of records, and building entities was most of the page's time.
        records = s.execute(
            select(*_RECORD_COLUMNS, Node.village_id, Command.operator.label("cmd_operator"),
                   Command.issued_ms)
            .join(Node, Node.id == AsRunRecord.node_id)
            .outerjoin(Command, Command.id == AsRunRecord.command_id)
            .where(_in_range(info.id, lo_ms, hi_ms))
            .order_by(AsRunRecord.chain_seq)).all()
    corrected: dict[int, Any] = {}
    for r in records:
        if r.corrects_id is not None:
            corrected[r.corrects_id] = r  # the newest correction wins (chain order)
    per_village: dict[str, dict[str, VillageOutcome]] = defaultdict(dict)
    for r in records:
        village_id, operator, issued = r.village_id, r.cmd_operator, r.issued_ms
        if r.corrects_id is not None:
            continue
        fix = corrected.get(r.id)
        outcome = fix.outcome if fix else r.outcome
        key = _line_key(r, issued)
        line = lines.get(key)
        if line is None:
            start = r.planned_start_ms if r.planned_start_ms is not None else issued
            at = start if start is not None else r.start_ms or r.received_ms
            if not lo_ms <= at < hi_ms:
                continue  # a record of an item outside the range
            kind = r.kind or ("emergency" if r.trigger == "emergency" else "notice")
            line = lines[key] = ProgrammeLine(
                key, kind, r.title, "", r.language or "vi", r.priority or 0, r.trigger,
                r.media, start, r.planned_end_ms, operator=operator or "")
            targets[key] = []
        if village_id not in targets[key]:
            targets[key].append(village_id)
        if outcome in (AIRED, PARTIAL) and r.start_ms is not None:
            line.start_ms = r.start_ms if line.start_ms is None else min(line.start_ms,
                                                                         r.start_ms)
            if r.end_ms is not None:
                line.end_ms = r.end_ms if line.end_ms is None else max(line.end_ms, r.end_ms)
        name = info.villages.get(village_id, village_id)
        if fix is not None:
            line.notes.append(f"{name}: sửa thành “{OUTCOME_VI.get(fix.outcome, fix.outcome)}” "
                              f"bởi {fix.operator}: {fix.note}")
        elif r.reason and outcome != AIRED:
            line.notes.append(f"{name}: {r.reason}")
        old = per_village[key].get(village_id)
        if old is None or _RANK[outcome] > _RANK[old.outcome]:
            reason = fix.note if fix else r.reason
            per_village[key][village_id] = VillageOutcome(name, outcome, reason)
    for key, line in lines.items():
        due = (line.planned_end_ms or line.sort_ms) < now_ms
        for vid in targets[key]:
            got = per_village[key].get(vid)
            line.villages.append(got or VillageOutcome(info.villages.get(vid, vid),
                                                       NO_REPORT if due else PLANNED))
        line.notes = sorted(set(line.notes))
    return sorted(lines.values(), key=lambda x: (x.sort_ms, x.key))


def _in_range(commune_id: str, lo_ms: int, hi_ms: int) -> ColumnElement[bool]:
    """The commune's records of items in [lo, hi): started within LATE_MS of it, planned in it,
    or (never started) reported within it. Each branch names the commune and a range of
    start_ms, so SQLite reads just those ranges of the (commune_id, start_ms) index (a
    multi-index OR); a bare `planned_start_ms BETWEEN` branch, or the commune named once
    outside the OR, makes it read the commune's whole history instead (seconds at 50 million
    entries, `loaxa bench diary`). A started record planned in the range started within a day
    of its plan (plan items end by midnight, commands expire sooner), hence the day-wide
    window of the second branch."""
    here = AsRunRecord.commune_id == commune_id
    planned = AsRunRecord.planned_start_ms.between(lo_ms, hi_ms - 1)
    return or_(
        here & AsRunRecord.start_ms.between(lo_ms - LATE_MS, hi_ms + LATE_MS),
        here & AsRunRecord.start_ms.between(hi_ms + LATE_MS + 1, hi_ms + DAY_MS) & planned,
        here & AsRunRecord.start_ms.is_(None)
        & (planned | AsRunRecord.received_ms.between(lo_ms, hi_ms + LATE_MS)))


_RECORD_COLUMNS = (
    AsRunRecord.id, AsRunRecord.corrects_id, AsRunRecord.outcome, AsRunRecord.item_id,
    AsRunRecord.trigger, AsRunRecord.media, AsRunRecord.start_ms, AsRunRecord.end_ms,
    AsRunRecord.planned_start_ms, AsRunRecord.planned_end_ms, AsRunRecord.received_ms,
    AsRunRecord.kind, AsRunRecord.title, AsRunRecord.language, AsRunRecord.priority,
    AsRunRecord.reason, AsRunRecord.operator, AsRunRecord.note)


def _line_key(r: Any, issued: int | None) -> str:
    if r.item_id:
        return str(r.item_id).split("#")[0]  # a cut item's segments are one programme item
    # One broadcast sends one command per node; they share the media and the moment.
    return f"{r.trigger}:{r.media}:{issued if issued is not None else r.start_ms}"


def lines_for_days(engine: Engine, commune_id: str, first: date, last: date,
                   now_ms: int) -> tuple[CommuneInfo, list[ProgrammeLine]]:
    """Checked request of whole local days: unknown commune, reversed or over-long ranges are
    refused with a message saying so."""
    check_range(first, last)
    info = commune_info(engine, commune_id)
    lo, hi = range_ms(info, first, last)
    return info, commune_lines(engine, info, lo, hi, now_ms)


def local_day(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()

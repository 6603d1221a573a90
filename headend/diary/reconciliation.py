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

from firmware import protocol
from headend.core.models import (
    NODE_VILLAGE,
    AsRunRecord,
    Bulletin,
    Command,
    Commune,
    Node,
    Programme,
    Village,
)
from headend.diary import reasons
from headend.diary.reading import DAY_MS, DEFAULT_TZ, day_bounds_ms
from headend.planning.programme import LOCAL_SOURCE

MAX_DAYS = 366  # one request covers at most a year; longer ranges are asked for in parts
LATE_MS = 6 * 3600_000  # records of an item may arrive for a while after it ends
AIRED, PARTIAL, MISSED, FAILED = "aired", "partial", "missed", "failed"
NO_REPORT, PLANNED = "no_report", "planned"  # nothing heard from a village yet
_RANK = {AIRED: 4, PARTIAL: 3, FAILED: 2, MISSED: 1, NO_REPORT: 0, PLANNED: 0}
_ANSWER_RANK = {NO_REPORT: 2, FAILED: 1, MISSED: 0}  # a command's answer, no record yet

OUTCOME_VI = {AIRED: "Đã phát", PARTIAL: "Phát dở", FAILED: "Không phát được",
              MISSED: "Bỏ lỡ", NO_REPORT: "Chưa có báo cáo", PLANNED: "Theo lịch"}
KIND_VI = {"vov_relay": "Tiếp sóng VOV", "province_relay": "Tiếp sóng Đài tỉnh",
           "local_bulletin": "Bản tin địa phương", "notice": "Thông báo",
           "emergency": "Khẩn cấp", "test": "Thử loa"}
TRIGGER_VI = {"plan": "Lịch phát", "emergency": "Khẩn cấp", "command": "Lệnh phát",
              "manual": "Kỹ thuật viên", "live": "Trực tiếp"}
# Commands that air something, and the trigger their nodes' records carry.
PLAYING_OPS = {"play": "command", "emergency": "emergency", "test_tone": "manual"}
OP_KIND = {"play": "notice", "emergency": "emergency", "test_tone": "test"}
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

    def silent_text(self) -> str:
        """The villages that did not air it, those sharing an outcome and reason together:
        "Thôn Nà Lầu, Bản Pò (Bỏ lỡ: cụm loa mất kết nối khi gửi lệnh)". Villages whose item
        is not due yet are not listed."""
        groups: dict[tuple[str, str | None], list[str]] = {}
        for v in self.silent_villages:
            if v.outcome != PLANNED:
                groups.setdefault((v.outcome, v.reason), []).append(v.village)
        out = []
        for (outcome, reason), names in groups.items():
            why = OUTCOME_VI.get(outcome, outcome) + (f": {reason}" if reason else "")
            out.append(f"{', '.join(names)} ({why})")
        return "; ".join(out)

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


def outcome_vi(line: ProgrammeLine) -> str:
    """The line's outcome as the diary says it; an airing on a board that cannot sense its
    amplifier is not plainly "Đã phát"."""
    label = OUTCOME_VI.get(line.outcome, line.outcome)
    unverified = reasons.CODES_VI[reasons.NOT_VERIFIED]
    if line.outcome in (AIRED, PARTIAL) and any(
            unverified in (v.reason or "") for v in line.villages
            if v.outcome in (AIRED, PARTIAL)):
        label += " (chưa kiểm chứng ampli)"
    return label


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
    """The commune's programme items that start (or were planned to start) in [lo, hi).
    Every village an item was meant for is on its line: from the plan for planned items, and
    from the commands sent for the others (a node that never got its command has no record
    to say so)."""
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
                   Command.issued_ms, Command.op.label("cmd_op"),
                   Command.title.label("cmd_title"))
            .join(Node, Node.id == AsRunRecord.node_id)
            .outerjoin(Command, Command.id == AsRunRecord.command_id)
            .where(_in_range(info.id, lo_ms, hi_ms))
            .order_by(AsRunRecord.chain_seq)).all()
        commands = s.execute(
            select(Command.op, Command.title, Command.args, Command.issued_ms,
                   Command.expires_ms, Command.status, Command.reason, Command.operator,
                   Node.village_id)
            .join(Node, Node.id == Command.node_id)
            .join(Village, NODE_VILLAGE)
            .where(Village.commune_id == info.id, Command.op.in_(list(PLAYING_OPS)),
                   Command.issued_ms >= lo_ms, Command.issued_ms < hi_ms)).all()
        media_of = [_command_media(c.op, c.args) for c in commands]
        titles = _media_titles(s, info.id, media_of + [r.media for r in records
                                                       if not r.item_id])
    keys = [_command_key(c.op, c.issued_ms, c.title, m)
            for c, m in zip(commands, media_of, strict=True)]
    for c, media, key in zip(commands, media_of, keys, strict=True):  # lines, villages
        if key not in lines:
            lines[key] = ProgrammeLine(
                key, OP_KIND[c.op], c.title, "", "vi", 0, PLAYING_OPS[c.op],
                _what_aired(media, c.title, titles), c.issued_ms, None,
                operator=c.operator or "")
            targets[key] = []
        if c.village_id not in targets[key]:
            targets[key].append(c.village_id)
    corrected: dict[int, Any] = {}
    for r in records:
        if r.corrects_id is not None:
            corrected[r.corrects_id] = r  # the newest correction wins (chain order)
    per_village: dict[str, dict[str, VillageOutcome]] = defaultdict(dict)
    roles: dict[str, set[str]] = defaultdict(set)  # the sources that aired each line
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
                _what_aired(r.media, r.title, titles), start, r.planned_end_ms,
                operator=operator or "")
            targets[key] = []
        if village_id not in targets[key]:
            targets[key].append(village_id)
        if outcome in (AIRED, PARTIAL) and r.start_ms is not None:
            line.start_ms = r.start_ms if line.start_ms is None else min(line.start_ms,
                                                                         r.start_ms)
            if r.end_ms is not None:
                line.end_ms = r.end_ms if line.end_ms is None else max(line.end_ms, r.end_ms)
            if r.source:
                roles[key].add(r.source)
        name = info.villages.get(village_id, village_id)
        if fix is not None:
            line.notes.append(f"{name}: sửa thành “{OUTCOME_VI.get(fix.outcome, fix.outcome)}” "
                              f"bởi {fix.operator}: {fix.note}")
        old = per_village[key].get(village_id)
        if old is None or _RANK[outcome] > _RANK[old.outcome]:
            reason = fix.note if fix else reasons.reason_vi(r.reason)
            per_village[key][village_id] = VillageOutcome(name, outcome, reason)
    from_commands: set[tuple[str, str]] = set()
    for c, key in zip(commands, keys, strict=True):  # no record yet: the command's answer
        answer = _command_outcome(c, now_ms)
        old = per_village[key].get(c.village_id)
        # A record's word stands; between answers of a village's nodes, the one that may
        # still be heard (started, or not yet answered) above a refusal or an expiry.
        if old is None or ((key, c.village_id) in from_commands
                           and _ANSWER_RANK[answer[0]] > _ANSWER_RANK[old.outcome]):
            name = info.villages.get(c.village_id, c.village_id)
            per_village[key][c.village_id] = VillageOutcome(name, *answer)
            from_commands.add((key, c.village_id))
    for key, line in lines.items():
        due = (line.planned_end_ms or line.sort_ms) < now_ms
        for vid in targets[key]:
            got = per_village[key].get(vid)
            line.villages.append(got or VillageOutcome(info.villages.get(vid, vid),
                                                       NO_REPORT if due else PLANNED))
        line.notes = sorted(set(line.notes)) + _shared_notes(line)
        if roles[key] and line.kind.endswith("_relay"):  # which of its streams aired
            said = ", ".join(reasons.SOURCE_ROLE_VI.get(x, x) for x in sorted(
                roles[key], key=lambda x: list(reasons.SOURCE_ROLE_VI).index(x)
                if x in reasons.SOURCE_ROLE_VI else 99))
            line.source = f"{line.source} – {said}"
        elif line.source.startswith(LOCAL_SOURCE + ": "):
            line.source = f"{LOCAL_SOURCE}: “{line.title}”"
    return sorted(lines.values(), key=lambda x: (x.sort_ms, x.key))


def _shared_notes(line: ProgrammeLine) -> list[str]:
    """What the villages that aired it said (a partial airing's reason), once per reason:
    alone when every village of the line shares it, else after the villages' names."""
    groups: dict[str, list[str]] = {}
    for v in line.villages:
        if v.outcome in (AIRED, PARTIAL) and v.reason:
            groups.setdefault(v.reason, []).append(v.village)
    return [why if len(names) == len(line.villages) else f"{', '.join(names)}: {why}"
            for why, names in groups.items()]


def _command_key(op: str, issued_ms: int, title: str, media: str) -> str:
    """One broadcast sends one command per node; they share the op, moment, title and media
    (two broadcasts of one title in the same millisecond stay two lines)."""
    return f"cmd:{op}:{issued_ms}:{title}:{media}"


def _command_media(op: str, args_json: str) -> str:
    """What a command plays, as its node's record names it: the URL, or the test tone."""
    try:
        args = json.loads(args_json or "{}")
    except ValueError:
        args = {}
    if not isinstance(args, dict):
        args = {}
    if op == "test_tone":
        return f"tone:{args.get('hz', protocol.TONE_HZ_DEFAULT)}Hz"
    return str(args.get("url") or "")


def _command_outcome(c: Any, now_ms: int) -> tuple[str, str | None]:
    """A village's outcome from its node's command alone (no as-run record from it)."""
    if c.status == "rejected":
        return MISSED, reasons.reason_vi(c.reason)
    if c.status == "failed":
        return FAILED, reasons.reason_vi(c.reason)
    if c.status in ("started", "done"):
        return NO_REPORT, reasons.reason_vi(reasons.STARTED_NO_REPORT)
    if now_ms > c.expires_ms:  # never answered, and too late now
        return MISSED, reasons.reason_vi(c.reason or reasons.NO_ANSWER)
    return NO_REPORT, reasons.reason_vi(c.reason)


def _media_titles(s: Session, commune_id: str, urls: list[str]) -> dict[str, str]:
    """Media file name -> the title of the bulletin made from it (the commune's)."""
    names = {u.rsplit("/", 1)[-1] for u in urls if u}
    if not names:
        return {}
    out: dict[str, str] = {}
    for title, media in s.execute(select(Bulletin.title, Bulletin.media)
                                  .where(Bulletin.commune_id == commune_id)):
        try:
            files = json.loads(media or "{}")
        except ValueError:
            continue
        for name in files.values() if isinstance(files, dict) else ():
            if name in names:
                out[name] = title
    return out


def _what_aired(media: str, title: str, titles: dict[str, str]) -> str:
    """The source column for an airing nobody planned: the bulletin's title, the test tone,
    or the announcement's own title; never a URL."""
    tone = reasons.tone_vi(media)
    if tone:
        return tone
    bulletin = titles.get(media.rsplit("/", 1)[-1]) if media else None
    if bulletin:
        return f"Bản tin “{bulletin}”"
    return f"Thông báo “{title}”" if title else "Thông báo"


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
    AsRunRecord.reason, AsRunRecord.operator, AsRunRecord.note, AsRunRecord.source)


def _line_key(r: Any, issued: int | None) -> str:
    if r.item_id:
        return str(r.item_id).split("#")[0]  # a cut item's segments are one programme item
    if issued is not None and r.cmd_op in PLAYING_OPS:
        return _command_key(r.cmd_op, issued, r.cmd_title, r.media)
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

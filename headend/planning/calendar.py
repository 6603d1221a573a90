"""The week calendar's edits: approved bulletins put on a day and time, and schedule-file slots
moved or cancelled for one day. They live in the database and join the schedule file's slots
wherever the schedule is used (plans for nodes, the programme, criterion 8.3, the calendar page),
through `effective()`.

Edits are checked like the schedule file is: no item in quiet hours (emergencies aside), no two
items of the same class on one village at once, nothing that has started or starts within
LOCK_MIN minutes (the nodes may already be playing it).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from firmware import protocol
from headend.core.audit import Actor, entry
from headend.core.models import Bulletin, CalendarItem, SlotChange
from headend.planning.schedule import (
    CLASSES,
    DAY_MINUTES,
    EMERGENCY,
    KINDS,
    Schedule,
    Slot,
    hhmm,
    in_quiet,
)
from headend.planning.wire import SPAN_MS, crowded

LOCK_MIN = 10  # an item starting sooner than this can no longer be changed
_SIZING = Path("sizing.wav")  # a trial item's media: it only has to be there to be counted
CAL_PREFIX = "lich-"  # slot ids of calendar items: lich-<row id>
MOVED_PREFIX = "doi-"  # slot ids of moved occurrences: doi-<change id>
KIND_PRIORITY = {"local_bulletin": 0, "notice": 0, "emergency": EMERGENCY}


class CalendarError(ValueError):
    """An edit that cannot be made; the message says why, in Vietnamese."""


@dataclass(frozen=True)
class Occurrence:
    """One item on one day, as the calendar shows it."""

    ref: str  # "c<id>" for a calendar item, "s<slot id>@<day>" for a schedule-file slot
    day: date
    start: int
    end: int
    kind: str
    klass: str
    title: str
    villages: tuple[str, ...]
    origin: str  # "calendar" or "file"
    placeholder: bool

    @property
    def window(self) -> str:
        return f"{hhmm(self.start)}–{hhmm(self.end)}"


def _villages(raw: str) -> tuple[str, ...]:
    return tuple(json.loads(raw or "[]"))


def _media(raw: str) -> dict[str, str]:
    return dict(json.loads(raw or "{}"))


def effective(engine: Engine, schedule: Schedule, media_dir: Path) -> Schedule:
    """The schedule file's slots with the calendar's edits applied."""
    cid = schedule.commune.id
    with Session(engine) as s:
        items = s.execute(select(CalendarItem, Bulletin.media, Bulletin.duration_ms).outerjoin(
            Bulletin, Bulletin.id == CalendarItem.bulletin_id).where(
            CalendarItem.commune_id == cid, CalendarItem.removed.is_(False))).all()
        changes = list(s.scalars(select(SlotChange).where(SlotChange.commune_id == cid)))
    if not items and not changes:
        return schedule
    by_id = {slot.id: slot for slot in schedule.slots}
    skipped: dict[str, set[date]] = {}
    extra: list[Slot] = []
    for ch in changes:
        slot = by_id.get(ch.slot_id)
        if slot is None:
            continue  # the slot left the file; its changes go with it
        skipped.setdefault(slot.id, set()).add(date.fromisoformat(ch.day))
        if ch.action == "move" and ch.new_day and ch.start_min is not None \
                and ch.end_min is not None:
            extra.append(dataclasses.replace(
                slot, id=f"{MOVED_PREFIX}{ch.id}", date=date.fromisoformat(ch.new_day),
                start=ch.start_min, end=ch.end_min, except_dates=frozenset(),
                operator=ch.changed_by))
    for item, media, duration_ms in items:
        name = _media(media or "{}").get("esp32")
        extra.append(Slot(
            id=f"{CAL_PREFIX}{item.id}", title=item.title, kind=item.kind,
            priority=item.priority, language=item.language, target="calendar",
            villages=_villages(item.villages), start=item.start_min, end=item.end_min,
            date=date.fromisoformat(item.day), media=media_dir / name if name else None,
            audio_ms=duration_ms if name else None, summary=item.summary,
            operator=item.created_by, approver=item.approved_by))
    slots = [dataclasses.replace(s, except_dates=s.except_dates | frozenset(skipped[s.id]))
             if s.id in skipped else s for s in schedule.slots]
    return dataclasses.replace(schedule, slots=(*slots, *extra))


def occurrences(schedule: Schedule, first: date, last: date) -> list[Occurrence]:
    """Every item from `first` to `last` (an effective schedule), sorted by day and time."""
    out: list[Occurrence] = []
    day = first
    while day <= last:
        for s in schedule.slots:
            if not s.occurs_on(day, schedule.holidays):
                continue
            if s.id.startswith(CAL_PREFIX):
                ref, origin = f"c{s.id[len(CAL_PREFIX):]}", "calendar"
            else:
                ref, origin = f"s{s.id}@{day.isoformat()}", "file"
            out.append(Occurrence(ref, day, s.start, s.end, s.kind, s.klass, s.title,
                                  s.villages, origin, s.placeholder))
        day += timedelta(days=1)
    out.sort(key=lambda o: (o.day, o.start, o.title))
    return out


def _local_now(now_ms: int, tz: ZoneInfo) -> tuple[date, int]:
    t = datetime.fromtimestamp(now_ms / 1000, tz)
    return t.date(), t.hour * 60 + t.minute


def _check_time(schedule: Schedule, day: date, start: int, end: int, priority: int,
                villages: tuple[str, ...], now_ms: int, skip_ref: str | None,
                effective_schedule: Schedule) -> None:
    if end > DAY_MINUTES:
        raise CalendarError(f"Mục này kéo dài qua nửa đêm (kết thúc {hhmm(end % DAY_MINUTES)} "
                            "hôm sau); hãy chọn giờ bắt đầu sớm hơn.")
    today, minute = _local_now(now_ms, ZoneInfo(schedule.commune.timezone))
    if (day - today).days * DAY_MINUTES + start - minute < LOCK_MIN:
        raise CalendarError(f"Không thể đặt lịch vào lúc đã qua hoặc trong {LOCK_MIN} phút tới "
                            f"({day.strftime('%d/%m/%Y')} {hhmm(start)}).")
    if priority != EMERGENCY and in_quiet(start, end, schedule.quiet_start, schedule.quiet_end):
        raise CalendarError(f"{hhmm(start)}–{hhmm(end)} rơi vào giờ yên tĩnh "
                            f"({hhmm(schedule.quiet_start)}–{hhmm(schedule.quiet_end)}): "
                            "loa không được phát vào giờ này.")
    shared = set(villages)
    for o in occurrences(effective_schedule, day, day):
        if o.ref == skip_ref or not (o.start < end and start < o.end):
            continue
        if CLASSES.index(o.klass) == priority and shared & set(o.villages):
            raise CalendarError(f"Trùng giờ với “{o.title}” ({o.window}) ở cùng thôn; "
                                "hãy chọn giờ khác hoặc bớt thôn.")


def _target(schedule: Schedule, villages: list[str]) -> tuple[str, ...]:
    known = [v.id for v in schedule.commune.villages]
    chosen = villages or known
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise CalendarError(f"Không có thôn: {', '.join(unknown)}.")
    return tuple(v for v in known if v in chosen)


def _check_budget(schedule: Schedule, trial: Schedule, day: date,
                  villages: tuple[str, ...]) -> None:
    """Refuse an edit after which a node of these villages could no longer be sent its plan
    (protocol.MAX_PLAN_PAYLOAD): a crowded day once stopped publishing for the commune."""
    tz = ZoneInfo(schedule.commune.timezone)
    lo = int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)
    nodes = {n for v in schedule.commune.villages if v.id in villages for n in v.nodes}
    over = {n: k for n, k in crowded(trial, lo, lo + DAY_MINUTES * 60_000).items()
            if n in nodes}
    if over:
        node, items = max(over.items(), key=lambda kv: kv[1])
        raise CalendarError(
            f"Lịch quanh ngày {day.strftime('%d/%m/%Y')} đã quá dày: cụm loa {node} sẽ có "
            f"{items} mục trong {SPAN_MS // 3_600_000} giờ, vượt giới hạn "
            f"{protocol.MAX_PLAN_PAYLOAD // 1024} KB của một lịch phát gửi xuống cụm loa. "
            "Hãy bớt mục trong những ngày này, hoặc gộp các thông báo ngắn thành một bản tin.")


def add_item(engine: Engine, schedule: Schedule, media_dir: Path, actor: Actor,
             bulletin_id: int, day: date, start: int, villages: list[str],
             now_ms: int) -> int:
    """Put an approved bulletin on the calendar; returns the item's id."""
    cid = schedule.commune.id
    with Session(engine) as s:
        b = s.get(Bulletin, bulletin_id)
        if b is None or b.commune_id != cid:
            raise CalendarError("Không có bản tin này.")
        if b.status != "approved":
            raise CalendarError(f"Bản tin “{b.title}” chưa được duyệt: chỉ bản tin đã được "
                                "trưởng ban biên tập duyệt mới được đưa vào lịch.")
        title, summary, kind, language = b.title, b.summary, b.kind, b.language
        minutes = max(1, math.ceil(b.duration_ms / 60_000))
        approver = b.decided_by or ""
    if kind not in KINDS:
        raise CalendarError(f"Loại bản tin không đúng: {kind}.")
    priority = KIND_PRIORITY.get(kind, 0)
    chosen = _target(schedule, villages)
    end = start + minutes
    eff = effective(engine, schedule, media_dir)
    _check_time(schedule, day, start, end, priority, chosen, now_ms, None, eff)
    new = Slot(id=f"{CAL_PREFIX}new", title=title, kind=kind, priority=priority,
               language=language, target="calendar", villages=chosen, start=start, end=end,
               date=day, media=_SIZING, audio_ms=minutes * 60_000)
    _check_budget(schedule, dataclasses.replace(eff, slots=(*eff.slots, new)), day, chosen)
    with Session(engine) as s, s.begin():
        item = CalendarItem(commune_id=cid, bulletin_id=bulletin_id, kind=kind,
                            priority=priority, language=language, title=title, summary=summary,
                            villages=json.dumps(list(chosen)), day=day.isoformat(),
                            start_min=start, end_min=end, created_by=actor.username,
                            approved_by=approver, created_ms=now_ms, removed=False)
        s.add(item)
        s.flush()
        s.add(entry(actor, "calendar_add", now_ms, cid, f"lịch #{item.id}",
                    f"“{title}” {day.isoformat()} {hhmm(start)}–{hhmm(end)}, "
                    f"{len(chosen)} thôn"))
        return item.id


def _occurrence_slot(schedule: Schedule, ref: str) -> tuple[Slot, date]:
    slot_id, _, raw_day = ref[1:].partition("@")
    try:
        day = date.fromisoformat(raw_day)
        slot = schedule.slot(slot_id)
    except (ValueError, StopIteration):
        raise CalendarError("Không có mục này trong lịch.") from None
    if not slot.occurs_on(day, schedule.holidays):
        raise CalendarError("Mục này không có vào ngày đó.")
    return slot, day


def move(engine: Engine, schedule: Schedule, media_dir: Path, actor: Actor, ref: str,
         day: date, start: int, now_ms: int) -> None:
    """Move a calendar item, or one day's occurrence of a schedule-file slot."""
    cid = schedule.commune.id
    eff = effective(engine, schedule, media_dir)
    tz = ZoneInfo(schedule.commune.timezone)
    if ref.startswith("c"):
        with Session(engine) as s, s.begin():
            item = _item(s, cid, ref)
            _not_started(date.fromisoformat(item.day), item.start_min, now_ms, tz)
            end = start + item.end_min - item.start_min
            _check_time(schedule, day, start, end, item.priority, _villages(item.villages),
                        now_ms, ref, eff)
            sid = f"{CAL_PREFIX}{item.id}"
            _check_budget(schedule, dataclasses.replace(eff, slots=tuple(
                dataclasses.replace(x, date=day, start=start, end=end) if x.id == sid else x
                for x in eff.slots)), day, _villages(item.villages))
            old = f"{item.day} {hhmm(item.start_min)}"
            item.day, item.start_min, item.end_min = day.isoformat(), start, end
            s.add(entry(actor, "calendar_move", now_ms, cid, f"lịch #{item.id}",
                        f"“{item.title}” {old} → {day.isoformat()} {hhmm(start)}"))
        return
    slot, old_day = _occurrence_slot(eff, ref)
    _not_started(old_day, slot.start, now_ms, tz)
    end = start + slot.end - slot.start
    _check_time(schedule, day, start, end, slot.priority, slot.villages, now_ms, ref, eff)
    moved = dataclasses.replace(slot, id=f"{MOVED_PREFIX}new", date=day, start=start, end=end,
                                except_dates=frozenset())
    _check_budget(schedule, dataclasses.replace(eff, slots=(*(
        dataclasses.replace(x, except_dates=x.except_dates | {old_day}) if x.id == slot.id
        else x for x in eff.slots), moved)), day, slot.villages)
    with Session(engine) as s, s.begin():
        _change(s, cid, slot.id, old_day, actor, now_ms, "move", day, start, end)
        s.add(entry(actor, "calendar_move", now_ms, cid, f"{slot.id}@{old_day.isoformat()}",
                    f"“{slot.title}” {old_day.isoformat()} {slot.window} → "
                    f"{day.isoformat()} {hhmm(start)}–{hhmm(end)}"))


def remove(engine: Engine, schedule: Schedule, media_dir: Path, actor: Actor, ref: str,
           now_ms: int) -> None:
    """Take a calendar item off, or cancel one day's occurrence of a schedule-file slot."""
    cid = schedule.commune.id
    tz = ZoneInfo(schedule.commune.timezone)
    if ref.startswith("c"):
        with Session(engine) as s, s.begin():
            item = _item(s, cid, ref)
            _not_started(date.fromisoformat(item.day), item.start_min, now_ms, tz)
            item.removed = True
            s.add(entry(actor, "calendar_remove", now_ms, cid, f"lịch #{item.id}",
                        f"“{item.title}” {item.day} {hhmm(item.start_min)}"))
        return
    slot, day = _occurrence_slot(effective(engine, schedule, media_dir), ref)
    _not_started(day, slot.start, now_ms, tz)
    with Session(engine) as s, s.begin():
        _change(s, cid, slot.id, day, actor, now_ms, "skip", None, None, None)
        s.add(entry(actor, "calendar_remove", now_ms, cid, f"{slot.id}@{day.isoformat()}",
                    f"“{slot.title}” {day.isoformat()} {slot.window}"))


def _item(s: Session, cid: str, ref: str) -> CalendarItem:
    try:
        item = s.get(CalendarItem, int(ref[1:]))
    except ValueError:
        item = None
    if item is None or item.commune_id != cid or item.removed:
        raise CalendarError("Không có mục này trong lịch.")
    return item


def _not_started(day: date, start: int, now_ms: int, tz: ZoneInfo) -> None:
    today, minute = _local_now(now_ms, tz)
    if (day - today).days * DAY_MINUTES + start - minute < LOCK_MIN:
        raise CalendarError(f"Mục này đã phát hoặc sắp phát (trong {LOCK_MIN} phút): "
                            "không sửa được nữa.")


def _change(s: Session, cid: str, slot_id: str, day: date, actor: Actor, now_ms: int,
            action: str, new_day: date | None, start: int | None, end: int | None) -> None:
    """One change per occurrence: a second move replaces the first."""
    if slot_id.startswith(MOVED_PREFIX):
        # A moved occurrence moved again: change the original change.
        ch = s.get(SlotChange, int(slot_id[len(MOVED_PREFIX):]))
        if ch is None:
            raise CalendarError("Không có mục này trong lịch.")
    else:
        ch = s.scalar(select(SlotChange).where(
            SlotChange.commune_id == cid, SlotChange.slot_id == slot_id,
            SlotChange.day == day.isoformat()))
        if ch is None:
            ch = SlotChange(commune_id=cid, slot_id=slot_id, day=day.isoformat())
            s.add(ch)
    ch.action = action
    ch.new_day = new_day.isoformat() if new_day else None
    ch.start_min, ch.end_min = start, end
    ch.changed_by, ch.changed_ms = actor.username, now_ms

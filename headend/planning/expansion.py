"""Expansion: a schedule (commune wall-clock times, recurring) into each node's plan (UTC ms).

Rules (docs/schedules.md, "Conflicts"):
- Two items of the same class never overlap on a village: load_schedule refuses the file.
- A higher class pre-empts a lower one. The lower item is cut out where the higher one sounds
  and continues after it, time-anchored like radio: the continuation starts at the point the
  item would have reached (offset_ms = segment start - item start), it does not resume late.
- Relays are hard-start: nothing of a lower class delays them; they start on the minute.
- Placeholder items (recorded, no media yet) take part in all of this; their entries carry
  placeholder=True so the publisher skips them (the cut they make in lower items stays).
- An entry spans its slot; a recorded item's audio may end sooner (`audio_ms`, the media's own
  length), and the node stops there. Criterion 8.3 counts the audio, not the slot.

Every node of a village has the same plan, and villages that are targeted by the same slots have
the same plan too, so the work is done once per such group and per distinct day layout; a
year of one commune is a few hundred layouts reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from headend.planning.schedule import Schedule, Slot, Source

MAX_ENTRY_ID = 64
_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """One stretch of sound on one node. An item cut by a higher class gives several entries."""

    id: str  # "<slot>@<local date>", "#2", "#3" for the later segments; unique per node
    slot_id: str
    occurrence: str  # "<slot>@<local date>": the item these segments belong to
    kind: str
    priority: int  # 0 normal, 1 priority, 2 emergency
    language: str
    title: str
    summary: str
    start_ms: int
    end_ms: int
    offset_ms: int  # how far into the item this segment begins
    source: Source | None
    media: Path | None
    quiet_ok: bool  # may sound in quiet hours (emergency class or allow_quiet)
    placeholder: bool = False  # recorded item without media: not sent to nodes
    audio_ms: int | None = None  # the media's own length (None: no media, or unreadable)


Segment = tuple[int, int, int, int]  # slot index, segment number (1-based), start, end minutes


def layout(slots: Sequence[Slot], active: Sequence[int]) -> list[Segment]:
    """The segments that sound on one village on one day, given the slots that occur then.

    Each slot is cut where a slot of a higher class sounds; same-class slots never overlap
    (checked at load). Sorted by start; no two segments overlap.
    """
    out: list[Segment] = []
    for i in active:
        s = slots[i]
        higher = sorted((slots[j].start, slots[j].end) for j in active
                        if slots[j].priority > s.priority
                        and slots[j].start < s.end and s.start < slots[j].end)
        if not higher:
            out.append((i, 1, s.start, s.end))
            continue
        cur, n = s.start, 0
        for hs, he in higher:
            if hs > cur:
                n += 1
                out.append((i, n, cur, hs))
            cur = max(cur, he)
            if cur >= s.end:
                break
        if cur < s.end:
            out.append((i, n + 1, cur, s.end))
    out.sort(key=lambda seg: seg[2])
    return out


class _Prepared:
    """What does not depend on the day: village groups, per-weekday slot lists."""

    def __init__(self, schedule: Schedule) -> None:
        self.slots = schedule.slots
        self.holidays = schedule.holidays
        self.tz = ZoneInfo(schedule.commune.timezone)
        targeted: dict[str, list[int]] = {v.id: [] for v in schedule.commune.villages}
        for i, s in enumerate(self.slots):
            for vid in s.villages:
                targeted[vid].append(i)
        # Villages targeted by exactly the same slots share one plan.
        sigs: dict[tuple[int, ...], list[str]] = {}
        for village in schedule.commune.villages:
            sigs.setdefault(tuple(targeted[village.id]), []).append(village.id)
        self.groups: list[tuple[frozenset[int], list[str]]] = [
            (frozenset(sig), [n for vid in vids for n in schedule.village_nodes()[vid]])
            for sig, vids in sigs.items()
        ]
        self.always: list[tuple[int, ...]] = []
        self.conditional: list[tuple[int, ...]] = []
        for wd in range(7):
            plain: list[int] = []
            cond: list[int] = []
            for i, s in enumerate(self.slots):
                if s.date is not None or wd not in s.days:
                    continue
                simple = (s.first is None and s.until is None and not s.except_dates
                          and (s.on_holidays or not self.holidays))
                (plain if simple else cond).append(i)
            self.always.append(tuple(plain))
            self.conditional.append(tuple(cond))
        self.one_off: dict[date, list[int]] = {}
        for i, s in enumerate(self.slots):
            if s.date is not None:
                self.one_off.setdefault(s.date, []).append(i)
        self.layouts: dict[tuple[int, tuple[int, ...]], list[Segment]] = {}

    def active(self, day: date) -> tuple[int, ...]:
        wd = day.weekday()
        cond = self.conditional[wd]
        extra = self.one_off.get(day)
        if not cond and not extra:
            return self.always[wd]
        more = [i for i in cond if self.slots[i].occurs_on(day, self.holidays)]
        return tuple(sorted((*self.always[wd], *more, *(extra or ()))))

    def group_layout(self, g: int, active: tuple[int, ...]) -> list[Segment]:
        key = (g, active)
        got = self.layouts.get(key)
        if got is None:
            sig = self.groups[g][0]
            got = self.layouts[key] = layout(self.slots, [i for i in active if i in sig])
        return got

    def day_start(self, day: date) -> tuple[int, bool]:
        """UTC ms of local midnight, and whether the UTC offset is the same all day."""
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        late = datetime(day.year, day.month, day.day, 23, 59, tzinfo=self.tz)
        return int(midnight.timestamp()) * 1000, midnight.utcoffset() == late.utcoffset()

    def local_ms(self, day: date, minute: int) -> int:
        """Exact conversion for days with a clock change (not in Vietnam)."""
        d = day + timedelta(days=minute // 1440)
        m = minute % 1440
        return int(datetime(d.year, d.month, d.day, m // 60, m % 60, tzinfo=self.tz)
                   .timestamp()) * 1000


def local_day(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()


def expand(schedule: Schedule, start_ms: int, end_ms: int) -> dict[str, list[PlanEntry]]:
    """Every node's entries that intersect [start_ms, end_ms), sorted, never overlapping.

    Entry ids are stable: the same schedule expanded over any window gives the same id to the
    same segment. Every node of the commune is a key, with an empty list if nothing targets it.
    """
    p = _Prepared(schedule)
    per_group: list[list[PlanEntry]] = [[] for _ in p.groups]
    if end_ms > start_ms:
        first, last = local_day(start_ms, p.tz), local_day(end_ms - 1, p.tz)
        day = first
        one = timedelta(days=1)
        slots = p.slots
        while day <= last:
            active = p.active(day)
            if active:
                base, uniform = p.day_start(day)
                iso = day.isoformat()
                made: dict[Segment, PlanEntry] = {}
                edge = day in (first, last)
                for g, out in enumerate(per_group):
                    for seg in p.group_layout(g, active):
                        e = made.get(seg)
                        if e is None:
                            i, n, s_min, e_min = seg
                            slot = slots[i]
                            if uniform:
                                s_ms = base + s_min * _MINUTE_MS
                                e_ms = base + e_min * _MINUTE_MS
                                item_ms = base + slot.start * _MINUTE_MS
                            else:
                                s_ms, e_ms = p.local_ms(day, s_min), p.local_ms(day, e_min)
                                item_ms = p.local_ms(day, slot.start)
                            occ = f"{slot.id}@{iso}"
                            e = made[seg] = PlanEntry(
                                occ if n == 1 else f"{occ}#{n}", slot.id, occ, slot.kind,
                                slot.priority, slot.language, slot.title, slot.summary,
                                s_ms, e_ms, s_ms - item_ms, slot.source, slot.media,
                                slot.quiet_ok, slot.placeholder, slot.audio_ms)
                        if not edge or (e.end_ms > start_ms and e.start_ms < end_ms):
                            out.append(e)
            day += one
    group_of = {n: g for g, (_, nodes) in enumerate(p.groups) for n in nodes}
    # A copy per node: the lists are cheap to copy and callers may change them.
    return {n: list(per_group[group_of[n]]) for n in schedule.commune.node_ids}

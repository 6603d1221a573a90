"""The planned programme of a commune: one row per item (slot occurrence), with the villages it
is planned for. The diary reconciles what the nodes recorded against it (commune_diary.py).

Written each time plans are built. An item that has not started yet follows the schedule
(changed, or removed when its slot is gone); one that has started is history and stays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, bindparam, delete, insert, select, update

from headend.core.models import Programme
from headend.planning.expansion import PlanEntry
from headend.planning.schedule import Schedule

LOCAL_SOURCE = "Đài truyền thanh xã"
# What an item that has not started takes over from the schedule when it changes.
_FOLLOWS = ("kind", "priority", "language", "title", "summary", "source", "start_ms", "end_ms",
            "villages")


def programme_items(schedule: Schedule,
                    entries: Mapping[str, Sequence[PlanEntry]]) -> dict[str, dict[str, Any]]:
    """Occurrence -> programme row, from every node's plan entries (placeholders are not
    sent to nodes, so they are not programme items either)."""
    village_of = {n: v for v, nodes in schedule.village_nodes().items() for n in nodes}
    slots = {s.id: s for s in schedule.slots}
    items: dict[str, dict[str, Any]] = {}
    for node_id, node_entries in entries.items():
        for e in node_entries:
            if e.placeholder:
                continue
            row = items.get(e.occurrence)
            if row is None:
                source = e.source.name if e.source else (
                    f"{LOCAL_SOURCE}: {e.media.name}" if e.media else LOCAL_SOURCE)
                row = items[e.occurrence] = {
                    "commune_id": schedule.commune.id, "occurrence": e.occurrence,
                    "kind": e.kind, "priority": e.priority, "language": e.language,
                    "title": e.title, "summary": e.summary, "source": source[:300],
                    "start_ms": e.start_ms - e.offset_ms, "end_ms": e.end_ms,
                    "villages": set(), "operator": slots[e.slot_id].operator,
                    "approver": slots[e.slot_id].approver}
            row["start_ms"] = min(row["start_ms"], e.start_ms - e.offset_ms)
            row["end_ms"] = max(row["end_ms"], e.end_ms)
            if node_id in village_of:
                row["villages"].add(village_of[node_id])
    for row in items.values():
        row["villages"] = json.dumps(sorted(row["villages"]))
    return items


def record_programme(engine: Engine, schedule: Schedule,
                     entries: Mapping[str, Sequence[PlanEntry]], lo_ms: int, hi_ms: int,
                     now_ms: int) -> None:
    """Bring the programme rows of [lo, hi) in line with the plans just built."""
    items = programme_items(schedule, entries)
    commune = schedule.commune.id
    with engine.begin() as conn:
        old = {occ: (start, rid) for occ, start, rid in conn.execute(
            select(Programme.occurrence, Programme.start_ms, Programme.id).where(
                Programme.commune_id == commune, Programme.start_ms >= lo_ms,
                Programme.start_ms < hi_ms))}
        fresh = [row for occ, row in items.items() if occ not in old]
        changed = [{"rid": old[occ][1], **{f"new_{k}": row[k] for k in _FOLLOWS}}
                   for occ, row in items.items()
                   if occ in old and old[occ][0] > now_ms and row["start_ms"] > now_ms]
        gone = [rid for occ, (start, rid) in old.items() if occ not in items and start > now_ms]
        if fresh:
            conn.execute(insert(Programme), fresh)
        if changed:
            conn.execute(update(Programme).where(Programme.id == bindparam("rid")).values(
                {k: bindparam(f"new_{k}") for k in _FOLLOWS}), changed)
        if gone:
            conn.execute(delete(Programme).where(Programme.id.in_(gone)))

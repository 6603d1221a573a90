"""A node's plan on the wire: each item as the node reads it, and whether a node's items still
fit in one plan (protocol.MAX_PLAN_PAYLOAD) so that a crowded day is refused when it is made,
in the calendar, rather than found when publishing (where it once stopped every node's plan).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from firmware import protocol
from headend.media.access import LONGEST_QUERY
from headend.media.library import Media
from headend.planning.expansion import PlanEntry, expand
from headend.planning.schedule import Schedule

HOUR_MS = 3_600_000
BLOCK_MS = 12 * HOUR_MS  # plans are computed for blocks starting on this UTC grid
HORIZON_MS = 72 * HOUR_MS  # a plan covers its block start + 72 h, so always >= 60 h ahead
MIN_AHEAD_MS = 48 * HOUR_MS  # never publish a plan that covers less than this ahead
# The least a published plan holds: from its block's start (up to BLOCK_MS ago) to
# MIN_AHEAD_MS ahead. The items of any such stretch must fit in one plan.
SPAN_MS = BLOCK_MS + MIN_AHEAD_MS
# Sizing: a media entry as long as any the headend writes (a host name, a content-addressed
# file name, the longest node token query, the full hash, a size), and times with as many
# digits as real ones.
_SIZING_MEDIA = Media("https://" + "h" * 60 + "/media/" + "0" * 16 + ".wav" + LONGEST_QUERY,
                      "0" * 64, 10 ** 9)
_SIZING_MS = 10 ** 12 * 9  # 13 digits, like every epoch millisecond of this century


def wire_item(entry: PlanEntry, media: Media | None,
              sources: Mapping[str, tuple[str, str | None]]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": entry.id, "kind": entry.kind, "p": entry.priority, "s": entry.start_ms,
        "e": entry.end_ms, "off": entry.offset_ms, "title": entry.title[:120],
        "lang": entry.language, "q": 1 if entry.quiet_ok else 0,
    }
    if entry.source is not None:
        primary, backup = sources.get(entry.source.id,
                                      (entry.source.primary, entry.source.backup))
        item["src"] = [primary] + ([backup] if backup else [])
    elif media is not None:
        item["media"] = media.wire()
    return item


def plan_bytes(items: list[dict[str, Any]], node_id: str) -> int:
    """The size of a signed plan holding these items (with a fallback announcement)."""
    plan = protocol.make_plan(protocol.Signer(b"\0" * 32), node_id, _SIZING_MS, _SIZING_MS,
                              _SIZING_MS, _SIZING_MS, [0, 0, 0], items,
                              _SIZING_MEDIA.wire())
    return len(protocol.encode_plan(plan))


def crowded(schedule: Schedule, lo_ms: int, hi_ms: int) -> dict[str, int]:
    """The nodes whose items starting within SPAN_MS of some moment in [lo, hi) would not fit
    in one plan, each with the most items such a stretch holds. A plan's bytes are its empty
    self plus each item's canonical JSON and a comma between them (protocol.canonical), so a
    window's size is a running sum."""
    out: dict[str, int] = {}
    for node_id, entries in expand(schedule, lo_ms - SPAN_MS, hi_ms + SPAN_MS).items():
        items = [wire_item(e, None if e.source is not None else _SIZING_MEDIA, {})
                 for e in entries if e.source is not None or e.media is not None]
        base = plan_bytes([], node_id)
        sizes = [len(protocol.canonical(it)) + 1 for it in items]  # "," or the closing "]"
        j = total = 0
        for i, first in enumerate(items):
            if first["s"] >= hi_ms + MIN_AHEAD_MS:
                break
            while j < len(items) and items[j]["s"] < first["s"] + SPAN_MS:
                total += sizes[j]
                j += 1
            if base + total - 1 > protocol.MAX_PLAN_PAYLOAD:
                out[node_id] = max(out.get(node_id, 0), j - i)
            total -= sizes[i]
    return out

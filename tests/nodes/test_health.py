"""Node health alarms: raised once and cleared once from telemetry, as-run records and the
periodic check, with hysteresis where readings hover."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session
from support.loaxa_stack import small_commune

from headend.communes.registry import provision_commune
from headend.core.alarms import (
    AMP_FAULT,
    BROADCAST_MISSED,
    CLOCK_OFFSET,
    NODE_OFFLINE,
    VILLAGE_SILENT,
    WEAK_SIGNAL,
    list_alarms,
)
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import Node
from headend.nodes.health import HealthPolicy, check_nodes
from headend.nodes.ingest import store_reports

MIN = 60_000


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, small_commune(3))
    return engine


def tel(node: str, at: int, **fields: Any) -> tuple[str, str, dict[str, Any]]:
    msg = {"v": 1, "t": "telemetry", "node": node, "at": at, "_rx": at, "amp_fault": False,
           "signal_dbm": -80, "link": "4g"}
    msg.update(fields)
    return node, "telemetry", msg


def history(engine: Engine, kind: str) -> list[tuple[str, int, int | None]]:
    return [(a.subject, a.raised_ms, a.cleared_ms) for a in list_alarms(engine)
            if a.kind == kind]


def test_amplifier_fault_is_raised_once_and_cleared_once(engine: Engine) -> None:
    for t in (1, 2, 3):
        store_reports(engine, [tel("n0001", t, amp_fault=True, amp_ma=0)], t)
    for t in (4, 5):
        store_reports(engine, [tel("n0001", t)], t)
    assert history(engine, AMP_FAULT) == [("n0001", 1, 4)]


def test_weak_signal_has_hysteresis(engine: Engine) -> None:
    for t, dbm in enumerate((-90, -107, -103, -106, -102, -99, -104, -98), 1):
        store_reports(engine, [tel("n0002", t, signal_dbm=dbm)], t)
    # Raised at -107; -103/-106/-102 hover inside the band; cleared above -100 (at -99).
    assert history(engine, WEAK_SIGNAL) == [("n0002", 2, 6)]


def test_clock_offset_above_two_seconds(engine: Engine) -> None:
    store_reports(engine, [tel("n0003", 10_000, _rx=10_500)], 1)  # 0.5 s: fine
    store_reports(engine, [tel("n0003", 12_600, _rx=10_000)], 2)  # 2.6 s ahead
    store_reports(engine, [tel("n0003", 11_500, _rx=10_000)], 3)  # 1.5 s: still raised
    store_reports(engine, [tel("n0003", 10_200, _rx=10_000)], 4)  # 0.2 s: cleared
    assert history(engine, CLOCK_OFFSET) == [("n0003", 2, 4)]


def asrun(node: str, rid: int, outcome: str) -> tuple[str, str, dict[str, Any]]:
    aired = outcome == "aired"
    return node, "asrun", {"v": 1, "t": "asrun", "node": node, "rid": rid, "trigger": "plan",
                           "item": f"tin@{rid}", "kind": "local_bulletin", "title": "Tin",
                           "planned": rid * MIN, "start": rid * MIN if aired else None,
                           "end": rid * MIN + 1000 if aired else None, "outcome": outcome,
                           "reason": None if aired else "quiet_hours", "src": "cache"}


def test_a_missed_broadcast_raises_once_and_the_next_aired_item_clears(engine: Engine) -> None:
    store_reports(engine, [asrun("n0001", 1, "missed"), asrun("n0001", 2, "failed")], 10)
    store_reports(engine, [asrun("n0001", 2, "failed")], 11)  # resent: stored once
    assert history(engine, BROADCAST_MISSED) == [("n0001", 10, None)]
    # Records out of order: the aired item 3 arrives before the missed item 1 of another node.
    store_reports(engine, [asrun("n0001", 3, "aired")], 12)
    assert history(engine, BROADCAST_MISSED) == [("n0001", 10, 12)]


def test_offline_after_n_minutes_and_the_village_whose_speakers_all_failed(
        engine: Engine) -> None:
    policy = HealthPolicy(offline_after_ms=10 * MIN)
    with engine.begin() as conn:
        conn.execute(update(Node).values(online=True, last_seen_ms=0))
        conn.execute(update(Node).where(Node.id == "n0003").values(last_seen_ms=None))
    check_nodes(engine, 9 * MIN, policy)
    assert history(engine, NODE_OFFLINE) == []  # 9 minutes of silence: not yet
    with engine.begin() as conn:
        conn.execute(update(Node).where(Node.id == "n0002").values(last_seen_ms=10 * MIN))
    for now in (11 * MIN, 12 * MIN, 13 * MIN):
        check_nodes(engine, now, policy)
    # n0003 never connected (not installed yet): no alarm for it.
    assert history(engine, NODE_OFFLINE) == [("n0001", 11 * MIN, None)]
    # small_commune: one node per village, so village v1 has lost all its loudspeakers.
    assert history(engine, VILLAGE_SILENT) == [("v1", 11 * MIN, None)]
    with engine.begin() as conn:
        conn.execute(update(Node).where(Node.id == "n0001").values(last_seen_ms=14 * MIN))
    check_nodes(engine, 15 * MIN, policy)
    check_nodes(engine, 16 * MIN, policy)
    assert history(engine, NODE_OFFLINE) == [("n0001", 11 * MIN, 15 * MIN)]
    assert history(engine, VILLAGE_SILENT) == [("v1", 11 * MIN, 15 * MIN)]


def stored_telemetry(engine: Engine, node: str) -> dict[str, Any]:
    with Session(engine) as s:
        row = s.get(Node, node)
        assert row is not None and row.telemetry
        return dict(json.loads(row.telemetry))


def test_short_telemetry_updates_the_last_full_one(engine: Engine) -> None:
    """The firmware sends its full telemetry when something besides the moving readings has
    changed, and otherwise a short message of those readings ("part"): the headend keeps the
    full picture, and alarms still follow the readings in short messages."""
    store_reports(engine, [tel("n0001", 1000, fw="0.2.0", plan=7, heap_free=50_000)], 1000)
    store_reports(engine, [tel("n0001", 2000, part=True, heap_free=48_000, signal_dbm=-70)],
                  2000)
    got = stored_telemetry(engine, "n0001")
    assert (got["fw"], got["plan"], got["heap_free"], got["at"]) == ("0.2.0", 7, 48_000, 2000)
    assert "part" not in got
    # Full and short in one batch: the short one lands on the full one of the same batch.
    store_reports(engine, [tel("n0002", 3000, plan=9, temp_c=40),
                           tel("n0002", 3100, part=True, temp_c=41)], 3100)
    got = stored_telemetry(engine, "n0002")
    assert (got["plan"], got["temp_c"]) == (9, 41)
    # A weak signal in short messages raises the alarm as it does in full ones.
    for t in (4000, 5000, 6000):
        store_reports(engine, [tel("n0001", t, part=True, signal_dbm=-110)], t)
    assert [s for s, _, _ in history(engine, WEAK_SIGNAL)] == ["n0001"]

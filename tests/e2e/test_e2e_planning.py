"""Nodes that keep the schedule on their own: a simulated week, a headend down for a day, a
broker down across a relay, relay failover, emergencies. Real Mosquitto, real MicroPython nodes,
local stand-in radio stations, and a controlled clock shared by the headend and the nodes."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.loaxa_stack import Stack, wait_until
from support.plan_scenarios import (
    MONDAY,
    TZ,
    VOV_10_MIN,
    WEEK_SLOTS,
    add_stations,
    commune,
    days,
    fast_clock,
    idle_warp,
    local_ms,
    records_settled,
    schedule_text,
    wait_sim,
    write_wav,
)

from hal.sim import SimClock
from headend.core.alarms import RELAY_FAILED, SOURCE_UNREACHABLE, list_alarms
from headend.core.models import AsRunRecord, NodePlan
from headend.planning.criterion import Aired, judge
from hwsim.stations import Stations

pytestmark = pytest.mark.timeout(1800)
TOLERANCE_MS = 60_000  # simulated; the diary shows minutes


def by_item(records: list[AsRunRecord]) -> dict[tuple[str, str], list[AsRunRecord]]:
    out: dict[tuple[str, str], list[AsRunRecord]] = defaultdict(list)
    for r in records:
        if r.item_id:
            out[(r.node_id, r.item_id)].append(r)
    return out


def assert_on_time(rec: AsRunRecord, minutes: int) -> None:
    assert rec.outcome == "aired", (rec.item_id, rec.outcome, rec.reason)
    assert rec.start_ms is not None and rec.end_ms is not None and rec.planned_start_ms
    late = rec.start_ms - rec.planned_start_ms
    assert -5_000 <= late <= TOLERANCE_MS, (rec.node_id, rec.item_id, late)
    assert abs(rec.end_ms - rec.start_ms - minutes * 60_000) <= TOLERANCE_MS, rec.item_id


SourceUrls = dict[str, tuple[str, str | None]]


def planning_stack(tmp_path: Path, stations: Stations, villages: int, clock: SimClock,
                   slots: str = WEEK_SLOTS) -> tuple[Stack, Path, SourceUrls]:
    spec = commune(villages)
    urls = add_stations(stations)
    schedule = tmp_path / "xa-thu.toml"
    schedule.write_text(schedule_text(spec, slots))
    # A heap of 16 MB is plenty for ten nodes and keeps each garbage collection short.
    stack = Stack(tmp_path, commune=spec, clock=clock, media_hosts=[stations.host],
                  per_process=villages, fleet_options={"heapsize": "16M"})
    return stack, schedule, urls


def test_a_simulated_week_on_ten_nodes_airs_every_relay_and_bulletin_on_time(
        tmp_path: Path) -> None:
    # 500x while anything airs: every real millisecond the simulator loses (a garbage
    # collection, ten nodes writing their flash at once) shows 500 times longer, and a relay
    # counts as aired only with less than 15 s missing: 30 ms real here. The nights and idle
    # hours between run at 15000x (idle_warp: from 12 minutes before an item, for its relay
    # probe, to 5 after it, for its records), after two hours for the plans to reach the
    # nodes: the week takes two and a half minutes, not 20.
    rate = 500
    week = days(MONDAY, 7)
    with Stations() as stations:
        bulletin = write_wav(tmp_path / "ban-tin.wav", 600, 7)
        warp = idle_warp(tmp_path, 10, WEEK_SLOTS, local_ms(MONDAY, "02:00"),
                         local_ms(week[-1], "17:50"), 15000, margin_ms=12 * 60_000,
                         after_ms=5 * 60_000)
        clock = fast_clock(datetime(2026, 11, 23, 0, 0, tzinfo=TZ), rate, lead_s=8, warp=warp)
        stack, schedule, urls = planning_stack(tmp_path, stations, 10, clock)
        stack.start()
        try:
            stack.start_planning(schedule, urls)
            wait_sim(clock, local_ms(week[-1], "17:50"))
            records = records_settled(stack, want=10 * (7 + 7 + 3))
            with Session(stack.engine) as s:
                plans = s.scalars(select(NodePlan)).all()
        finally:
            stack.stop()
    assert {p.node_id for p in plans} == set(stack.node_ids)
    assert all(p.status == "accepted" for p in plans), [(p.node_id, p.status) for p in plans]
    items = by_item(records)
    for node in stack.node_ids:
        for day in week:
            for slot, minutes in (("vov-sang", 30), ("tinh-chieu", 30)):
                recs = items[(node, f"{slot}@{day.isoformat()}")]
                assert len(recs) == 1, (node, slot, day, recs)
                assert_on_time(recs[0], minutes)
                assert recs[0].source == "primary"
                assert recs[0].planned_start_ms == local_ms(day, "06:00" if slot == "vov-sang"
                                                            else "17:00")
            bulletins = items[(node, f"ban-tin@{day.isoformat()}")]
            assert len(bulletins) == (1 if day.weekday() in (0, 2, 4) else 0)
            for rec in bulletins:
                assert_on_time(rec, 10)
    # What the speakers received: the VOV stream in the morning, the bulletin's own audio.
    for node in ("n01", "n10"):
        recs = {r.label: r for r in stack.fleet.recordings(node)}
        for day in week:
            relay = recs[f"vov-sang@{day.isoformat()}"]
            assert stations.which(relay.pcm()) == "vov1-primary"
            assert len(relay.pcm()) >= 30 * 60 * 100 - 6_000  # 30 min at 100 B/s, within 1 min
        for day in (week[0], week[2], week[4]):
            pcm = recs[f"ban-tin@{day.isoformat()}"].pcm()
            # One unbroken stretch of the bulletin, at most a minute short: joined a few
            # seconds late it starts where it would be by then, and ends with the slot.
            assert len(pcm) >= len(bulletin) - 6_000 and pcm in bulletin
    # Criterion 8.3 judged on what aired, as the assessor would read the diary.
    aired = [Aired(r.item_id.split("#")[0], r.kind or "", r.language or "vi", r.start_ms or 0,
                   r.end_ms or 0) for r in records if r.item_id and r.outcome == "aired"]
    (report,) = judge(aired, TZ, MONDAY, 1)
    assert len(report.vov_days) == 7 and len(report.province_days) == 7
    assert len(report.local_news) == 3 and report.ok


def test_nodes_air_their_cached_plan_while_the_headend_is_down_for_a_day(
        tmp_path: Path) -> None:
    rate = 1000
    with Stations() as stations:
        write_wav(tmp_path / "ban-tin.wav", 600, 7)
        # The idle hours after the headend stops run at 15000x (idle_warp).
        warp = idle_warp(tmp_path, 10, WEEK_SLOTS, local_ms(MONDAY, "03:10"),
                         local_ms(MONDAY + timedelta(days=1), "09:00"), 15000,
                         margin_ms=12 * 60_000, after_ms=5 * 60_000)
        clock = fast_clock(datetime(2026, 11, 23, 0, 0, tzinfo=TZ), rate, lead_s=8, warp=warp)
        stack, schedule, urls = planning_stack(tmp_path, stations, 10, clock)
        stack.start()
        try:
            stack.start_planning(schedule, urls)
            wait_until(lambda: len(stack.fleet.status()) == 10 and all(
                st.get("plan") for st in stack.fleet.status().values()), 30, "plans on nodes")
            wait_sim(clock, local_ms(MONDAY, "03:00"))
            stack.stop_headend()
            assert not stack.asrun()
            wait_sim(clock, local_ms(MONDAY + timedelta(days=1), "09:00"))
            stored_while_down = len(stack.asrun())
            stack.restart_headend()
            records = records_settled(stack, want=10 * 4)
        finally:
            stack.stop()
    assert stored_while_down == 0
    items = by_item(records)
    tuesday = (MONDAY + timedelta(days=1)).isoformat()
    expected = [(f"vov-sang@{MONDAY.isoformat()}", 30), (f"tinh-chieu@{MONDAY.isoformat()}", 30),
                (f"ban-tin@{MONDAY.isoformat()}", 10), (f"vov-sang@{tuesday}", 30)]
    for node in stack.node_ids:
        for item, minutes in expected:
            recs = items[(node, item)]
            assert len(recs) == 1, (node, item, len(recs))  # exactly once
            assert_on_time(recs[0], minutes)
    assert len({(r.node_id, r.rid) for r in records}) == len(records)


def test_a_relay_airs_while_the_broker_is_down_across_its_slot(tmp_path: Path) -> None:
    rate = 200
    clock = fast_clock(datetime(2026, 11, 23, 5, 40, tzinfo=TZ), rate, lead_s=6)
    with Stations() as stations:
        write_wav(tmp_path / "ban-tin.wav", 600, 7)
        stack, schedule, urls = planning_stack(tmp_path, stations, 3, clock)
        stack.start()
        try:
            stack.start_planning(schedule, urls)
            wait_until(lambda: all(st.get("plan") for st in stack.fleet.status().values()),
                       30, "plans on nodes")
            wait_sim(clock, local_ms(MONDAY, "05:55"))
            stack.broker.stop()
            wait_sim(clock, local_ms(MONDAY, "06:35"))
            assert not any(st["connected"] for st in stack.fleet.status().values())
            stack.broker.start()
            records = records_settled(stack, want=3)
        finally:
            stack.stop()
    items = by_item(records)
    for node in stack.node_ids:
        (rec,) = items[(node, f"vov-sang@{MONDAY.isoformat()}")]
        assert_on_time(rec, 30)
        (played,) = [r for r in stack.fleet.recordings(node)
                     if r.label == f"vov-sang@{MONDAY.isoformat()}"]
        assert stations.which(played.pcm()) == "vov1-primary"


FAILOVER_SLOTS = VOV_10_MIN + """
[[slots]]
id = "tinh-sang"
title = "Tiếp sóng Đài tỉnh"
kind = "province_relay"
source = "tinh"
start = "06:15"
end = "06:25"
"""


def test_relay_fails_over_to_backup_then_to_the_fallback_with_an_alarm(tmp_path: Path) -> None:
    rate = 60
    clock = fast_clock(datetime(2026, 11, 23, 5, 58, tzinfo=TZ), rate, lead_s=6)
    fallback = tmp_path / "fallback.wav"
    fallback_pcm = write_wav(fallback, 20, 42)
    with Stations() as stations:
        stack, schedule, urls = planning_stack(tmp_path, stations, 2, clock, FAILOVER_SLOTS)
        stations.set_mode("vov1-primary", "down")  # HTTP 503
        stations.set_mode("tinh-primary", "refuse")  # connection closed at once
        stations.set_mode("tinh-backup", "down")
        stack.start()
        try:
            stack.start_planning(schedule, urls, fallback=fallback.read_bytes(), watch=True)
            wait_sim(clock, local_ms(MONDAY, "06:27"))
            records = records_settled(stack, want=4)
            alarms = list_alarms(stack.engine, open_only=True)
        finally:
            stack.stop()
    items = by_item(records)
    for node in stack.node_ids:
        (vov,) = items[(node, f"vov-sang@{MONDAY.isoformat()}")]
        assert_on_time(vov, 10)
        assert vov.source == "backup"
        played = {r.label: r for r in stack.fleet.recordings(node)}
        assert stations.which(played[f"vov-sang@{MONDAY.isoformat()}"].pcm()) == "vov1-backup"
        tinh = items[(node, f"tinh-sang@{MONDAY.isoformat()}")]
        assert tinh and all(r.outcome == "failed" and r.source == "fallback" for r in tinh)
        fallback_plays = [r for r in stack.fleet.recordings(node)
                          if r.pcm() and fallback_pcm.startswith(r.pcm()[:2000])]
        assert fallback_plays, "the fallback announcement was not played"
        assert all(local_ms(MONDAY, "06:15") - 5_000 <= r.start_ms <= local_ms(MONDAY, "06:25")
                   for r in fallback_plays)
    raised = {(a.kind, a.subject) for a in alarms}
    assert {(RELAY_FAILED, n) for n in stack.node_ids} <= raised
    assert (SOURCE_UNREACHABLE, "tinh:primary") in raised
    assert (SOURCE_UNREACHABLE, "tinh:backup") in raised
    assert (SOURCE_UNREACHABLE, "vov1:primary") in raised
    assert (SOURCE_UNREACHABLE, "vov1:backup") not in raised
    # Raised once: one open alarm per subject.
    assert len(alarms) == len(raised)

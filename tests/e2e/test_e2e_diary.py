"""The diary end to end: a node offline for two simulated days uploads every record exactly
once and the commune diary reconciles each item; a headend killed (SIGKILL) in the middle of an
upload loses and doubles nothing. Real Mosquitto, real MicroPython nodes, a shared fast clock."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support.loaxa_stack import Stack, wait_until
from support.plan_scenarios import (
    MONDAY,
    TZ,
    WEEK_SLOTS,
    add_stations,
    commune,
    fast_clock,
    idle_warp,
    local_ms,
    records_settled,
    schedule_text,
    wait_sim,
    write_wav,
)

from headend.diary import chain
from headend.diary.reconciliation import AIRED, FAILED, PLANNED, lines_for_days
from hwsim.stations import Stations

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[2]
TOLERANCE_MS = 60_000


def test_a_node_offline_for_two_days_uploads_every_record_once_and_the_diary_reconciles(
        tmp_path: Path) -> None:
    rate = 1000
    tuesday, wednesday = MONDAY + timedelta(days=1), MONDAY + timedelta(days=2)
    spec = commune(3)
    with Stations() as stations:
        write_wav(tmp_path / "ban-tin.wav", 600, 7)
        # The idle hours after the node goes offline run at 15000x (idle_warp).
        warp = idle_warp(tmp_path, 3, WEEK_SLOTS, local_ms(MONDAY, "03:10"),
                         local_ms(wednesday, "09:00"), 15000, margin_ms=12 * 60_000,
                         after_ms=5 * 60_000)
        clock = fast_clock(datetime(2026, 11, 23, 0, 0, tzinfo=TZ), rate, lead_s=8, warp=warp)
        fallback = tmp_path / "fallback.wav"
        write_wav(fallback, 20, 42)
        urls = add_stations(stations)
        schedule = tmp_path / "xa-thu.toml"
        schedule.write_text(schedule_text(spec, WEEK_SLOTS))
        stack = Stack(tmp_path, commune=spec, clock=clock, media_hosts=[stations.host],
                      per_process=3, fleet_options={"heapsize": "16M"})
        stack.start()
        offline = stack.node_ids[0]
        try:
            stack.start_planning(schedule, urls, fallback=fallback.read_bytes())
            wait_until(lambda: len(stack.fleet.status()) == 3 and all(
                st.get("plan") for st in stack.fleet.status().values()), 30, "plans on nodes")
            wait_sim(clock, local_ms(MONDAY, "03:00"))
            stack.fleet.set_link(offline, False)
            # Tuesday's provincial relay: both streams down, every village airs the fallback.
            wait_sim(clock, local_ms(tuesday, "16:50"))
            stations.set_mode("tinh-primary", "down")
            stations.set_mode("tinh-backup", "down")
            wait_sim(clock, local_ms(tuesday, "17:35"))
            stations.set_mode("tinh-primary", "live")
            stations.set_mode("tinh-backup", "live")
            wait_sim(clock, local_ms(wednesday, "09:00"))
            stack.run(stack.headend.flush())
            while_away = [r for r in stack.asrun() if r.node_id == offline]
            back = clock.time_ms()
            stack.fleet.set_link(offline, True)
            records = records_settled(stack, want=3 * 6)
            lines = lines_for_days(stack.engine, spec.id, MONDAY, wednesday, clock.time_ms())[1]
            problems = chain.verify(stack.engine, [spec.id])
        finally:
            stack.stop()
    assert while_away == []
    mine = [r for r in records if r.node_id == offline]
    assert len(mine) == 6 and all(r.received_ms >= back for r in mine)  # held, then sent
    assert len({(r.node_id, r.rid) for r in records}) == len(records) == 18  # exactly once
    assert problems == []
    villages = [v.name for v in spec.villages]
    by_key = {line.key: line for line in lines}
    aired = [f"vov-sang@{MONDAY}", f"tinh-chieu@{MONDAY}", f"ban-tin@{MONDAY}",
             f"vov-sang@{tuesday}", f"vov-sang@{wednesday}"]
    for key in aired:
        line = by_key[key]
        assert line.outcome == AIRED and line.aired_villages == villages, key
        assert line.start_ms is not None and line.planned_start_ms is not None
        assert 0 <= line.start_ms - line.planned_start_ms <= TOLERANCE_MS, key
    relay = by_key[f"tinh-chieu@{tuesday}"]
    assert relay.outcome == FAILED and relay.aired_villages == []
    assert [v.outcome for v in relay.villages] == [FAILED] * 3
    # Wednesday evening has not come yet: planned, not missing.
    assert by_key[f"tinh-chieu@{wednesday}"].outcome == PLANNED
    assert by_key[f"ban-tin@{wednesday}"].outcome == PLANNED


NOTICES = 30


def notice_slots() -> str:
    return "".join(
        f'[[slots]]\nid = "tb-{i:02d}"\ntitle = "Thông báo số {i}"\nkind = "notice"\n'
        f'date = "{MONDAY}"\n'
        f'start = "08:{i * 2:02d}"\nend = "08:{i * 2 + 1:02d}"\nmedia = "tb.wav"\n\n'
        for i in range(NOTICES))


def test_a_headend_killed_in_the_middle_of_an_upload_loses_and_doubles_nothing(
        tmp_path: Path) -> None:
    rate = 200
    clock = fast_clock(datetime(2026, 11, 23, 7, 45, tzinfo=TZ), rate, lead_s=8)
    spec = commune(5)
    write_wav(tmp_path / "tb.wav", 30, 3)
    schedule = tmp_path / "xa-thu.toml"
    schedule.write_text(schedule_text(spec, notice_slots()))
    stack = Stack(tmp_path, commune=spec, clock=clock, per_process=5,
                  fleet_options={"heapsize": "16M"})
    stack.start()
    nodes = stack.node_ids
    cfg = json.dumps({"db": stack.home.db_url, "port": stack.broker.port,
                      "password": stack.password, **clock.config()})
    log = (tmp_path / "headend.log").open("w")

    def spawn() -> subprocess.Popen[bytes]:
        script = REPO / "tests" / "support" / "headend_proc.py"
        return subprocess.Popen([sys.executable, str(script), cfg], stdout=log, stderr=log)

    def stored() -> int:
        return len(stack.asrun())

    proc: subprocess.Popen[bytes] | None = None
    lock: sqlite3.Connection | None = None
    try:
        stack.start_planning(schedule, {})
        wait_until(lambda: all(st.get("plan") for st in stack.fleet.status().values()), 30,
                   "plans on nodes")
        # Every node airs the 30 notices (08:00-08:59) with its link cut: 150 records wait
        # on the nodes.
        for node in nodes:
            stack.fleet.set_link(node, False)
        wait_sim(clock, local_ms(MONDAY, "09:05"))
        stack.stop_headend()
        proc = spawn()
        # Two nodes come back and upload; their records are stored.
        for node in nodes[:2]:
            stack.fleet.set_link(node, True)
        wait_until(lambda: stored() == 2 * NOTICES, 60, "the first two nodes' records")
        # The database is held by someone else: the next upload is received, not committed.
        lock = sqlite3.connect(str(stack.home.db_path), timeout=10)
        lock.execute("BEGIN EXCLUSIVE")
        for node in nodes[2:]:
            stack.fleet.set_link(node, True)
        wait_until(lambda: "could not store" in (tmp_path / "headend.log").read_text(), 60,
                   "the headend holding an upload it cannot commit")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        lock.rollback()
        lock.close()
        lock = None
        assert stored() == 2 * NOTICES
        proc = spawn()
        # The nodes resend what was never acknowledged (every 30 s of real time).
        wait_until(lambda: stored() >= 5 * NOTICES, 120, "every record after the restart")
        time.sleep(3)
        records = stack.asrun()
        problems = chain.verify(stack.engine, [spec.id])
        pending = {n: st.get("pending") for n, st in stack.fleet.status().items()}
    finally:
        if lock is not None:
            lock.close()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        log.close()
        stack.stop()
    assert len(records) == 5 * NOTICES
    assert len({(r.node_id, r.rid) for r in records}) == 5 * NOTICES  # none doubled
    for node in nodes:
        items = sorted(r.item_id or "" for r in records if r.node_id == node)
        assert items == sorted(f"tb-{i:02d}@{MONDAY}" for i in range(NOTICES)), node
        assert all(r.outcome == AIRED for r in records if r.node_id == node)
    assert problems == []
    assert not any(pending.values()), pending

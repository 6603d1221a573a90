"""Aired means heard: a node whose amplifier draws no current during a relay records the relay
failed (amplifier fault), though its audio ran; the diary names that village under "did not
air" with the reason, and the monthly report's villages with working loudspeakers (criterion
8.3) count it out. The other villages aired it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from support.loaxa_stack import Stack
from support.plan_scenarios import (
    MONDAY,
    TZ,
    add_stations,
    commune,
    fast_clock,
    local_ms,
    records_settled,
    schedule_text,
    wait_sim,
)

from firmware import protocol
from headend.core.alarms import AMP_FAULT, list_alarms
from headend.diary.monthly import monthly_report, render_text
from headend.diary.reasons import reason_vi
from headend.diary.reconciliation import AIRED, FAILED, lines_for_days
from hwsim.stations import Stations

pytestmark = pytest.mark.timeout(300)
VOV_2_MIN = """[[slots]]
id = "vov-sang"
title = "Tiếp sóng Thời sự VOV1"
kind = "vov_relay"
source = "vov1"
start = "06:00"
end = "06:02"
"""


def test_a_silent_amplifier_fails_the_relay_for_its_village(tmp_path: Path) -> None:
    rate = 20
    clock = fast_clock(datetime(2026, 11, 23, 5, 58, tzinfo=TZ), rate, lead_s=5)
    spec = commune(3)
    with Stations() as stations:
        urls = add_stations(stations)
        schedule = tmp_path / "xa-thu.toml"
        schedule.write_text(schedule_text(spec, VOV_2_MIN))
        stack = Stack(tmp_path, commune=spec, clock=clock, media_hosts=[stations.host],
                      per_process=3)
        stack.start()
        try:
            stack.start_planning(schedule, urls)
            stack.fleet.set_fault("n02", amp_fault=True)  # the amplifier's fuse has blown
            wait_sim(clock, local_ms(MONDAY, "06:03"))
            records = records_settled(stack, want=3)
            now = clock.time_ms()
            line = next(x for x in lines_for_days(stack.engine, spec.id, MONDAY, MONDAY,
                                                  now)[1] if x.kind == "vov_relay")
            report = monthly_report(stack.engine, spec.id, 2026, 11, now)
            alarms = list_alarms(stack.engine, open_only=True)
        finally:
            stack.stop()
    n02 = next(r for r in records if r.node_id == "n02")
    assert (n02.outcome, n02.reason) == ("failed", protocol.R_AMP_FAULT)
    # Its audio did run: only the amplifier's current says the speakers were silent.
    assert stack.fleet.recordings("n02")[0].label.startswith("vov-sang@")
    assert [(v.village, v.outcome, v.reason) for v in line.villages] == [
        ("Thôn 1", AIRED, None), ("Thôn 2", FAILED, reason_vi(protocol.R_AMP_FAULT)),
        ("Thôn 3", AIRED, None)]
    assert line.silent_text() == "Thôn 2 (Không phát được: ampli không đẩy ra loa (lỗi ampli))"
    working = {v.name: v.working for v in report.villages}
    assert working == {"Thôn 1": True, "Thôn 2": False, "Thôn 3": True}
    assert report.working_villages == 2
    assert "2/3 thôn" in render_text(report)
    assert [a.subject for a in alarms if a.kind == AMP_FAULT] == ["n02"]

"""A bulletin from the officer's web page to the loudspeakers: typed, spoken, approved, put on
the calendar for two of three villages, and aired there (and only there) at its time, with the
diary naming who made and who approved it. Real Mosquitto, real MicroPython nodes, the real
audio pipeline and plan publisher, a shared fast clock."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.loaxa_stack import Stack, wait_until
from support.plan_scenarios import (
    MONDAY,
    TZ,
    commune,
    fast_clock,
    local_ms,
    schedule_text,
    wait_sim,
)
from support.web_site import PASSWORD, csrf_of, login

from headend.core import auth
from headend.core.models import AsRunRecord, Bulletin
from headend.diary.reconciliation import lines_for_days
from headend.media import bulletins
from headend.media.store import wav_duration_ms
from headend.web.app import make_app

pytestmark = pytest.mark.timeout(600)
SLOTS = """[[slots]]
id = "vov-sang"
title = "Tiếp sóng VOV1 buổi sáng"
kind = "vov_relay"
source = "vov1"
start = "06:00"
end = "06:30"
days = "daily"
"""


def test_a_bulletin_made_on_the_web_page_airs_where_and_when_the_calendar_says(
        tmp_path: Path) -> None:
    rate = 20  # 16 kHz PCM from the media server: slow enough for the simulated nodes
    clock = fast_clock(datetime(2026, 11, 23, 8, 4, tzinfo=TZ), rate, lead_s=8)
    spec = commune(3)
    schedule = tmp_path / "xa-thu.toml"
    schedule.write_text(schedule_text(spec, SLOTS))
    stack = Stack(tmp_path, commune=spec, clock=clock, per_process=3,
                  fleet_options={"heapsize": "16M"})
    for username, role in (("canbo", "officer"), ("truongban", "approver")):
        auth.add_user(stack.engine, username, PASSWORD, role, [spec.id], clock.time_ms())
    stack.start()
    try:
        publisher = stack.start_planning(schedule, {"vov1": ("http://127.0.0.1:9/x", None)})
        app = make_app(stack.engine, stack.home.media_dir, clock.time_ms,
                       schedule_paths={spec.id: schedule},
                       on_schedule_change=lambda: stack.loop.call_soon_threadsafe(
                           publisher.wake))
        officer = TestClient(app, follow_redirects=False)
        approver = TestClient(app, follow_redirects=False)
        login(officer, "canbo")
        login(approver, "truongban")
        r = officer.post(f"/c/{spec.id}/bulletins", data={
            "title": "Thông báo tiêm phòng", "summary": "Lịch tiêm phòng gia súc",
            "source": "tts", "language": "vi", "csrf": csrf_of(officer),
            "text": "Kính thưa bà con, sáng thứ Ba có tiêm phòng cho gia súc tại nhà văn hóa."})
        assert r.status_code == 303, r.text
        bid = int(re.findall(r"/bulletins/(\d+)", r.headers["location"])[0])
        r = approver.post(f"/c/{spec.id}/bulletins/{bid}/approve",
                          data={"csrf": csrf_of(approver)})
        assert r.status_code == 303
        r = officer.post(f"/c/{spec.id}/calendar/add", data={
            "bulletin": str(bid), "day": MONDAY.isoformat(), "start": "08:16",
            "villages": ["thon-1", "thon-2"], "csrf": csrf_of(officer)})
        assert r.status_code == 303, r.text
        planned = local_ms(MONDAY, "08:16")
        item = f"lich-1@{MONDAY.isoformat()}"
        wait_sim(clock, planned + 60_000)

        def aired() -> list[AsRunRecord]:
            stack.run(stack.headend.flush())
            return [r for r in stack.asrun() if r.item_id == item]

        records = wait_until(lambda: len(aired()) >= 2 and aired(), 60, "two as-run records")
        wait_sim(clock, clock.time_ms() + 60_000)  # time for a wrong third to show up
        records = aired()
        lines = lines_for_days(stack.engine, spec.id, MONDAY, MONDAY, clock.time_ms())[1]
        recordings = {n: [x for x in stack.fleet.recordings(n) if x.label == item]
                      for n in stack.node_ids}
    finally:
        stack.stop()
    with Session(stack.engine) as s:
        b = s.scalars(select(Bulletin).where(Bulletin.id == bid)).one()
    wav = stack.home.media_dir / bulletins.media_names(b)["esp32"]
    seconds = wav_duration_ms(wav) / 1000
    assert sorted(r.node_id for r in records) == ["n01", "n02"]  # not Thôn 3
    for rec in records:
        assert rec.outcome == "aired" and rec.start_ms is not None and rec.end_ms is not None
        assert rec.planned_start_ms == planned
        assert 0 <= rec.start_ms - planned <= 10_000, rec.start_ms - planned
        assert abs((rec.end_ms - rec.start_ms) / 1000 - seconds) <= 3
    # What the speakers received is the prepared bulletin itself.
    body = wav.read_bytes()[44:]
    for node in ("n01", "n02"):
        (played,) = recordings[node]
        assert played.rate == 16000 and played.pcm() and played.pcm() in body
        assert len(played.pcm()) >= len(body) - 2 * 32000
    assert recordings["n03"] == []
    (line,) = [x for x in lines if x.title == "Thông báo tiêm phòng"]
    assert sorted(line.aired_villages) == ["Thôn 1", "Thôn 2"]
    assert line.operator == "canbo" and line.approver == "truongban"
    assert line.kind == "local_bulletin"

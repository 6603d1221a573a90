"""Criterion 8.3 counts only real news, the same in every view. Real Mosquitto and real
MicroPython nodes air a morning of bulletins on a controlled clock: two long enough, one
19-second recording placed twice in one-minute slots; the week also has slots kept for
bulletins not recorded yet. The calendar badge, the overview, the API, `loaxa schedule check`
and the monthly report then agree: 2 news items, neither the placeholders nor the short one."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support.cli import run_main
from support.loaxa_stack import Stack
from support.plan_scenarios import (
    MONDAY,
    TZ,
    commune,
    fast_clock,
    local_ms,
    records_settled,
    schedule_text,
    wait_sim,
    write_wav,
)
from support.web_site import PASSWORD, login

from headend.core import auth
from headend.diary.monthly import monthly_report, render_text
from headend.web.app import make_app

pytestmark = pytest.mark.timeout(900)
C = "xa-thu"
SUNDAY_EVENING = local_ms(date(2026, 11, 29), "20:00")  # the week is over, the badge still on it
NEXT_MONDAY = local_ms(date(2026, 11, 30), "08:00")  # the week has ended: the report judges it

SLOTS = """[[slots]]
id = "tin-1"
title = "Bản tin xã sáng thứ Hai"
kind = "local_bulletin"
date = "2026-11-23"
start = "08:00"
end = "08:02"
media = "tin-1.wav"

[[slots]]
id = "tin-ngan"
title = "Thông tin ngắn"
kind = "local_bulletin"
date = "2026-11-23"
start = "08:04"
end = "08:05"
media = "ngan.wav"

[[slots]]
id = "tin-ngan-lai"
title = "Thông tin ngắn (phát lại)"
kind = "local_bulletin"
date = "2026-11-23"
start = "08:07"
end = "08:08"
media = "ngan.wav"

[[slots]]
id = "tin-2"
title = "Bản tin nông nghiệp"
kind = "local_bulletin"
date = "2026-11-23"
start = "08:10"
end = "08:12"
media = "tin-2.wav"

[[slots]]
id = "cho-ban-ghi"
title = "Bản tin xã (chưa thu)"
kind = "local_bulletin"
days = ["wed", "fri"]
start = "17:30"
end = "17:45"
"""
COUNTED = ["tin-1@2026-11-23", "tin-2@2026-11-23"]
SHORT = ["tin-ngan-lai@2026-11-23", "tin-ngan@2026-11-23"]  # sorted as the verdict sorts
WAITING = ["cho-ban-ghi@2026-11-25", "cho-ban-ghi@2026-11-27"]


def test_badge_schedule_check_and_monthly_report_count_neither_placeholders_nor_short(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path
    write_wav(directory / "tin-1.wav", 90, 1)
    write_wav(directory / "ngan.wav", 19, 2)
    write_wav(directory / "tin-2.wav", 100, 3)
    schedule = directory / "xa-thu.toml"
    schedule.write_text(schedule_text(commune(3), SLOTS))
    clock = fast_clock(datetime(2026, 11, 23, 7, 56, tzinfo=TZ), 30, lead_s=8)
    stack = Stack(directory, commune=commune(3), clock=clock)
    stack.start()
    try:
        stack.start_planning(schedule, {})
        wait_sim(clock, local_ms(MONDAY, "08:14"))
        records = records_settled(stack, want=3 * 4)
        # What the nodes report: the short recording sounded 19 s in its one-minute slot.
        for r in records:
            assert r.outcome == "aired", (r.node_id, r.item_id, r.outcome, r.reason)
            assert r.start_ms is not None and r.end_ms is not None
            sounded = r.end_ms - r.start_ms
            if r.item_id in SHORT:
                assert 0 < sounded < 60_000, (r.node_id, r.item_id, sounded)
            else:
                assert sounded >= 60_000, (r.node_id, r.item_id, sounded)

        # `loaxa schedule check`: the plan.
        code, out, err = run_main(capsys, "schedule", "check", str(schedule), "--from",
                                  MONDAY.isoformat(), "--weeks", "1")
        assert code == 1, out + err
        (news_row,) = [ln for ln in out.splitlines() if ln.startswith("Tin xã tự sản xuất")]
        assert news_row.split()[-15:-8] == ["2", "0", "0", "0", "0", "0", "0"]  # T2..CN
        assert news_row.endswith("   2 tin, cần ít nhất 3 (items counted)")
        assert ("Không tính (not counted): 2 bản tin thiếu bản ghi (no recording yet): "
                + ", ".join(WAITING)) in out
        assert ("Không tính (not counted): 2 bản tin ngắn dưới 60 giây (shorter than 60 s): "
                + ", ".join(SHORT)) in out

        # The monthly report: the diary.
        report = monthly_report(stack.engine, C, 2026, 11, NEXT_MONDAY)
        (w48,) = [w for w in report.weeks if w.verdict.week == "2026-W48"]
        assert w48.complete and not w48.news_ok
        assert [occ for _, occ in w48.verdict.local_news] == COUNTED
        assert [occ for _, occ in w48.verdict.short_news] == SHORT
        assert w48.verdict.placeholders == ()  # never sent, never in the diary
        text = render_text(report)
        assert "2 tin, cần ít nhất 3" in text
        assert "Tuần 48/2026: 2 bản tin ngắn dưới 60 giây, không tính (T2 23/11)." in text

        # The calendar badge, the overview and the API: the plan and the diary.
        auth.add_user(stack.engine, "canbo", PASSWORD, "officer", [C], NEXT_MONDAY)
        app = make_app(stack.engine, stack.home.media_dir, lambda: SUNDAY_EVENING,
                       schedule_paths={C: schedule})
        with TestClient(app, raise_server_exceptions=False) as client:
            login(client, "canbo")
            calendar = client.get(f"/c/{C}/calendar").text
            overview = client.get(f"/c/{C}", params={"day": "2026-11-29"}).text
            api = client.get(f"/api/v1/communes/{C}/criterion").json()
    finally:
        stack.stop()

    badge = calendar.split('data-week="Tuần này"', 1)[1].split("</div>", 1)[0]
    assert '<b class="news">2 tin, cần ít nhất 3</b>' in badge
    assert '<span class="off placeholders" data-n="2">' in badge
    assert '<span class="off short" data-n="2">' in badge
    assert "đã phát thực tế: 2 tin" in badge and "<b>Chưa đạt</b>" in badge

    table = overview.split('<table id="criterion">', 1)[1].split("</table>", 1)[0]
    for row in ("aired", "planned"):
        cells = re.findall(r"<td[^>]*>(.*?)</td>",
                           re.findall(rf'<tr data-row="{row}">.*?</tr>', table, re.S)[0], re.S)
        assert cells[3] == "2 tin, cần ít nhất 3", (row, cells)
    warnings = {row: " ".join(text.split()) for row, text in re.findall(
        r'<p class="warn not-counted" data-row="(\w+)">(.*?)</p>', overview, re.S)}
    assert warnings == {
        "aired": "⚠ Đã phát (theo nhật ký): 2 bản tin ngắn dưới 60 giây, không tính.",
        "planned": "⚠ Theo lịch phát: 2 bản tin thiếu bản ghi, không tính. 2 bản tin ngắn "
                   "dưới 60 giây, không tính."}

    for basis in ("aired", "planned"):
        got = api[basis]
        assert got["week"] == "2026-W48" and got["local_news_items"] == COUNTED, basis
        assert got["local_news_text"] == "2 tin, cần ít nhất 3" and got["ok"] is False
        assert got["short_news"] == SHORT, basis
    assert api["planned"]["placeholders"] == WAITING and api["aired"]["placeholders"] == []

"""The commune diary page, its downloads, the node health page and /metrics, over HTTP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from support.commune_diary import DAY, rec
from support.schedule_files import ms
from support.web_site import PASSWORD, login

from headend.core.auth import add_user
from headend.core.models import Node
from headend.nodes.ingest import store_reports
from headend.planning.schedule import Schedule
from headend.web.app import make_app


@pytest.fixture
def client(setup: tuple[Engine, Schedule], tmp_path: Path) -> TestClient:
    engine, _ = setup
    six = ms(DAY, 6 * 60)
    store_reports(engine, [
        rec("n0-a", 1, f"vov@{DAY}", "vov_relay", six),
        rec("n2-a", 1, f"vov@{DAY}", "vov_relay", six, "missed", reason="mất điện"),
        ("n1-a", "telemetry", {"v": 1, "t": "telemetry", "node": "n1-a", "at": six + 3000,
                               "_rx": six, "signal_dbm": -109, "link": "4g", "amp": False,
                               "amp_fault": True, "amp_ma": 0, "temp_c": 41,
                               "heap_free": 61000}),
    ], six + 20 * 60_000)
    with engine.begin() as conn:
        conn.execute(update(Node).where(Node.id == "n0-b").values(online=False))
    add_user(engine, "admin", PASSWORD, "admin", [], ms(DAY))
    client = TestClient(make_app(engine, tmp_path, clock=lambda: ms(DAY, 12 * 60)))
    login(client, "admin")
    return client


def test_the_diary_page_shows_each_item_with_its_villages(client: TestClient) -> None:
    page = client.get("/diary/thu", params={"first": str(DAY)})
    assert page.status_code == 200
    html = page.text
    assert "Sổ nhật ký truyền thanh – Xã Thử" in html
    row = re.search(r'<tr data-kind="vov_relay" data-outcome="partial">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = row.group(1)
    assert "06:00:00–06:30:00" in cells and "Tiếp sóng VOV" in cells and "Phát dở" in cells
    assert "Thôn 0" in cells and "Thôn 1 (Chưa có báo cáo)" in cells
    assert "Bản 2 (Bỏ lỡ: mất điện)" in cells and "Bản 2: mất điện" not in cells  # said once
    assert f"/diary/thu/export?fmt=pdf&first={DAY}" in html


@pytest.mark.parametrize(("params", "status", "text"), [
    ({"first": "2026-13-01"}, 400, "Ngày không hợp lệ"),
    ({"first": "2026-11-23", "last": "2026-11-01"}, 400, "Khoảng ngày không hợp lệ"),
    ({"first": "2016-01-01", "last": "2025-12-31"}, 400, "tối đa 31 ngày"),
])
def test_bad_ranges_get_a_vietnamese_error(client: TestClient, params: dict[str, str],
                                           status: int, text: str) -> None:
    page = client.get("/diary/thu", params=params)
    assert page.status_code == status and text in page.text


def test_an_unknown_commune_is_not_found(client: TestClient) -> None:
    page = client.get("/diary/nowhere")
    assert page.status_code == 404 and "không có xã này" in page.text


def test_downloads_are_the_diary_in_each_format(client: TestClient) -> None:
    pdf = client.get("/diary/thu/export", params={"fmt": "pdf", "first": str(DAY)})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert "so-nhat-ky-thu-2026-11-23-2026-11-23.pdf" in pdf.headers["content-disposition"]
    csv = client.get("/diary/thu/export", params={"fmt": "csv", "first": str(DAY)})
    assert csv.status_code == 200 and "Bản 2" in csv.content.decode("utf-8-sig")
    bad = client.get("/diary/thu/export", params={"fmt": "doc"})
    assert bad.status_code == 400 and "Định dạng không hỗ trợ" in bad.text
    report = client.get("/diary/thu/report", params={"month": "2026-11"})
    assert report.status_code == 200 and report.content.startswith(b"%PDF")
    assert "bao-cao-thu-2026-11.pdf" in report.headers["content-disposition"]
    bad = client.get("/diary/thu/report", params={"month": "2026-13"})
    assert bad.status_code == 400 and "Tháng không hợp lệ" in bad.text
    assert client.get("/diary/nowhere/report").status_code == 404


def test_the_health_page_groups_nodes_and_lists_open_alarms(client: TestClient) -> None:
    html = client.get("/health").text
    assert "Đang hoạt động: <b>" in html
    row = re.search(r'<tr data-node="n1-a">(.*?)</tr>', html, re.S)
    assert row is not None
    assert "-109 dBm 4g" in row.group(1) and "41 °C" in row.group(1)
    assert "Lỗi" in row.group(1) and "+3000 ms" in row.group(1)
    for label in ("Lỗi bộ khuếch đại (ampli)", "Sóng 4G yếu", "Đồng hồ cụm loa lệch"):
        assert label in html
    alarms = client.get("/api/v1/alarms").json()
    assert {(a["kind"], a["subject"]) for a in alarms} >= {
        ("amp_fault", "n1-a"), ("weak_signal", "n1-a"), ("clock_offset", "n1-a"),
        ("broadcast_missed", "n2-a")}


def test_metrics_for_prometheus(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert 'loaxa_nodes{commune="thu",state="online"} 1.0' in text  # n1-a's telemetry
    assert 'loaxa_nodes{commune="thu",state="offline"} 3.0' in text
    assert 'loaxa_alarms_open{kind="amp_fault"} 1.0' in text
    assert 'loaxa_diary_entries{commune="thu"} 2.0' in text
    assert 'loaxa_node_signal_dbm{commune="thu",node="n1-a"} -109.0' in text
    assert 'loaxa_node_clock_offset_ms{commune="thu",node="n1-a"} 3000.0' in text


def test_the_front_page_counts_villages_with_working_loudspeakers(client: TestClient) -> None:
    html = client.get("/c/thu").text
    found = re.search(r'<p id="villages"[^>]*>(.*?)</p>', html, re.S)
    assert found is not None
    # Thôn 0 aired its relay; Thôn 1 has not reported, Bản 2 missed: 1 of 3, under 2/3.
    assert "<b>1/3</b>" in found.group(1) and "Chưa đạt" in found.group(1)
    assert "Chưa phát đủ: Thôn 1, Bản 2" in found.group(1)

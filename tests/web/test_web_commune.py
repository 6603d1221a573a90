"""What the commune's pages say about its loudspeakers and who logged in, as the officer, the
technician and the province's admin read them: the overview shows a village working only while
one of its clusters is online with a sound amplifier, with the open alarms at the top; alarm
texts are Vietnamese (English when chosen); log-ins and failed log-ins are in the audit log of
the user's commune(s), and the province's admin reads every entry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.web_site import OTHER, PASSWORD, WebSite, csrf_of, login, make_site, post_login

from headend.core import i18n
from headend.core.auth import add_user
from headend.nodes.health import check_nodes
from headend.nodes.ingest import store_reports

C = "tan-lang"
NODES = ["tl-napan-1", "tl-banchu-1", "tl-khonpat-1", "tl-pacluong-1", "tl-nalang-1"]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebSite]:
    s = make_site(tmp_path)
    yield s
    s.close()


def telemetry(node: str, at: int, **fields: Any) -> tuple[str, str, dict[str, Any]]:
    msg = {"v": 1, "t": "telemetry", "node": node, "at": at, "_rx": at, "board": "esp32",
           "telemetry_s": 60, "amp": False, "amp_fault": False, "amp_ma": 0,
           "signal_dbm": -80, "link": "4g", "temp_c": 40}
    msg.update(fields)
    return node, "telemetry", msg


def every_node_reports(site: WebSite, **napan: Any) -> None:
    now = site.clock()
    store_reports(site.engine, [telemetry(n, now, **(napan if n == "tl-napan-1" else {}))
                                for n in NODES], now)
    check_nodes(site.engine, now)


def section(html: str, table: str) -> str:
    found = re.search(rf'<table id="{table}">(.*?)</table>', html, re.S)
    assert found, f"no table {table}"
    return found.group(1)


def text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)).strip()


def node_state(html: str, node: str) -> str:
    row = re.search(rf'<tr data-node="{node}"[^>]*>(.*?)</tr>', section(html, "nodes"), re.S)
    assert row, node
    return text(re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)[1])


# --- The overview: health as it is -------------------------------------------------------

def test_a_village_whose_only_amplifier_is_faulted_is_not_working(site: WebSite) -> None:
    """Before: "Hoạt động" beside a faulted amplifier, with "Cả thôn không còn loa hoạt
    động" open and shown nowhere on the overview."""
    every_node_reports(site, amp=True, amp_fault=True, amp_ma=0)
    officer = site.client("canbo")
    html = officer.get(f"/c/{C}").text

    assert node_state(html, "tl-napan-1") == "Lỗi ampli"
    assert node_state(html, "tl-banchu-1") == "Hoạt động"
    summary = text(html.split('<p class="summary', 1)[1].split("</p>", 1)[0])
    assert "Cụm loa đang hoạt động: 4/5" in summary and "1 cụm lỗi ampli" in summary
    villages = re.search(r'<p id="village-health"[^>]*>(.*?)</p>', html, re.S)
    assert villages
    assert text(villages.group(1)) == ("Thôn có loa đang hoạt động: 4/5 · Không còn loa hoạt "
                                       "động: Thôn Nà Pàn")

    # The open alarms stand at the top: before the summary, the nodes and the diary.
    assert html.index('<table id="alarms">') < html.index('<p class="summary') \
        < html.index('<table id="nodes">')
    alarms = [text(r) for r in re.findall(r"<tr data-kind=.*?</tr>", section(html, "alarms"),
                                          re.S)]
    assert len(alarms) == 2, alarms
    assert any("Lỗi bộ khuếch đại (ampli)" in a and "Thôn Nà Pàn (tl-napan-1)" in a
               and "Ampli đang bật nhưng chỉ tiêu thụ 0 mA" in a for a in alarms), alarms
    assert any("Cả thôn không còn loa hoạt động" in a and "Cụm loa duy nhất của thôn mất "
               "kết nối hoặc lỗi ampli: tl-napan-1" in a for a in alarms), alarms
    assert "amp_fault" not in text(html) and "mA while on" not in html

    # The amplifier draws current again: the village works, the alarms are gone.
    site.clock.ms += 60_000
    every_node_reports(site, amp=True, amp_fault=False, amp_ma=900)
    html = officer.get(f"/c/{C}").text
    assert node_state(html, "tl-napan-1") == "Hoạt động"
    assert '<table id="alarms">' not in html
    assert "Thôn có loa đang hoạt động: <b>5/5</b>" in html


def test_a_node_silent_for_two_periods_is_offline_on_the_overview(site: WebSite) -> None:
    every_node_reports(site)
    # Nothing more from anyone for two of their periods (60 s each) and a second.
    site.clock.ms += 2 * 60_000 + 1000
    check_nodes(site.engine, site.clock())
    html = site.client("canbo").get(f"/c/{C}").text
    assert {node_state(html, n) for n in NODES} == {"Mất kết nối"}
    assert "Cụm loa đang hoạt động: <b>0/5</b>" in html
    assert "Không nhận được tin nào từ cụm loa trong 2 phút" in section(html, "alarms")


def test_the_overview_and_health_page_in_english(site: WebSite) -> None:
    every_node_reports(site, amp=True, amp_fault=True, amp_ma=0, temp_c=72)
    officer = site.client("canbo")
    officer.get("/lang/en", params={"next": "/"})
    assert officer.cookies.get(i18n.COOKIE) == "en"
    html = officer.get(f"/c/{C}").text
    assert node_state(html, "tl-napan-1") == "Amplifier fault"
    alarms = text(section(html, "alarms"))
    for said in ("Amplifier fault", "The amplifier is on but draws only 0 mA",
                 "Cluster overheating", "Temperature 72 °C, above the 70 °C limit of the "
                 "esp32 board", "No working loudspeaker left in the village"):
        assert said in alarms, said
    assert "Ampli đang" not in alarms and "Nhiệt độ" not in alarms

    tech = site.client("kt-tanlang")
    html = tech.get("/health").text
    row = re.search(r'<tr data-node="tl-napan-1">(.*?)</tr>', html, re.S)
    assert row
    cells = [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]
    assert cells[2] == "Lỗi ampli"  # this client reads Vietnamese
    assert set(cells[-1].split(", ")) == {"Lỗi bộ khuếch đại (ampli)",
                                          "Cụm loa quá nóng"}  # not amp_fault, temperature
    assert "Ampli đang bật nhưng chỉ tiêu thụ 0 mA" in html
    assert "Nhiệt độ 72 °C, vượt ngưỡng 70 °C của bo mạch esp32" in html
    tech.get("/lang/en", params={"next": "/health"})
    html = tech.get("/health").text
    assert "The amplifier is on but draws only 0 mA" in html
    assert "Cluster overheating" in html and ">Amplifier fault" in html
    assert "Ampli đang bật" not in html and "amp_fault<" not in html


def test_the_village_tiles_say_which_cluster_has_an_amplifier_fault(site: WebSite) -> None:
    every_node_reports(site, amp=True, amp_fault=True, amp_ma=0)
    html = site.client("canbo").get(f"/c/{C}/nodes").text
    tile = re.search(r'<li data-node="tl-napan-1">(.*?)</li>', html, re.S)
    assert tile and "lỗi ampli" in tile.group(1) and "hoạt động" not in tile.group(1)


# --- Log-ins in the audit log --------------------------------------------------------------

def audit_rows(client: TestClient, path: str) -> list[list[str]]:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return [[text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr><td class=\"t\">.*?</tr>", section(r.text, "audit"),
                                  re.S)]


def logins(rows: list[list[str]], who: str) -> list[str]:
    return [r[r.index(who) + 2] for r in rows if who in r]


def test_logins_are_in_the_audit_log_of_the_users_communes(site: WebSite) -> None:
    """Before: every log-in and failed log-in was stored without a commune, so no page
    showed them, though docs/officer.md said the audit log does."""
    add_user(site.engine, "kt-hai-xa", PASSWORD, "technician", [C, OTHER], site.clock())
    anyone = site.client(None)
    r = post_login(anyone, "canbo", "sai-mat-khau-roi")
    assert r.status_code == 401
    r = post_login(anyone, "khong-co-ai", "sai-mat-khau")
    assert r.status_code == 401
    officer = site.client("canbo")  # logs in
    site.client("canbo-khac")
    two = TestClient(site.app, follow_redirects=False)
    login(two, "kt-hai-xa")
    admin = site.client("admin")

    # The officer reads their own log-in and the failed try on their name.
    tan_lang = audit_rows(officer, f"/c/{C}/audit")
    assert logins(tan_lang, "canbo") == ["Đăng nhập", "Đăng nhập sai"]  # newest first
    assert logins(tan_lang, "kt-hai-xa") == ["Đăng nhập"]
    # Nobody else's: not the other commune's officer, not the admin, not unknown names.
    assert logins(tan_lang, "canbo-khac") == [] and logins(tan_lang, "admin") == []
    assert logins(tan_lang, "khong-co-ai") == []
    other = audit_rows(site.client("canbo-khac"), f"/c/{OTHER}/audit")
    assert logins(other, "canbo-khac") == ["Đăng nhập"]
    assert logins(other, "kt-hai-xa") == ["Đăng nhập"]
    assert logins(other, "canbo") == []

    # The province's admin reads everything, on one page, with the commune of each entry.
    province = audit_rows(admin, "/audit")
    communes = {(r[2], r[4]): r[1] for r in province}  # (who, action) -> commune
    assert communes[("canbo", "Đăng nhập")] == "Xã Tân Lang"
    assert communes[("canbo", "Đăng nhập sai")] == "Xã Tân Lang"
    assert communes[("canbo-khac", "Đăng nhập")] == "Xã Khác"
    assert communes[("kt-hai-xa", "Đăng nhập")] == "Xã Tân Lang, Xã Khác"  # one line
    assert communes[("khong-co-ai", "Đăng nhập sai")] == "Toàn tỉnh"
    assert communes[("admin", "Đăng nhập")] == "Toàn tỉnh"
    assert len(province) == 6
    # ... and each commune's page too.
    assert logins(audit_rows(admin, f"/c/{C}/audit"), "canbo") == ["Đăng nhập",
                                                                  "Đăng nhập sai"]

    # A log-out is filed the same way.
    officer.post("/logout", data={"csrf": csrf_of(officer)})
    site.clients.pop("canbo")
    assert logins(audit_rows(admin, f"/c/{C}/audit"), "canbo")[0] == "Đăng xuất"
    two.close()


def test_only_the_provinces_admin_reads_the_provinces_audit_log(site: WebSite) -> None:
    for user in ("kt-tinh", "kt-tanlang", "canbo", "truongban"):
        r = site.client(user).get("/audit")
        assert r.status_code == 403, user
        assert "chỉ dành cho quản trị viên tỉnh" in r.text
    html = site.client("admin").get("/communes").text
    assert '<a href="/audit">Nhật ký thao tác toàn tỉnh</a>' in html
    assert 'href="/audit"' not in site.client("kt-tinh").get("/communes").text

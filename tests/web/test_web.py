"""The web page and its API over a real SQLite database (no broker, no nodes): what the commune
culture officer reads, in the commune's timezone, and how the server behaves when asked
something wrong or when its database breaks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text, update
from sqlalchemy.orm import Session
from support.web_site import PASSWORD, login

from headend.communes.files import load_commune
from headend.communes.registry import provision_commune
from headend.core.auth import add_user
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import AsRunRecord, Command, Node
from headend.web.app import make_app

REPO = Path(__file__).resolve().parents[2]
COMMUNE = REPO / "schedules" / "tan-lang.toml"
VILLAGES = ["Thôn Nà Pàn", "Bản Chu", "Thôn Khòn Pát", "Thôn Pác Luông", "Thôn Nà Làng"]


def utc_ms(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


# "Now" is 04:00 on 23/11/2026 in Hà Nội (UTC+7) and still 22/11 in UTC: every record below
# that belongs to "today" has a UTC date of the 22nd, so a page that used UTC would miss them.
NOW_MS = utc_ms(2026, 11, 22, 21, 0, 0)
MORNING_START = utc_ms(2026, 11, 22, 20, 30, 0)  # 03:30:00 on the 23rd, local
MORNING_END = utc_ms(2026, 11, 22, 20, 33, 0)  # 03:33:00
AFTER_MIDNIGHT = utc_ms(2026, 11, 22, 17, 30, 0)  # 00:30:00 on the 23rd, local
LATE_YESTERDAY = utc_ms(2026, 11, 22, 16, 30, 0)  # 23:30:00 on the 22nd, local
PLAYING_TITLE = "Bản tin thời sự sáng"
HOME = "/c/tan-lang"  # the commune's front page


@dataclass
class Site:
    home: Home
    engine: Engine
    client: TestClient


def _command(cid: str, node: str, title: str, issued: int) -> Command:
    return Command(id=cid, node_id=node, seq=1, op="play", args=json.dumps({"title": title}),
                   title=title, issued_ms=issued, expires_ms=issued + 120_000,
                   operator="Chị Hoa", status="done", reason=None, updated_ms=issued)


def _record(node: str, rid: int, cid: str | None, title: str, start: int | None,
            end: int | None, outcome: str = "aired", reason: str | None = None,
            received: int | None = None) -> AsRunRecord:
    return AsRunRecord(node_id=node, rid=rid, command_id=cid, trigger="command",
                       media="http://127.0.0.1/media/x.wav", title=title, start_ms=start,
                       end_ms=end, outcome=outcome, reason=reason,
                       received_ms=received or (end or start or NOW_MS))


def fill(engine: Engine) -> None:
    """Three clusters online (one playing), two offline (one never seen), a day of diary."""
    with Session(engine) as s, s.begin():
        s.add(_command("c-morning", "tl-napan-1", PLAYING_TITLE, MORNING_START - 1000))
        s.add(_command("c-night", "tl-banchu-1", "Thông báo phòng cháy", AFTER_MIDNIGHT - 500))
        s.add(_command("c-late", "tl-banchu-1", "Chương trình tối qua", LATE_YESTERDAY - 500))
        s.flush()
        s.execute(update(Node).where(Node.id == "tl-napan-1").values(
            online=True, last_seen_ms=NOW_MS - 5000, playing="c-morning",
            telemetry=json.dumps({"volume": 70})))
        s.execute(update(Node).where(Node.id.in_(["tl-banchu-1", "tl-khonpat-1"])).values(
            online=True, last_seen_ms=NOW_MS - 20_000))
        s.execute(update(Node).where(Node.id == "tl-pacluong-1").values(
            online=False, last_seen_ms=LATE_YESTERDAY))
        # tl-nalang-1 has never been seen.
        s.add_all([
            _record("tl-napan-1", 1, "c-morning", PLAYING_TITLE, MORNING_START, MORNING_END),
            _record("tl-khonpat-1", 1, "c-morning", PLAYING_TITLE, MORNING_START + 40,
                    MORNING_END - 95_000, "partial", "stopped"),
            _record("tl-banchu-1", 1, "c-night", "Thông báo phòng cháy", AFTER_MIDNIGHT,
                    AFTER_MIDNIGHT + 754_000),
            _record("tl-pacluong-1", 1, "c-morning", "<script>alert(1)</script>", None, None,
                    "failed", "media: HTTP 404", received=MORNING_START + 2000),
            _record("tl-banchu-1", 2, "c-late", "Chương trình tối qua", LATE_YESTERDAY,
                    LATE_YESTERDAY + 60_000),
        ])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, load_commune(COMMUNE))
    fill(engine)
    (home.media_dir / "ban-tin.wav").write_bytes(b"RIFF-not-really-a-wav")
    add_user(engine, "admin", PASSWORD, "admin", [], NOW_MS)
    app = make_app(engine, home.media_dir, clock=lambda: NOW_MS)
    with TestClient(app, raise_server_exceptions=False) as client:
        login(client, "admin")
        yield Site(home, engine, client)
    engine.dispose()


def rows(html: str, table: str) -> list[str]:
    body = html.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr data-node=.*?</tr>", body, re.S)


def node_row(html: str, node_id: str) -> str:
    found = [r for r in rows(html, "nodes") if f'data-node="{node_id}"' in r]
    assert len(found) == 1, f"{node_id}: {len(found)} rows"
    return found[0]


def cells(row: str) -> list[str]:
    found = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    return [re.sub(r"<[^>]+>", "", c).strip() for c in found]


# --- the page ------------------------------------------------------------------------------

def test_page_lists_every_village_with_state_last_seen_and_what_plays(site: Site) -> None:
    r = site.client.get(HOME)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "Đài truyền thanh xã Tân Lang" in html
    assert "Cụm loa đang hoạt động: <b>3/5</b>" in html
    assert "2 cụm mất kết nối" in html
    assert len(rows(html, "nodes")) == 5
    for village in VILLAGES:
        assert village in html

    napan = cells(node_row(html, "tl-napan-1"))
    assert napan[:2] == ["Thôn Nà Pàn", "Hoạt động"]
    assert napan[2] == PLAYING_TITLE  # the command's title, not its id
    assert napan[3] == "03:59:55"  # today, local time

    assert cells(node_row(html, "tl-banchu-1"))[1:4] == ["Hoạt động", "—", "03:59:40"]
    pacluong = cells(node_row(html, "tl-pacluong-1"))
    assert pacluong[1] == "Mất kết nối"
    assert pacluong[3] == "23:30 22/11/2026"  # not today: the date is shown
    nalang = cells(node_row(html, "tl-nalang-1"))
    assert nalang[1:4] == ["Mất kết nối", "—", "Chưa liên lạc"]


def test_todays_diary_is_in_the_commune_timezone(site: Site) -> None:
    html = site.client.get(HOME).text
    assert "Nhật ký truyền thanh ngày 23/11/2026" in html
    diary = [cells(r) for r in rows(html, "diary")]
    # Ordered by actual start; the record that never started sits where it was reported.
    assert [d[:2] for d in diary] == [
        ["00:30:00", "00:42:34"], ["03:30:00", "03:33:00"], ["03:30:00", "03:31:25"], ["—", "—"],
    ]
    by_village = {d[3]: d for d in diary}
    assert by_village["Thôn Nà Pàn"][2] == PLAYING_TITLE
    assert by_village["Thôn Nà Pàn"][4:7] == ["Đã phát", "3 phút", "Chị Hoa"]
    assert by_village["Thôn Nà Pàn"][7] == "03:29:59"  # when the command was issued
    assert by_village["Bản Chu"][4:6] == ["Đã phát", "12 phút 34 giây"]
    assert by_village["Thôn Khòn Pát"][4] == "Phát dở (bị dừng giữa chừng)"
    assert by_village["Thôn Pác Luông"][4] == ("Không phát được (lỗi bản ghi "
                                               "(chi tiết kỹ thuật: HTTP 404))")
    # Yesterday evening (local) is not today, although it is the same UTC date.
    assert "Chương trình tối qua" not in html
    assert "23:30:00" not in html
    # A title from a node is text, never markup.
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Ngày sau" not in html  # no link into the future

    yesterday = site.client.get(HOME + "?day=2026-11-22").text
    assert "Nhật ký truyền thanh ngày 22/11/2026" in yesterday
    assert [cells(r)[:3] for r in rows(yesterday, "diary")] == [
        ["23:30:00", "23:31:00", "Chương trình tối qua"]]
    assert 'href="/?day=2026-11-23#nhat-ky">Ngày sau' in yesterday


def test_api_diary_gives_local_and_utc_times(site: Site) -> None:
    r = site.client.get("/api/v1/asrun")
    assert r.status_code == 200
    data = r.json()
    assert len(data) == 4
    night = next(d for d in data if d["node_id"] == "tl-banchu-1")
    assert night["start_ms"] == AFTER_MIDNIGHT
    assert night["start_local"] == "2026-11-23T00:30:00+07:00"
    assert night["duration_s"] == 754
    assert site.client.get("/api/v1/asrun?day=2026-11-22").json()[0]["title"] == (
        "Chương trình tối qua")


@pytest.mark.parametrize("day", ["2000-01-01", "2001-06-15", "2099-12-31"])
def test_a_day_without_records_says_so(site: Site, day: str) -> None:
    r = site.client.get(f"{HOME}?day={day}")
    assert r.status_code == 200
    assert "Không có buổi phát nào được ghi trong ngày này." in r.text
    assert rows(r.text, "diary") == []
    assert site.client.get(f"/api/v1/asrun?day={day}").json() == []


def test_api_nodes(site: Site) -> None:
    r = site.client.get("/api/v1/nodes")
    assert r.status_code == 200
    nodes = {n["id"]: n for n in r.json()}
    assert sorted(nodes) == sorted(load_commune(COMMUNE).node_ids)
    assert {n["village"] for n in nodes.values()} == set(VILLAGES)
    napan = nodes["tl-napan-1"]
    assert napan["online"] is True
    assert napan["playing"] == PLAYING_TITLE
    assert napan["volume"] == 70
    assert napan["last_seen_ms"] == NOW_MS - 5000
    assert napan["last_seen_local"] == "2026-11-23T03:59:55+07:00"
    assert nodes["tl-nalang-1"]["last_seen_ms"] is None
    assert sum(n["online"] for n in nodes.values()) == 3


def test_page_fits_a_phone(site: Site) -> None:
    html = site.client.get(HOME).text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<html lang="vi">' in html
    # Wide tables scroll sideways inside their box instead of widening the page.
    assert html.count('<div class="wrap"><table') == 3  # criterion 8.3, nodes, diary
    assert '<link rel="stylesheet" href="/static/loaxa.css">' in html
    assert ".wrap{overflow-x:auto" in site.client.get("/static/loaxa.css").text


# --- wrong requests ------------------------------------------------------------------------

@pytest.mark.parametrize("day", ["2026-13-45", "hôm qua", "22/11/2026", "x" * 500])
def test_bad_day_is_400_in_vietnamese(site: Site, day: str) -> None:
    page = site.client.get(HOME, params={"day": day})
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert "Ngày không hợp lệ" in page.text
    assert "ví dụ 2026-11-22" in page.text
    assert '{"detail"' not in page.text
    assert "x" * 100 not in page.text  # the echo of what was typed is cut short

    api = site.client.get("/api/v1/asrun", params={"day": day})
    assert api.status_code == 400
    assert api.headers["content-type"] == "application/json"
    assert api.json()["detail"].startswith("Ngày không hợp lệ")


def test_unknown_page_is_404_in_vietnamese_and_api_stays_json(site: Site) -> None:
    page = site.client.get("/khong-co-trang-nay")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Không tìm thấy trang" in page.text
    assert "Not Found" not in page.text
    assert 'href="/"' in page.text

    api = site.client.get("/api/khong-co")
    assert api.status_code == 404
    assert api.json() == {"detail": "Not Found"}

    wrong_method = site.client.post("/")
    assert wrong_method.status_code == 405
    assert "Không thực hiện được" in wrong_method.text


# --- a broken database ---------------------------------------------------------------------

def test_a_dropped_table_is_503_and_the_server_stays_up(site: Site) -> None:
    with site.engine.begin() as conn:
        conn.execute(text("DROP TABLE asrun"))
    page = site.client.get(HOME)
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert "Không đọc được cơ sở dữ liệu" in page.text
    api = site.client.get("/api/v1/asrun")
    assert api.status_code == 503
    assert "Không đọc được cơ sở dữ liệu" in api.json()["detail"]
    # What does not need the lost table still works; the process is alive.
    assert site.client.get("/api/v1/nodes").status_code == 200
    assert site.client.get("/healthz").json() == {"status": "ok"}


def test_a_replaced_database_file_is_503(site: Site) -> None:
    site.engine.dispose()  # as after a restart: no connection keeps the old file open
    for suffix in ("-wal", "-shm"):
        Path(f"{site.home.db_path}{suffix}").unlink(missing_ok=True)
    site.home.db_path.write_bytes(b"\x00garbage, not SQLite\xff" * 200)
    for path in (HOME, HOME + "?day=2026-11-22"):
        r = site.client.get(path)
        assert r.status_code == 503
        assert "Không đọc được cơ sở dữ liệu" in r.text
    for path in ("/api/v1/nodes", "/api/v1/asrun"):
        r = site.client.get(path)
        assert r.status_code == 503
        assert "Không đọc được cơ sở dữ liệu" in r.json()["detail"]
    assert site.client.get("/healthz").status_code == 200
    # Who may fetch a file is in the database too (media/access.py): it says so, and stays up.
    r = site.client.get("/media/ban-tin.wav")
    assert r.status_code == 503 and "Không đọc được cơ sở dữ liệu" in r.json()["detail"]


# --- media for nodes -----------------------------------------------------------------------

def test_media_serves_a_real_file(site: Site) -> None:
    r = site.client.get("/media/ban-tin.wav")
    assert r.status_code == 200
    assert r.content == b"RIFF-not-really-a-wav"


@pytest.mark.parametrize("path", [
    "/media/..%2floaxa.db",
    "/media/..%2f..%2fetc%2fpasswd",
    "/media/%2fetc%2fpasswd",
    "/media//etc/passwd",
    "/media/%2e%2e",
    "/media/.hidden",
    "/media/.%2e%2floaxa.db",
    "/media/sub",
    "/media/outside.wav",
    "/media/khong-co.wav",
])
def test_media_refuses_anything_but_a_file_in_the_media_directory(site: Site, path: str) -> None:
    media = site.home.media_dir
    (media / ".hidden").write_text("secret")
    (media / "sub").mkdir(exist_ok=True)
    (site.home.root / "outside.txt").write_text("outside")
    link = media / "outside.wav"
    if not link.is_symlink():
        link.symlink_to(site.home.root / "outside.txt")
    r = site.client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    for leaked in (b"SQLite format", b"secret", b"outside", b"root:"):
        assert leaked not in r.content


# --- criterion 8.3 --------------------------------------------------------------------------

def _plan_record(node: str, rid: int, item: str, kind: str, start: int, minutes: int,
                 lang: str = "vi") -> AsRunRecord:
    return AsRunRecord(node_id=node, rid=rid, command_id=None, trigger="plan", media="",
                       title=item, start_ms=start, end_ms=start + minutes * 60_000,
                       outcome="aired", reason=None, received_ms=start, item_id=item,
                       kind=kind, language=lang, planned_start_ms=start,
                       planned_end_ms=start + minutes * 60_000, source="primary",
                       commune_id="tan-lang")


def test_criterion_8_3_shows_what_aired_and_what_the_schedule_plans(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, load_commune(COMMUNE))
    # Week of Monday 23/11/2026: VOV every day, the province on 5 days, 2 local bulletins.
    monday_6am = utc_ms(2026, 11, 22, 23, 0, 0)
    day = 86_400_000
    with Session(engine) as s, s.begin():
        rid = 0
        for d in range(7):
            for node in ("tl-napan-1", "tl-banchu-1"):  # two villages, one occurrence
                rid += 1
                s.add(_plan_record(node, rid, f"vov@{d}", "vov_relay", monday_6am + d * day, 30))
                if d < 5:
                    rid += 1
                    s.add(_plan_record(node, rid, f"tinh@{d}", "province_relay",
                                       monday_6am + d * day + 3_600_000, 30))
        for d in (0, 2):
            s.add(_plan_record("tl-napan-1", 100 + d, f"bt@{d}", "local_bulletin",
                               monday_6am + d * day + 7_200_000, 15, "tay"))
    add_user(engine, "admin", PASSWORD, "admin", [], NOW_MS)
    app = make_app(engine, home.media_dir, clock=lambda: NOW_MS, schedule_path=COMMUNE)
    with TestClient(app, raise_server_exceptions=False) as client:
        login(client, "admin")
        html = client.get(HOME, params={"day": "2026-11-25"}).text
    engine.dispose()
    table = html.split('<table id="criterion">', 1)[1].split("</table>", 1)[0]
    aired = cells(re.findall(r'<tr data-row="aired">.*?</tr>', table, re.S)[0])
    assert aired[:4] == ["Đã phát (theo nhật ký)", "7/7 ngày", "5/7 ngày",
                         "2 tin, cần ít nhất 3"]
    assert "Tiếng Tày 0,5 giờ" in aired[5] and aired[6] == "Chưa đạt"
    planned = cells(re.findall(r'<tr data-row="planned">.*?</tr>', table, re.S)[0])
    assert planned[0] == "Theo lịch phát" and planned[1] == "7/7 ngày" and planned[2] == "7/7 ngày"
    # The schedule's six bulletins have no recording: shown apart, not counted.
    assert planned[3] == "0 tin, cần ít nhất 3" and planned[6] == "Chưa đạt"
    warning = re.findall(r'<p class="warn not-counted" data-row="(\w+)">(.*?)</p>', html, re.S)
    assert [(row, " ".join(text.split())) for row, text in warning] == [
        ("planned", "⚠ Theo lịch phát: 6 bản tin thiếu bản ghi, không tính.")]
    assert "Tiêu chí 8.3 – tuần 23/11–29/11/2026" in html

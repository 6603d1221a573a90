"""The officer's web app over a real database: who may open which page and do what (every
page, every role, two communes), logging in, the calendar's rules, approval before scheduling,
bad uploads, and the audit log."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.audio_check import sine
from support.cli import run_main
from support.web_site import (
    NOW_MS,
    OTHER,
    PASSWORD,
    USERS,
    WebSite,
    app_routes,
    csrf_of,
    make_site,
    post_login,
)

from headend.core.audit import Actor
from headend.core.models import AuditEntry, Bulletin, CalendarItem, User
from headend.media import bulletins
from headend.media.pipeline import prepare
from headend.planning.calendar import effective, occurrences
from headend.planning.expansion import expand

C = "tan-lang"
MONDAY = date(2026, 11, 23)  # "now" is Monday 08:00 in Hà Nội
EVERYONE = [u for u in USERS]
TAN_LANG_VIEW = {"admin", "kt-tinh", "kt-tanlang", "canbo", "truongban"}
# /media checks its own (tests/security/test_media_access.py); /static holds the pages' CSS
# and scripts.
PUBLIC = {"/login", "/healthz", "/media/{name}", "/lang/{code}", "/static"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebSite]:
    s = make_site(tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebSite, int]]:
    """One site for the role table (its requests change nothing the others look at), with a
    Tân Lang draft."""
    s = make_site(tmp_path_factory.mktemp("roles"))
    yield s, draft(s, seconds=5)
    s.close()


def draft(site: WebSite, title: str = "Tin xã tuần này", seconds: float = 90,
          commune: str = C) -> int:
    """A bulletin made by the pipeline from a tone, as a draft of `commune`."""
    audio = prepare(sine(440, duration=int(seconds * 1000), volume=-20),
                    site.home.media_dir)
    return bulletins.create(site.engine, commune, Actor("canbo", "officer", "test"),
                            bulletins.Meta(title, "Tóm tắt"), audio, "upload", site.clock())


def approved(site: WebSite, title: str = "Tin xã tuần này", seconds: float = 90) -> int:
    bid = draft(site, title, seconds)
    bulletins.decide(site.engine, C, bid, Actor("truongban", "approver", "test"), True,
                     site.clock())
    return bid


# --- Who may do what --------------------------------------------------------------------

# (method, path, form, users allowed). {b} is a Tân Lang bulletin. Allowed means neither 401
# nor 403 (a refused form is 422, a missing thing 404/409); the others get 403, or the log-in
# page (pages) / 401 (API) when not logged in.
ROWS: list[tuple[str, str, dict[str, str], set[str]]] = [
    ("GET", "/", {}, set(EVERYONE)),
    ("GET", "/communes", {}, set(EVERYONE)),
    ("GET", "/docs", {}, set(EVERYONE)),
    ("GET", "/docs/assets/{name}", {}, set(EVERYONE)),
    ("GET", "/openapi.json", {}, set(EVERYONE)),
    ("GET", f"/c/{C}", {}, TAN_LANG_VIEW),
    ("GET", f"/c/{C}/calendar", {}, TAN_LANG_VIEW),
    ("GET", f"/c/{C}/bulletins", {}, TAN_LANG_VIEW),
    ("GET", f"/c/{C}/bulletins/new", {}, {"admin", "canbo"}),
    ("GET", f"/c/{C}/bulletins/{{b}}", {}, TAN_LANG_VIEW),
    ("GET", f"/c/{C}/bulletins/{{b}}/audio", {}, TAN_LANG_VIEW),
    ("GET", f"/c/{C}/emergency", {}, {"admin", "canbo", "truongban"}),
    ("GET", f"/c/{C}/emergency/998", {}, {"admin", "canbo", "truongban"}),  # (none: 404)
    ("GET", f"/c/{C}/emergency/998/status", {}, {"admin", "canbo", "truongban"}),
    ("GET", f"/c/{C}/nodes", {}, TAN_LANG_VIEW),
    ("GET", f"/c/{C}/audit", {}, TAN_LANG_VIEW),
    ("GET", "/audit", {}, {"admin"}),  # the whole province's audit log
    ("GET", f"/diary/{C}", {}, TAN_LANG_VIEW),
    ("GET", f"/diary/{C}/export?fmt=csv", {}, TAN_LANG_VIEW),
    ("GET", f"/diary/{C}/report?fmt=csv&month=2026-11", {}, TAN_LANG_VIEW),
    ("GET", "/health", {}, {"admin", "kt-tinh", "kt-tanlang"}),
    ("GET", "/metrics", {}, {"admin", "kt-tinh"}),
    ("POST", f"/c/{C}/calendar/add", {"bulletin": "x"}, {"admin", "canbo", "truongban"}),
    ("POST", f"/c/{C}/calendar/move", {"ref": "c999"}, {"admin", "canbo", "truongban"}),
    ("POST", f"/c/{C}/calendar/remove", {"ref": "c999"}, {"admin", "canbo", "truongban"}),
    ("POST", f"/c/{C}/bulletins", {"title": ""}, {"admin", "canbo"}),
    ("POST", f"/c/{C}/bulletins/{{b}}/reject", {}, {"admin", "truongban"}),
    ("POST", f"/c/{C}/bulletins/999/approve", {}, {"admin", "truongban"}),
    ("POST", f"/c/{C}/bulletins/999/delete", {}, {"admin", "canbo"}),
    ("POST", f"/c/{C}/emergency/confirm", {}, {"admin", "canbo", "truongban"}),
    ("POST", f"/c/{C}/emergency/send", {}, {"admin", "canbo", "truongban"}),
    ("POST", "/logout", {}, set(EVERYONE)),
]


def _route_key(method: str, path: str) -> tuple[str, str]:
    path = path.split("?")[0].replace("{b}", "{bulletin_id}").replace("/999/",
                                                                      "/{bulletin_id}/")
    path = path.replace("/emergency/998", "/emergency/{broadcast_id}")
    return method, re.sub(r"^/(c|diary)/tan-lang", r"/\1/{commune_id}", path)


def test_every_page_and_form_has_a_row_in_the_role_table(
        shared: tuple[WebSite, int]) -> None:
    site, _ = shared
    covered = {_route_key(m, p) for m, p, _, _ in ROWS}
    seen = 0
    for path, methods in app_routes(site.app):
        if path in PUBLIC or path.startswith(("/api/v1", "/api/httttn")):
            continue  # tests/api/test_api.py has the API's table
        for method in methods - {"HEAD"}:
            seen += 1
            assert (method, path) in covered, f"no role row for {method} {path}"
    assert seen == len(covered)  # and no row for a page that is gone


@pytest.mark.parametrize(("method", "path", "form", "allowed"), ROWS,
                         ids=[f"{m} {p}" for m, p, _, _ in ROWS])
def test_each_role_in_scope_can_and_no_other_can(shared: tuple[WebSite, int], method: str,
                                                  path: str, form: dict[str, str],
                                                  allowed: set[str]) -> None:
    site, bid = shared
    path = path.replace("{b}", str(bid))
    for username in [*USERS, None]:
        client = site.client(username)
        data = dict(form)
        if method == "POST" and username is not None:
            data["csrf"] = csrf_of(client)
        r = client.request(method, path, data=data if method == "POST" else None)
        who = username or "nobody"
        if username in allowed:
            assert r.status_code not in (401, 403), f"{who} refused {method} {path}: {r.text}"
            # No headend runs here, so the emergency is refused with 503 (tested below).
            assert r.status_code < 500 or path.endswith("/emergency/send"), \
                f"{who}: {r.status_code} on {method} {path}"
            if path == "/logout":
                site.clients.pop(username)  # that session is over
        elif username is None:
            if path.startswith(("/api/", "/metrics")):
                assert r.status_code == 401, f"nobody got {r.status_code} on {path}"
            else:
                assert r.status_code == 303, f"nobody got {r.status_code} on {path}"
                assert r.headers["location"].startswith("/login?next=")
        else:
            assert r.status_code == 403, f"{who} got {r.status_code} on {method} {path}"
            assert any(why in r.text for why in ("xã này", "không được", "chỉ dành cho"))


def test_lists_show_only_the_users_communes(site: WebSite) -> None:
    other = site.client("canbo-khac")
    assert {n["commune_id"] for n in other.get("/api/v1/nodes").json()} == {OTHER}
    html = other.get("/communes").text
    assert f'data-commune="{OTHER}"' in html and f'data-commune="{C}"' not in html
    province = site.client("kt-tinh").get("/communes").text
    assert f'data-commune="{OTHER}"' in province and f'data-commune="{C}"' in province
    # A bulletin of another commune is "not found" under one's own commune's address.
    theirs = draft(site, "Tin xã khác", commune=OTHER)
    assert site.client("canbo").get(f"/c/{C}/bulletins/{theirs}").status_code == 404


def test_forms_without_the_sessions_csrf_token_change_nothing(site: WebSite) -> None:
    officer = site.client("canbo")
    bid = approved(site)
    form = {"bulletin": str(bid), "day": "2026-11-24", "start": "10:00",
            "villages": ["na-pan"]}
    for token in (None, "forged"):
        data = dict(form) if token is None else {**form, "csrf": token}
        r = officer.post(f"/c/{C}/calendar/add", data=data)
        assert r.status_code == 403 and "tải lại trang" in r.text
    with Session(site.engine) as s:
        assert s.scalar(select(func.count(CalendarItem.id))) == 0
    # Another user's token does not do either.
    r = officer.post(f"/c/{C}/calendar/add",
                     data={**form, "csrf": csrf_of(site.client("truongban"))})
    assert r.status_code == 403


# --- Logging in --------------------------------------------------------------------------

def test_passwords_are_argon2_hashes_and_a_wrong_one_is_refused(site: WebSite) -> None:
    with Session(site.engine) as s:
        hashes = list(s.scalars(select(User.password_hash)))
    assert hashes and all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
    client = site.client(None)
    r = post_login(client, "canbo", "sai-mat-khau")
    assert r.status_code == 401 and "Sai tên đăng nhập hoặc mật khẩu" in r.text
    assert "loaxa_session" not in client.cookies
    r = post_login(client, "khong-co")
    assert r.status_code == 401 and "Sai tên đăng nhập hoặc mật khẩu" in r.text


def test_logins_are_rate_limited_per_name_and_address(site: WebSite) -> None:
    client = site.client(None)
    for _ in range(5):
        assert post_login(client, "canbo", "sai").status_code == 401
    # The right password is refused too while the limit holds, and says when to retry.
    r = post_login(client, "canbo")
    assert r.status_code == 429 and "thử lại sau 15 phút" in r.text
    site.clock.ms += 15 * 60_000 + 1
    r = post_login(client, "canbo")
    assert r.status_code == 303 and r.headers["location"] == f"/c/{C}/calendar"
    with Session(site.engine) as s:
        failed = s.scalar(select(func.count(AuditEntry.id))
                          .where(AuditEntry.action == "login_failed"))
    assert failed == 5


def test_after_logout_and_after_a_day_the_session_is_gone(site: WebSite) -> None:
    officer = site.client("canbo")
    cookie = officer.cookies["loaxa_session"]
    assert officer.get(f"/c/{C}").status_code == 200
    site.clock.ms += 12 * 3600_000 + 1
    assert officer.get(f"/c/{C}").status_code == 303  # expired: log in again
    site.clock.ms = NOW_MS
    r = officer.post("/logout", data={"csrf": csrf_of(officer)})
    assert r.status_code == 303
    officer.cookies.set("loaxa_session", cookie)
    assert officer.get(f"/c/{C}").status_code == 303


def test_next_after_login_stays_on_this_site(site: WebSite) -> None:
    client = site.client(None)
    r = post_login(client, "canbo", next="//evil.example/x")
    assert r.headers["location"] == f"/c/{C}/calendar"


# --- Bulletins: approval before the calendar --------------------------------------------

def test_only_approved_bulletins_go_on_the_calendar(site: WebSite) -> None:
    officer, approver = site.client("canbo"), site.client("truongban")
    bid = draft(site, "Lịch tiêm phòng")
    form = {"bulletin": str(bid), "day": "2026-11-24", "start": "10:00",
            "villages": ["na-pan", "ban-chu"], "csrf": csrf_of(officer)}
    r = officer.post(f"/c/{C}/calendar/add", data=form)
    assert r.status_code == 422 and "chưa được duyệt" in r.text
    # The officer cannot approve; a reject needs a reason; the approver approves.
    assert officer.post(f"/c/{C}/bulletins/{bid}/approve",
                        data={"csrf": csrf_of(officer)}).status_code == 403
    r = approver.post(f"/c/{C}/bulletins/{bid}/reject", data={"csrf": csrf_of(approver)})
    assert r.status_code == 422 and "lý do" in r.text
    r = approver.post(f"/c/{C}/bulletins/{bid}/approve", data={"csrf": csrf_of(approver)})
    assert r.status_code == 303
    assert "Đã duyệt" in approver.get(r.headers["location"]).text
    r = officer.post(f"/c/{C}/calendar/add", data=form)
    assert r.status_code == 303, r.text
    page = officer.get(r.headers["location"]).text
    assert "Đã đưa bản tin vào lịch" in page
    day = page.split('data-day="2026-11-24"', 1)[1].split("</section>", 1)[0]
    assert "10:00–10:02" in day and "Lịch tiêm phòng" in day and "Bản Chu" in day
    # Approved bulletins cannot be deleted; the audit log has every step, by whom.
    assert officer.post(f"/c/{C}/bulletins/{bid}/delete",
                        data={"csrf": csrf_of(officer)}).status_code == 409
    audit = officer.get(f"/c/{C}/audit").text
    for who, what in (("canbo", "Tạo bản tin"), ("truongban", "Duyệt bản tin"),
                      ("canbo", "Thêm vào lịch")):
        assert re.search(rf"<td>{who}</td><td>[^<]*</td><td>{what}</td>", audit), what


def test_a_scheduled_bulletin_is_in_the_nodes_plans_with_its_audio(site: WebSite) -> None:
    bid = approved(site, "Thông báo họp dân", seconds=150)
    officer = site.client("canbo")
    r = officer.post(f"/c/{C}/calendar/add", data={
        "bulletin": str(bid), "day": "2026-11-25", "start": "09:30",
        "villages": ["khon-pat"], "csrf": csrf_of(officer)})
    assert r.status_code == 303, r.text
    schedule = effective(site.engine, _raw(site), site.home.media_dir)
    lo = NOW_MS
    plans = expand(schedule, lo, lo + 3 * 86_400_000)
    mine = [e for e in plans["tl-khonpat-1"] if e.title == "Thông báo họp dân"]
    assert len(mine) == 1 and mine[0].kind == "local_bulletin"
    assert mine[0].end_ms - mine[0].start_ms == 3 * 60_000  # 2.5 min rounds up to 3
    assert mine[0].media is not None and mine[0].media.is_file()
    assert mine[0].media.read_bytes()[:4] == b"RIFF"  # the ESP32 profile's WAV
    for other in ("tl-napan-1", "tl-banchu-1"):
        assert not [e for e in plans[other] if e.title == "Thông báo họp dân"]


def _raw(site: WebSite):  # type: ignore[no-untyped-def]
    from headend.planning.schedule import load_schedule

    return load_schedule(site.schedules[C])


def _badge(html: str, label: str) -> str:
    return html.split(f'data-week="{label}"', 1)[1].split("</div>", 1)[0]


def _news(html: str, label: str) -> str:
    badge = _badge(html, label)
    found = re.search(r'<b class="news">(\d+) tin, cần ít nhất 3</b>', badge)
    assert found, badge
    return found.group(1)


def _not_counted(html: str, label: str, what: str) -> int:
    """How many bulletins the badge shows apart as not counted ("placeholders", "short")."""
    found = re.search(rf'<span class="off {what}" data-n="(\d+)">⚠ (.*?)</span>',
                      _badge(html, label))
    return int(found.group(1)) if found else 0


def test_the_8_3_badge_counts_a_bulletin_put_on_next_week(site: WebSite) -> None:
    officer = site.client("canbo")
    before = officer.get(f"/c/{C}/calendar").text
    bid = approved(site, "Tin nông nghiệp")
    r = officer.post(f"/c/{C}/calendar/add", data={
        "bulletin": str(bid), "day": "2026-12-01", "start": "07:00", "csrf": csrf_of(officer)})
    assert r.status_code == 303, r.text
    after = officer.get(f"/c/{C}/calendar").text
    assert int(_news(after, "Tuần sau")) == int(_news(before, "Tuần sau")) + 1
    assert _news(after, "Tuần này") == _news(before, "Tuần này")


def test_the_8_3_badge_counts_neither_placeholders_nor_short_bulletins(site: WebSite) -> None:
    officer = site.client("canbo")
    before = officer.get(f"/c/{C}/calendar").text
    # The untouched commune: its six bulletins a week are slots with no recording yet.
    for label in ("Tuần này", "Tuần sau"):
        assert _news(before, label) == "0"
        assert _not_counted(before, label, "placeholders") == 6
        assert "6 bản tin thiếu bản ghi, không tính" in _badge(before, label)
        assert "<b>Chưa đạt</b>" in _badge(before, label)
    # A 19-second bulletin gets a one-minute slot; placed twice it is still no news item.
    bid = approved(site, "Tin ngắn", seconds=19)
    for day in ("2026-12-01", "2026-12-03"):
        r = officer.post(f"/c/{C}/calendar/add", data={
            "bulletin": str(bid), "day": day, "start": "07:00", "csrf": csrf_of(officer)})
        assert r.status_code == 303, r.text
    after = officer.get(f"/c/{C}/calendar").text
    assert _news(after, "Tuần sau") == "0"
    assert _not_counted(after, "Tuần sau", "short") == 2
    assert "2 bản tin ngắn dưới 60 giây, không tính" in _badge(after, "Tuần sau")
    assert _not_counted(after, "Tuần này", "short") == 0
    assert "chỉ tính bản tin có bản ghi dài ít nhất 60 giây" in _badge(after, "Tuần sau")
    # The API says the same.
    got = officer.get(f"/api/v1/communes/{C}/criterion", params={"week": "2026-12-01"}).json()
    planned = got["planned"]
    assert (planned["local_news"], planned["local_news_text"]) == (0, "0 tin, cần ít nhất 3")
    assert [x.split("@")[1] for x in planned["short_news"]] == ["2026-12-01", "2026-12-03"]
    assert len(planned["placeholders"]) == 6 and planned["ok"] is False
    assert planned["warnings"][1].startswith("2 bản tin ngắn dưới 60 giây, không tính")


@pytest.mark.parametrize(("day", "start", "message"), [
    ("2026-11-24", "22:30", "giờ yên tĩnh"),
    ("2026-11-24", "04:30", "giờ yên tĩnh"),
    ("2026-11-23", "08:05", "đã qua hoặc trong 10 phút tới"),
    ("2026-11-22", "10:00", "đã qua"),
    ("2026-11-24", "23:59", "giờ yên tĩnh"),
    ("2026-11-24", "25:00", "Giờ không hợp lệ"),
    ("2026-11-31", "10:00", "Ngày không hợp lệ"),
    ("2026-11-24", "17:31", "Trùng giờ với “Bản tin tiếng Tày”"),
])
def test_calendar_refuses_what_cannot_air(site: WebSite, day: str, start: str,
                                          message: str) -> None:
    officer = site.client("canbo")
    bid = approved(site)
    r = officer.post(f"/c/{C}/calendar/add", data={
        "bulletin": str(bid), "day": day, "start": start, "villages": ["ban-chu"],
        "csrf": csrf_of(officer)})
    assert r.status_code == 422
    assert message in r.text, re.findall(r'<p class="err"[^>]*>(.*?)</p>', r.text)
    with Session(site.engine) as s:
        assert s.scalar(select(func.count(CalendarItem.id))) == 0


def test_move_and_remove_items_and_one_day_of_a_relay(site: WebSite) -> None:
    officer = site.client("canbo")
    bid = approved(site, "Tin an ninh")
    csrf = csrf_of(officer)
    r = officer.post(f"/c/{C}/calendar/add", data={
        "bulletin": str(bid), "day": "2026-11-24", "start": "10:00", "csrf": csrf})
    assert r.status_code == 303
    with Session(site.engine) as s:
        item = s.scalars(select(CalendarItem)).one()
    r = officer.post(f"/c/{C}/calendar/move", data={
        "ref": f"c{item.id}", "day": "2026-11-26", "start": "14:15", "csrf": csrf})
    assert r.status_code == 303, r.text
    # Tomorrow's VOV morning relay moves half an hour; Wednesday's is cancelled.
    r = officer.post(f"/c/{C}/calendar/move", data={
        "ref": "svov-sang@2026-11-24", "day": "2026-11-24", "start": "06:30", "csrf": csrf})
    assert r.status_code == 303, r.text
    r = officer.post(f"/c/{C}/calendar/remove", data={"ref": "svov-sang@2026-11-25",
                                                       "csrf": csrf})
    assert r.status_code == 303, r.text
    schedule = effective(site.engine, _raw(site), site.home.media_dir)
    week = {(o.day, o.title): o for o in occurrences(schedule, MONDAY, MONDAY +
                                                      timedelta(days=6))}
    assert (date(2026, 11, 24), "Tin an ninh") not in week
    assert week[(date(2026, 11, 26), "Tin an ninh")].window == "14:15–14:17"
    vov = [o for (d, t), o in week.items() if t == "Tiếp sóng VOV1 – Thời sự 6 giờ"]
    by_day = {o.day: o.window for o in vov}
    assert by_day[date(2026, 11, 24)].startswith("06:30")
    assert date(2026, 11, 25) not in by_day and date(2026, 11, 26) in by_day
    r = officer.post(f"/c/{C}/calendar/remove", data={"ref": f"c{item.id}", "csrf": csrf})
    assert r.status_code == 303
    # Today's morning relay has already aired: it can no longer be changed.
    r = officer.post(f"/c/{C}/calendar/remove", data={"ref": "svov-sang@2026-11-23",
                                                       "csrf": csrf})
    assert r.status_code == 422 and "đã phát hoặc sắp phát" in r.text
    audit = officer.get(f"/c/{C}/audit").text
    assert audit.count("Dời giờ phát") == 2 and audit.count("Bỏ khỏi lịch") == 2


# --- Bad uploads through the page ----------------------------------------------------------

def _media_files(site: WebSite) -> set[str]:
    return {p.name for p in site.home.media_dir.iterdir()} if site.home.media_dir.exists() \
        else set()


@pytest.mark.parametrize(("name", "content", "status", "message"), [
    ("tin.mp3", "Đây là văn bản, không phải âm thanh.\n" * 50, 422, "không phải âm thanh"),
    ("tin.docx", "PK\x03\x04", 422, ""),
    ("tin.mp3", "", 422, ""),
])
def test_bad_uploads_are_refused_with_a_message_and_nothing_stored(
        site: WebSite, name: str, content: str, status: int, message: str) -> None:
    officer = site.client("canbo")
    before = _media_files(site)
    r = officer.post(f"/c/{C}/bulletins", data={
        "title": "Tin hỏng", "source": "upload", "csrf": csrf_of(officer)},
        files={"audio": (name, content.encode(), "audio/mpeg")})
    assert r.status_code == status
    err = re.search(r'<p class="err" role="alert" id="error">(.*?)</p>', r.text, re.S)
    assert err and message in err.group(1)
    assert 'value="Tin hỏng"' in r.text  # what the officer typed is kept
    assert _media_files(site) == before
    with Session(site.engine) as s:
        assert s.scalar(select(func.count(Bulletin.id))) == 0


def test_an_upload_over_50_mb_is_refused_and_nothing_stored(site: WebSite) -> None:
    officer = site.client("canbo")
    before = _media_files(site)
    big = b"\xff\xfb\x90\x00" * (13 * 1024 * 1024 + 1)  # 52 MB of "MP3"
    r = officer.post(f"/c/{C}/bulletins", data={
        "title": "Tin quá lớn", "source": "upload", "csrf": csrf_of(officer)},
        files={"audio": ("lon.mp3", big, "audio/mpeg")})
    assert r.status_code == 413 and "tối đa 50 MB" in r.text
    assert _media_files(site) == before
    with Session(site.engine) as s:
        assert s.scalar(select(func.count(Bulletin.id))) == 0


def test_typed_text_becomes_a_spoken_draft(site: WebSite) -> None:
    officer = site.client("canbo")
    r = officer.post(f"/c/{C}/bulletins", data={
        "title": "Thông báo nước sạch", "source": "tts", "language": "vi",
        "text": "Kính thưa bà con, ngày mai thôn Nà Pàn tạm ngừng cấp nước sạch.",
        "chime": "true", "csrf": csrf_of(officer)})
    assert r.status_code == 303, r.text
    page = officer.get(r.headers["location"]).text
    assert "Chờ duyệt" in page and "Đọc từ văn bản" in page
    with Session(site.engine) as s:
        b = s.scalars(select(Bulletin)).one()
    assert b.status == "draft" and b.origin == "tts" and b.created_by == "canbo"
    assert 4000 < b.duration_ms < 20_000  # speech plus two chimes
    audio = officer.get(f"/c/{C}/bulletins/{b.id}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"


def test_the_emergency_page_says_when_no_headend_runs(site: WebSite) -> None:
    officer = site.client("canbo")
    r = officer.post(f"/c/{C}/emergency/confirm", data={
        "title": "Cảnh báo lũ", "text": "Lũ đang lên.", "all": "true",
        "csrf": csrf_of(officer)})
    assert r.status_code == 200 and "PHÁT NGAY" in r.text and "Toàn xã" in r.text
    r = officer.post(f"/c/{C}/emergency/send", data={
        "title": "Cảnh báo lũ", "text": "Lũ đang lên.", "csrf": csrf_of(officer)})
    assert r.status_code == 503 and "loaxa serve" in r.text
    r = officer.post(f"/c/{C}/emergency/confirm", data={
        "title": "Cảnh báo lũ", "text": "", "all": "true", "csrf": csrf_of(officer)})
    assert r.status_code == 422 and "gõ nội dung" in r.text


# --- loaxa user ----------------------------------------------------------------------------

LOAXA = str(Path(sys.executable).parent / "loaxa")


def test_loaxa_user_add_checks_roles_and_scopes(site: WebSite, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    home = str(site.home.root)

    def user(*args: str, password: str = "mot-mat-khau-dai") -> subprocess.CompletedProcess[str]:
        # `loaxa` in this process (a new one per call cost a second each), the password on
        # stdin as a script would give it.
        monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
        code, out, err = run_main(capsys, "--home", home, "user", *args, "--password-stdin")
        return subprocess.CompletedProcess(args, code or 0, out, err)

    ok = user("add", "canbo2", "--role", "officer", "--commune", C, "--name", "Nguyễn Văn A")
    assert ok.returncode == 0, ok.stderr
    assert "Đã thêm canbo2" in ok.stdout
    for args, message in ((("add", "x1", "--role", "officer"), "đúng một xã"),
                          (("add", "x2", "--role", "approver", "--commune", C, "--commune",
                            OTHER), "đúng một xã"),
                          (("add", "x3", "--role", "technician"), "cả tỉnh"),
                          (("add", "x4", "--role", "officer", "--commune", "khong-co"),
                           "Không có xã"),
                          (("add", "canbo2", "--role", "officer", "--commune", C), "Đã có")):
        bad = user(*args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    short = user("add", "x5", "--role", "admin", password="ngan")
    assert short.returncode == 2 and "ít nhất 10 ký tự" in short.stderr
    client = site.client(None)
    assert post_login(client, "canbo2", "mot-mat-khau-dai").status_code == 303
    listed = subprocess.run([LOAXA, "--home", home, "user", "list"], capture_output=True,
                            text=True, check=True).stdout  # one real `loaxa`, as typed
    assert re.search(r"canbo2\s+officer", listed)


def test_fields_after_the_file_are_read_as_browsers_send_them(site: WebSite) -> None:
    """Browsers send the form in page order: the file part, then more fields after it."""
    import io

    officer = site.client("canbo")
    wav = io.BytesIO()
    sine(440, duration=3000, volume=-20).export(wav, format="wav")
    boundary = "----loaxa-test"
    parts = [("csrf", csrf_of(officer)), ("title", "Tin có tệp trước"), ("source", "upload")]
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in parts)
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; '
             f'filename="tin.wav"\r\nContent-Type: audio/wav\r\n\r\n').encode()
    body += wav.getvalue() + b"\r\n"
    body += "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                    for k, v in (("text", ""), ("chime", "true"))).encode()
    body += f"--{boundary}--\r\n".encode()
    r = officer.post(f"/c/{C}/bulletins", content=body, headers={
        "content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 303, r.text
    with Session(site.engine) as s:
        b = s.scalars(select(Bulletin)).one()
    assert b.title == "Tin có tệp trước"
    assert b.duration_ms > 3000  # the chime asked for after the file is there


def test_a_revoked_api_token_no_longer_works(site: WebSite) -> None:
    home = str(site.home.root)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LOAXA, "--home", home, "user", *args], capture_output=True,
                              text=True, timeout=60)

    made = run("token", "kt-tinh", "--label", "HTTTN")
    assert made.returncode == 0 and "không lưu lại" in made.stderr
    token = made.stdout.strip()
    client = site.client(None)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/communes", headers=headers).status_code == 200
    revoked = run("revoke", "kt-tinh", "--label", "HTTTN")
    assert revoked.returncode == 0 and "Đã thu hồi 1 mã" in revoked.stdout
    assert client.get("/api/v1/communes", headers=headers).status_code == 401
    assert run("revoke", "khong-co").returncode == 2

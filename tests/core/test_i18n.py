"""English pages: Vietnamese by default, English after the switch (GET /lang/en, a cookie),
and back. Every Vietnamese text in the templates goes through `_(...)` and has an English
entry in headend/core/i18n.py, so nobody can add untranslated text unnoticed."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from support.audio_check import sine
from support.web_site import WebSite, make_site, post_login

from headend.core import alarms, audit, auth, i18n
from headend.core.audit import Actor
from headend.diary import reading, reasons
from headend.diary import reconciliation as commune_diary
from headend.media import bulletins
from headend.media.pipeline import prepare
from headend.web import app as web
from headend.web import context as web_context
from headend.web.pages import bulletins as web_bulletins
from headend.web.pages import calendar as web_calendar
from headend.web.pages import commune as web_commune

C = "tan-lang"
TEMPLATES = Path(web.__file__).parent / "templates"
# _("text") or _("text", "context"), in either kind of quotes.
CALL = re.compile(r"""_\(\s*(["'])(.*?)\1\s*(?:,\s*(["'])(.*?)\3\s*)?\)""")
COMMENT = re.compile(r"\{#.*?#\}", re.S)
PLACEHOLDER = re.compile(r"\{(\w*)\}")


def vietnamese(ch: str) -> bool:
    """A letter with a diacritic (ă â đ ê ô ơ ư, tone marks): not English."""
    return ch in "đĐ" or (ch.isalpha() and unicodedata.normalize("NFD", ch) != ch)


def templates() -> list[Path]:
    found = sorted(TEMPLATES.glob("*.html"))
    assert len(found) >= 16
    return found


def literals() -> dict[tuple[str, str], str]:
    """(context, Vietnamese) -> "file:line" of every _("...") in the templates."""
    out: dict[tuple[str, str], str] = {}
    for path in templates():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in CALL.finditer(line):
                out.setdefault((m.group(4) or "", m.group(2)), f"{path.name}:{n}")
    return out


def english(text: str, context: str = "") -> str | None:
    if context and (context, text) in i18n.EN_CONTEXT:
        return i18n.EN_CONTEXT[(context, text)]
    return i18n.EN.get(text)


# --- the catalog ---------------------------------------------------------------------------

def test_every_text_in_the_templates_has_english() -> None:
    found = literals()
    assert len(found) > 200
    missing = [f"{where}: {text!r}" for (ctx, text), where in found.items()
               if english(text, ctx) is None]
    assert not missing, "no English in headend/core/i18n.py EN for:\n" + "\n".join(missing)


def test_no_vietnamese_outside_translation_calls() -> None:
    hits = []
    for path in templates():
        text = COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()),
                           path.read_text(encoding="utf-8"))
        for n, line in enumerate(text.splitlines(), 1):
            rest = CALL.sub("_()", line)
            if any(vietnamese(ch) for ch in rest):
                hits.append(f"{path.name}:{n}: {line.strip()[:100]}")
    assert not hits, ("Vietnamese text outside _(\"...\") (wrap it and add its English to "
                      "headend/core/i18n.py):\n" + "\n".join(hits))


def test_the_scanner_sees_untranslated_text() -> None:
    assert vietnamese("ư") and vietnamese("Đ") and vietnamese("ộ")
    assert not any(vietnamese(ch) for ch in "Loudspeaker – 8.3 “x” °C ⚠ …")
    line = '<b>{{ _("Đạt") }}</b> Chưa đạt {{ "Lỗi" }}'
    assert [m.group(2) for m in CALL.finditer(line)] == ["Đạt"]
    assert [ch for ch in CALL.sub("_()", line) if vietnamese(ch)] == list("ưđạỗ")


def test_english_keeps_the_placeholders_and_has_no_vietnamese_words_left() -> None:
    for vi, en in [*i18n.EN.items(),
                   *((vi, en) for (_, vi), en in i18n.EN_CONTEXT.items())]:
        assert set(PLACEHOLDER.findall(vi)) == set(PLACEHOLDER.findall(en)), vi
        assert en.strip() and en != vi, vi
    # Names of Vietnam's languages keep their letters; examples stay in Vietnamese on purpose.
    allowed = {"Tày", "Nùng", "Kính thưa bà con"}
    for en in i18n.EN.values():
        rest = en
        for word in allowed:
            rest = rest.replace(word, "")
        assert not any(vietnamese(ch) for ch in rest), en


def test_words_the_pages_get_from_python_have_english() -> None:
    words: list[str] = []
    for table in (auth.ROLE_VI, audit.ACTION_VI, alarms.LABELS_VI, bulletins.KIND_VI,
                  bulletins.LANGUAGES, bulletins.ORIGIN_VI, commune_diary.OUTCOME_VI,
                  commune_diary.KIND_VI, commune_diary.TRIGGER_VI, commune_diary.LANGUAGE_VI,
                  web_calendar.KLASS_VI, web_calendar.DONE_VI, web_bulletins.DONE_VI,
                  reasons.CODES_VI, reading.NODE_STATE_VI, web_commune.STATE_LOWER_VI):
        words += [w for w in table.values() if w]
    words += [*alarms.DETAILS, alarms.DETAIL_NO_REASON, web_commune.PROVINCE_AUDIT_VI]
    words += web_calendar.WEEKDAY_VI
    words += [w for pair in web.ERROR_VI.values() for w in pair]
    words += [web.CSRF_VI, web_context.LOGIN_ERROR_VI, web_context.LOGIN_CSRF_VI, "Toàn xã",
              "Tuần này", "Tuần sau",
              "Chưa liên lạc", "chưa liên lạc", "chưa kết nối", "giờ Việt Nam",
              "Có lỗi xảy ra", "Hãy thử lại sau ít phút."]
    words += sorted({commune_diary.session_of(h * 3_600_000, ZoneInfo("UTC"))
                     for h in range(24)})
    missing = [w for w in words if english(w) is None]
    assert not missing, missing
    # A status reads differently from the button that sets it.
    assert [english(w, "status") for w in bulletins.STATUS_VI.values()] == [
        "Awaiting approval", "Approved", "Rejected"]
    assert english("Không duyệt") == "Reject"


def test_translator() -> None:
    vi, en = i18n.translator("vi"), i18n.translator("en")
    assert vi("Lịch phát") == "Lịch phát" and en("Lịch phát") == "Schedule"
    assert en("Bản tin") == "Bulletins" and en("Bản tin", "one") == "Bulletin"
    assert vi("Bản tin", "one") == "Bản tin"
    assert en("Thôn Nà Lạng") == "Thôn Nà Lạng"  # data (and anything missing) as it is
    assert i18n.translator("xx")("Lịch phát") == "Lịch phát"


# --- the pages -----------------------------------------------------------------------------

@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebSite]:
    s = make_site(tmp_path)
    yield s
    s.close()


def bulletin(site: WebSite, title: str, approve: bool | None = None) -> int:
    audio = prepare(sine(440, duration=3000, volume=-20),
                    site.home.media_dir)
    bid = bulletins.create(site.engine, C, Actor("canbo", "officer", "test"),
                           bulletins.Meta(title, "Tóm tắt"), audio, "upload", site.clock())
    if approve is not None:
        bulletins.decide(site.engine, C, bid, Actor("truongban", "approver", "test"), approve,
                         site.clock(), "" if approve else "Đọc lại cho rõ")
    return bid


def switch(client: TestClient, code: str, back: str) -> None:
    r = client.get(f"/lang/{code}", params={"next": back})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == back
    assert client.cookies.get(i18n.COOKIE) == code


def page(client: TestClient, path: str, lang: str, *present: str,
         absent: tuple[str, ...] = ()) -> str:
    r = client.get(path)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
    html = r.text
    assert f'<html lang="{lang}">' in html, path
    for text in present:
        assert text in html, f"{path} ({lang}): no {text!r}"
    for text in absent:
        assert text not in html, f"{path} ({lang}): still {text!r}"
    return html


def test_pages_are_vietnamese_by_default_with_a_switch_to_english(site: WebSite) -> None:
    client = site.client("canbo")
    html = page(client, f"/c/{C}/calendar", "vi", "<h1>Lịch phát – ", "Tiếp sóng VOV",
                "Tiêu chí 8.3", "Thứ Hai", absent=("Schedule", "VOV relay", "Monday"))
    assert ('<a class="lang" href="/lang/en?next=%2Fc%2Ftan-lang%2Fcalendar" lang="en" '
            'hreflang="en">English</a>') in html
    assert "Tiếng Việt</a>" not in html  # the switch offers only the other language
    page(client, "/login", "vi", "Tên đăng nhập", ">English</a>", absent=("Username",))
    # A phone set to English still gets Vietnamese until the officer chooses.
    r = client.get(f"/c/{C}/bulletins", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="vi">' in r.text and "Chưa có bản tin nào." in r.text


def test_english_everywhere_after_the_switch(site: WebSite) -> None:
    draft = bulletin(site, "Tin xã tuần này")
    bulletin(site, "Thông báo tiêm chủng", approve=True)
    bulletin(site, "Tin bị trả lại", approve=False)
    client = site.client("canbo")
    switch(client, "en", f"/c/{C}/calendar")

    html = page(client, f"/c/{C}/calendar", "en", "<h1>Schedule – ", "Criterion 8.3 – This week",
                "VOV relay:", "Provincial station relay", "Monday", "Sunday", "Next week →",
                "Put an approved bulletin on the schedule", "Villages that will hear it",
                "Thông báo tiêm chủng", "Add to the schedule", "quiet hours",
                "Move / remove", "Remove from the schedule",
                absent=("<h1>Lịch phát", ">Tiếp sóng VOV</span>", "Thứ Hai", "Tuần sau →", "Đạt",
                        "Bỏ khỏi lịch"))
    assert "(0:03, Vietnamese)" in html  # the language of the approved bulletin
    assert re.search(r'data-confirm="Remove “.*” on \d\d/\d\d from the schedule\?"', html)
    assert ('<a class="lang" href="/lang/vi?next=%2Fc%2Ftan-lang%2Fcalendar" lang="vi" '
            'hreflang="vi">Tiếng Việt</a>') in html

    html = page(client, f"/c/{C}/bulletins", "en", "<h1>Bulletins – ", "Make a new bulletin",
                "Reviewed by", "Awaiting approval", "Approved", "Rejected", "Local bulletin",
                "Vietnamese", absent=("Chờ duyệt", "Trạng thái", "<td>Tiếng Việt<"))
    page(client, f"/c/{C}/bulletins/new", "en", "<h1>Make a new bulletin</h1>",
         "Upload an audio file", "Record with the microphone", "Start recording",
         "editorial board head", "Create bulletin", "Local bulletin", "Notice",
         'data-unsupported="This browser cannot record; please upload a file instead."',
         absent=("Tiêu đề", "Bắt đầu ghi", "Đang ghi", "Trình duyệt"))
    page(client, f"/c/{C}/bulletins/{draft}", "en", "Tin xã tuần này – Bulletin</title>",
         '<span id="status">Awaiting approval</span>', "Type:", "Method:", "Upload",
         "Made by:", "Delete bulletin", 'data-confirm="Delete this bulletin?"',
         "← All bulletins", absent=("Trạng thái", "Xóa bản tin"))
    page(client, f"/c/{C}/emergency", "en", "Emergency broadcast – ", "natural disasters",
         "even during quiet hours", "Whole commune", "(every village)", "Continue…",
         "The broadcast server is not running", absent=("Phát khẩn cấp", "Toàn xã"))
    page(client, f"/c/{C}/nodes", "en", "<h1>Loudspeaker clusters – ",
         "Villages whose loudspeakers all work:", "offline", "last contact: never",
         absent=("mất kết nối", "lần cuối", "chưa liên lạc"))
    page(client, f"/c/{C}/audit", "en", "<h1>Audit log – ", "<th>Action</th>", "Create bulletin",
         "Commune culture officer", "Who did what",
         absent=("Nhật ký thao tác", "Đăng nhập", "Cán bộ"))
    page(client, "/communes", "en", "<h1>Communes</h1>", "<th>Province</th>",
         "Clusters online", "Broadcast diary", absent=("Các xã", "Sổ nhật ký"))
    page(client, f"/diary/{C}", "en", "<h1>Broadcast diary – ", "Download:",
         "PDF for printing", "Monthly report 11/2026 (PDF)", "0 programmes",
         "aired in at least one village", "No programmes in this period.",
         "protected against tampering", absent=("Sổ nhật ký", "Tải về", "chương trình"))
    page(client, f"/c/{C}", "en", "Radio station of xã Tân Lang", "Loudspeaker clusters online:",
         "Criterion 8.3 – week 23/11–29/11/2026", "Aired (from the diary)", "As scheduled",
         "Not met", "Offline", "Never", "Times on this page are in Vietnam time.",
         "Broadcast diary for 23/11/2026", "No broadcasts yet today.", "Village",
         absent=("Đài truyền thanh", "Mất kết nối", "Chưa liên lạc", "giờ Việt Nam",
                 "Hôm nay"))
    # The header: menu and role in English.
    html = page(client, f"/c/{C}/calendar", "en", ">Bulletins</a>", "⚠ Emergency</a>",
                ">Loudspeaker clusters</a>", ">Broadcast diary</a>", ">Audit log</a>",
                "(Commune culture officer)", ">Log out</button>")


def test_approver_and_technician_pages_in_english(site: WebSite) -> None:
    draft = bulletin(site, "Tin xã tuần này")
    approver = site.client("truongban")
    switch(approver, "en", "/")
    page(approver, f"/c/{C}/bulletins/{draft}", "en", "<h2>Approve bulletin</h2>",
         'id="approve">Approve</button>', ">Reject</button>", "Reason for rejecting",
         "(Editorial board head)", absent=("Duyệt", "Không duyệt"))
    tech = site.client("kt-tanlang")
    switch(tech, "en", "/health")
    page(tech, "/health", "en", "<h1>Loudspeaker cluster health</h1>", "Online:",
         "<th>Cluster</th>", "Last contact", "Temperature", "Firmware",
         absent=("Tình trạng cụm loa", "Hoạt động<", "Mất kết nối"))


def test_login_page_and_its_errors_in_english(site: WebSite) -> None:
    client = site.client(None)
    switch(client, "en", "/login?next=/c/tan-lang/calendar")
    html = page(client, "/login?next=/c/tan-lang/calendar", "en",
                "<h1>LoaXa – Commune radio station</h1>", "Username", "Password",
                ">Log in</button>", "Forgot your password?",
                absent=("Đăng nhập", "Mật khẩu"))
    # The switch back keeps where the officer was going after logging in.
    assert ('href="/lang/vi?next=%2Flogin%3Fnext%3D%2Fc%2Ftan-lang%2Fcalendar"' in html)
    r = post_login(client, "canbo", "sai-mat-khau-roi", next=f"/c/{C}/calendar")
    assert r.status_code == 401
    assert "Wrong username or password." in r.text and '<html lang="en">' in r.text
    assert 'href="/lang/vi?next=%2Flogin%3Fnext%3D%2Fc%2Ftan-lang%2Fcalendar"' in r.text
    # Going back to Vietnamese from there lands on the log-in form with its `next`.
    r = client.get("/lang/vi", params={"next": "/login?next=%2Fc%2Ftan-lang%2Fcalendar"})
    assert r.headers["location"] == "/login?next=%2Fc%2Ftan-lang%2Fcalendar"
    html = page(client, r.headers["location"], "vi", "Tên đăng nhập")
    assert 'name="next" value="/c/tan-lang/calendar"' in html


def test_error_pages_in_english(site: WebSite) -> None:
    client = site.client("canbo")
    switch(client, "en", "/")
    r = client.get("/c/khong-co-xa/calendar")
    assert r.status_code in (403, 404)
    assert '<html lang="en">' in r.text and "Error code" in r.text
    r = client.get("/khong-co-trang-nay")
    assert r.status_code == 404
    assert "Page not found" in r.text and "Back to the home page" in r.text
    assert "Không tìm thấy trang" not in r.text
    # Back to Vietnamese, and the same page is Vietnamese again.
    switch(client, "vi", "/khong-co-trang-nay")
    r = client.get("/khong-co-trang-nay")
    assert '<html lang="vi">' in r.text and "Không tìm thấy trang" in r.text


def test_switching_back_to_vietnamese(site: WebSite) -> None:
    client = site.client("canbo")
    vietnamese_page = client.get(f"/c/{C}/calendar").text
    switch(client, "en", f"/c/{C}/calendar")
    assert "<h1>Schedule – " in client.get(f"/c/{C}/calendar").text
    switch(client, "vi", f"/c/{C}/calendar?week=2026-11-30")
    page(client, f"/c/{C}/calendar", "vi", "<h1>Lịch phát – ", "Tiếp sóng VOV",
         absent=("Schedule", "VOV relay"))
    # Exactly the page it was before the switch.
    assert client.get(f"/c/{C}/calendar").text == vietnamese_page


def test_unknown_language_is_refused_clearly(site: WebSite) -> None:
    client = site.client("canbo")
    r = client.get("/lang/fr", params={"next": "/communes"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Unknown language “fr”" in r.text and "Không có ngôn ngữ “fr”" in r.text
    assert i18n.COOKIE not in client.cookies
    r = client.get("/lang/" + "x" * 300)
    assert r.status_code == 404 and "x" * 50 not in r.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/",
                                    "/\\evil.example", "", "javascript:alert(1)"])
def test_the_switch_only_goes_back_to_this_site(site: WebSite, target: str) -> None:
    client = site.client(None)
    r = client.get("/lang/en", params={"next": target})
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    assert client.cookies.get(i18n.COOKIE) == "en"


def test_a_forged_cookie_means_vietnamese(site: WebSite) -> None:
    client = site.client("canbo")
    client.cookies.set(i18n.COOKIE, "<script>")
    page(client, f"/c/{C}/calendar", "vi", "<h1>Lịch phát – ")

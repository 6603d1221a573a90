"""Security headers as a browser (or an attacker's page framing ours) meets them: on every
kind of response — pages, the JSON API, redirects, error pages in Vietnamese, /media, static
files, the API docs, even a crash — a Content-Security-Policy that allows no inline script
or style and no framing, nosniff and a referrer policy. The pages themselves carry no inline
script, style= or on...= attribute, so the policy costs them nothing; a real Chromium loads
each page and /docs (offline: every other host refused) without one violation."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session
from support.audio_check import sine
from support.web_site import PASSWORD, WebSite, make_site, served_over_http

from headend.core.audit import Actor
from headend.core.models import Bulletin
from headend.media import bulletins
from headend.media.pipeline import prepare
from headend.nodes.gateway import Gateway

C = "tan-lang"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSite]:
    s = make_site(tmp_path_factory.mktemp("headers"))

    @s.app.get("/c/{commune_id}/boom")
    def boom(commune_id: str) -> None:  # a bug somewhere: the 500 still has the headers
        raise RuntimeError("boom")

    @s.app.get("/api/v1/boom")
    def api_boom() -> None:
        raise RuntimeError("boom")

    yield s
    s.close()


@pytest.fixture(scope="module")
def bulletin(site: WebSite) -> tuple[int, str]:
    audio = prepare(sine(440, duration=2000, volume=-20), site.home.media_dir)
    bid = bulletins.create(site.engine, C, Actor("canbo", "officer", "test"),
                           bulletins.Meta("Tin thử", "Tóm tắt"), audio, "upload", site.clock())
    with Session(site.engine) as s:
        files = json.loads(s.get(Bulletin, bid).media)  # type: ignore[union-attr]
    return bid, str(sorted(files.values())[0])


def check(r: httpx.Response) -> None:
    h = r.headers
    where = f"{r.request.method} {r.request.url.path} -> {r.status_code}"
    csp = {d.split()[0]: d.split()[1:] for d in h["content-security-policy"].split("; ")}
    assert csp["default-src"] == ["'self'"], where
    assert csp["script-src"] == ["'self'"], where  # no 'unsafe-inline', no 'unsafe-eval'
    assert csp["style-src"] == ["'self'"], where
    assert csp["frame-ancestors"] == ["'none'"], where
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], where
    assert h["x-frame-options"] == "DENY", where
    assert h["x-content-type-options"] == "nosniff", where
    assert h["referrer-policy"] == "same-origin", where
    assert len(h.get_list("content-security-policy")) == 1, where


def test_every_kind_of_response_carries_the_headers(site: WebSite,
                                                     bulletin: tuple[int, str]) -> None:
    _, name = bulletin
    nobody, officer, other = site.client(None), site.client("canbo"), site.client("canbo-khac")
    token = {"Authorization": f"Bearer {site.token('canbo')}"}
    node_url = Gateway(site.engine, 0, "").prepare(
        ["tl-nalang-1"], "play", {"url": f"http://h/media/{name}", "title": "x"})[0].payload
    media_path = "/media/" + json.loads(node_url)["args"]["url"].split("/media/", 1)[1]
    responses = {
        "log-in page": (nobody.get("/login"), 200),
        "page": (officer.get(f"/c/{C}"), 200),
        "redirect to log in": (nobody.get(f"/c/{C}/calendar"), 303),
        "redirect after a choice": (nobody.get("/lang/vi?next=/login"), 303),
        "CSRF refused": (officer.post("/logout", data={"csrf": "sai"}), 403),
        "log-in CSRF refused": (nobody.post("/login", data={"username": "canbo",
                                                            "password": PASSWORD}), 403),
        "forbidden page": (other.get(f"/c/{C}"), 403),
        "missing page": (officer.get("/khong-co-trang-nay"), 404),
        "bad query": (officer.get(f"/c/{C}/calendar?week=9999-12-31"), 400),
        "wrong method": (officer.put(f"/c/{C}"), 405),
        "page crash": (officer.get(f"/c/{C}/boom"), 500),
        "API": (nobody.get("/api/v1/communes", headers=token), 200),
        "API without login": (nobody.get("/api/v1/communes"), 401),
        "API bad query": (nobody.get("/api/v1/asrun?day=0001-01-01", headers=token), 400),
        "API forbidden": (nobody.get("/api/v1/communes/khong-co/nodes", headers=token), 403),
        "API crash": (nobody.get("/api/v1/boom", headers=token), 500),
        "media for a node": (nobody.get(media_path), 200),
        "media for its commune's user": (officer.get(f"/media/{name}"), 200),
        "media refused": (nobody.get(f"/media/{name}"), 404),
        "media missing": (nobody.get("/media/khong-co.wav"), 404),
        "stylesheet": (nobody.get("/static/loaxa.css"), 200),
        "static missing": (nobody.get("/static/khong-co.js"), 404),
        "API docs": (officer.get("/docs"), 200),
        "API docs' script": (officer.get("/docs/assets/swagger-ui-bundle.js"), 200),
        "OpenAPI": (officer.get("/openapi.json"), 200),
        "health check": (nobody.get("/healthz"), 200),
    }
    for what, (r, status) in responses.items():
        assert r.status_code == status, (what, r.status_code, r.text[:200])
        check(r)
    # The crash says so in Vietnamese, and tells nothing of the code.
    for what in ("page crash", "API crash"):
        text = responses[what][0].text
        assert "Máy chủ gặp lỗi" in text and "boom" not in text and "Traceback" not in text


def test_pages_carry_no_inline_script_or_style(site: WebSite,
                                               bulletin: tuple[int, str]) -> None:
    bid, _ = bulletin
    admin = site.client("admin")
    pages = ["/communes", f"/c/{C}", f"/c/{C}/calendar", f"/c/{C}/bulletins",
             f"/c/{C}/bulletins/new", f"/c/{C}/bulletins/{bid}", f"/c/{C}/emergency",
             f"/c/{C}/nodes", f"/diary/{C}", f"/c/{C}/audit", "/health", "/audit", "/docs",
             "/khong-co"]
    htmls = {p: admin.get(p).text for p in pages}
    htmls["/login"] = site.client(None).get("/login").text
    for path, html in htmls.items():
        assert "<html" in html, path
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), f"inline script on {path}"
        assert "<style" not in html, f"inline stylesheet on {path}"
        assert not re.search(r"\sstyle=", html), f"style= attribute on {path}"
        assert not re.search(r"\son[a-z]+=", html), f"event handler attribute on {path}"
        assert not re.search(r"(src|href)=\"(https?:)?//", html), f"another host on {path}"


@pytest.fixture(scope="module")
def served(site: WebSite) -> Iterator[str]:
    with served_over_http(site.app) as base:
        yield base


# Every violation the page meets, as the browser reports it to the page.
WATCH_CSP = """window.__csp = [];
document.addEventListener("securitypolicyviolation",
  e => window.__csp.push(e.violatedDirective + " " + e.blockedURI));"""


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Chromium")
def test_chromium_meets_no_violation_and_docs_work_offline(
        served: str, bulletin: tuple[int, str]) -> None:
    from playwright.sync_api import sync_playwright

    bid, _ = bulletin
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context()
            context.add_init_script(WATCH_CSP)
            elsewhere: list[str] = []

            def offline(route: object) -> None:  # the commune's network: no CDN
                elsewhere.append(route.request.url)  # type: ignore[attr-defined]
                route.abort()  # type: ignore[attr-defined]

            context.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), offline)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{served}/login")
            page.fill("#username", "admin")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login" not in url)
            for path in ["/communes", f"/c/{C}", f"/c/{C}/calendar", f"/c/{C}/bulletins",
                         f"/c/{C}/bulletins/new", f"/c/{C}/bulletins/{bid}",
                         f"/c/{C}/emergency", f"/c/{C}/nodes", f"/diary/{C}", "/health"]:
                page.goto(f"{served}{path}")
                # The stylesheet applied (it is a file now, not an inline <style>).
                assert page.evaluate("getComputedStyle(document.body).backgroundColor") == \
                    "rgb(246, 247, 249)", path
                assert page.evaluate("window.__csp") == [], path
            # A form that undoes something still asks first (data-confirm, confirm.js).
            page.goto(f"{served}/c/{C}/bulletins/{bid}")
            asked: list[str] = []
            page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
            page.click("text=Xóa bản tin")
            assert asked == ["Xóa bản tin này?"]
            assert page.url.endswith(f"/bulletins/{bid}")  # dismissed: nothing was sent
            # The API docs render from the app's own files.
            page.goto(f"{served}/docs")
            page.wait_for_selector(".opblock", timeout=20_000)
            assert page.locator(".opblock").count() > 10
            assert page.evaluate("window.__csp") == []
            assert elsewhere == [] and errors == []
        finally:
            browser.close()


def test_the_docs_and_their_description_are_behind_the_login(site: WebSite) -> None:
    nobody = site.client(None)
    for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui-bundle.js",
                 "/docs/assets/swagger-ui.css"):
        r = nobody.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    for gone in ("/redoc", "/docs/oauth2-redirect"):
        assert nobody.get(gone).status_code == 404
    # An API token is for /api/ only: it does not open the docs either.
    r = nobody.get("/openapi.json", headers={"Authorization": f"Bearer {site.token('admin')}"})
    assert r.status_code == 303
    officer = site.client("canbo")
    page = officer.get("/docs").text
    assert "cdn" not in page.lower() and "/docs/assets/swagger-ui-bundle.js" in page
    assert officer.get("/openapi.json").json()["info"]["title"] == "LoaXa"
    for bad in ("redoc.standalone.js", "..%2F__init__.py", "core.py", "%2e%2e"):
        assert officer.get(f"/docs/assets/{bad}").status_code == 404, bad
    js = officer.get("/docs/assets/swagger-ui-bundle.js")
    assert js.headers["content-type"].startswith("text/javascript") and len(js.content) > 10**6

"""The log-in limiter as an attacker meets it: it counts the peer's real address (an
X-Forwarded-For header is not believed unless a trusted proxy is configured), backs off per
(name, address) so wrong passwords typed elsewhere never lock the real user out, stops one
address trying many names, and forgets what is old; and the log-in form carries a CSRF token
that another site cannot send."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.web_site import (
    PASSWORD,
    WebSite,
    login_csrf,
    make_site,
    post_login,
    served_over_http,
)

from headend.core.auth import LoginLimiter
from headend.core.models import AuditEntry
from headend.web.context import TRUSTED_PROXY_ENV, proxy_options

WINDOW = 15 * 60_000


def test_wrong_passwords_elsewhere_do_not_lock_the_real_user_out() -> None:
    limiter = LoginLimiter()
    for _ in range(5):
        limiter.failed("203.0.113.9", "canbo", 1000)
    assert limiter.wait_ms("203.0.113.9", "canbo", 1000) == WINDOW  # the attacker waits
    assert limiter.wait_ms("198.51.100.7", "canbo", 1000) == 0  # the officer logs in
    assert limiter.wait_ms("203.0.113.9", "truongban", 1000) == 0


def test_one_address_trying_many_names_is_stopped() -> None:
    limiter = LoginLimiter()
    for i in range(20):
        limiter.failed("203.0.113.9", f"user{i}", 1000)
    assert limiter.wait_ms("203.0.113.9", "someone-else", 1000) > 0
    assert limiter.wait_ms("198.51.100.7", "someone-else", 1000) == 0


def test_the_limiter_forgets_what_is_old() -> None:
    limiter = LoginLimiter(prune_every=10)
    for i in range(5000):  # a spray of names from many addresses
        limiter.failed(f"10.0.{i // 250}.{i % 250}", f"name{i}", 1000)
    assert len(limiter) > 5000
    later = 1000 + WINDOW + 1
    for _ in range(10):
        limiter.wait_ms("10.9.9.9", "x", later)
    assert len(limiter) <= 2


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WebSite, str]]:
    monkeypatch.delenv(TRUSTED_PROXY_ENV, raising=False)  # no proxy configured
    site = make_site(tmp_path)
    try:
        with served_over_http(site.app, **proxy_options()) as base:
            yield site, base
    finally:
        site.close()


def login(base: str, username: str, password: str, forwarded: str) -> int:
    # A browser's way: the form (and its CSRF cookie) first, then the POST.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(f"{base}/login", timeout=10) as r:
        m = re.search(r'name="csrf" value="([^"]+)"', r.read().decode())
    assert m, "no CSRF token on the log-in form"
    data = urllib.parse.urlencode({"username": username, "password": password,
                                   "csrf": m.group(1)}).encode()
    req = urllib.request.Request(f"{base}/login", data=data,
                                 headers={"X-Forwarded-For": forwarded})
    try:
        with opener.open(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_a_forged_forwarded_for_is_not_believed(served: tuple[WebSite, str]) -> None:
    site, base = served
    # Five wrong passwords, each claiming another address: counted against the real peer.
    codes = [login(base, "canbo", "sai-mat-khau", f"198.51.100.{i}") for i in range(6)]
    assert codes == [401] * 5 + [429]
    with Session(site.engine) as s:
        ips = set(s.scalars(select(AuditEntry.ip).where(AuditEntry.action == "login_failed")))
    assert ips == {"127.0.0.1"}


def test_a_trusted_proxy_is_believed_only_when_configured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUSTED_PROXY_ENV, raising=False)
    assert proxy_options() == {"proxy_headers": False}
    monkeypatch.setenv(TRUSTED_PROXY_ENV, "10.0.0.2")
    assert proxy_options() == {"proxy_headers": True, "forwarded_allow_ips": "10.0.0.2"}


# --- The log-in form's CSRF token ------------------------------------------------------------

@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebSite]:
    s = make_site(tmp_path)
    yield s
    s.close()


def refused_login(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert "Trang đăng nhập đã cũ hoặc không đến từ LoaXa" in r.text
    assert "loaxa_session" not in r.headers.get("set-cookie", "")


def test_a_login_posted_from_another_site_is_refused(site: WebSite) -> None:
    """Login CSRF: another site's page posts the attacker's name and password into the
    victim's browser, so the officer would work (and upload) in the attacker's account."""
    victim = site.client(None)
    refused_login(victim.post("/login", data={"username": "canbo", "password": PASSWORD}))
    # The attacker's own form token (from his own visit) in the victim's browser.
    attacker = TestClient(site.app, raise_server_exceptions=False, follow_redirects=False)
    stolen = login_csrf(attacker)
    login_csrf(victim)  # the victim has a token cookie of her own
    for token in (stolen, "", "x", stolen[:-1], "A" * 43, "' OR 1=1 --", "é" * 40):
        refused_login(victim.post("/login", data={"username": "canbo", "password": PASSWORD,
                                                  "csrf": token}))
    # A token without its cookie (the form replayed from elsewhere) is no better.
    cookieless = TestClient(site.app, raise_server_exceptions=False, follow_redirects=False)
    refused_login(cookieless.post("/login", data={"username": "canbo", "password": PASSWORD,
                                                  "csrf": stolen}))
    attacker.close()
    cookieless.close()


def test_refused_logins_count_nothing_and_the_site_stays_up(site: WebSite) -> None:
    client = site.client(None)
    for i in range(40):
        refused_login(client.post("/login", data={"username": "canbo", "password": f"sai{i}"}))
    assert client.get("/healthz").json() == {"status": "ok"}
    with Session(site.engine) as s:  # not taken for failed passwords: nothing was tried
        assert not s.scalars(select(AuditEntry).where(
            AuditEntry.action == "login_failed")).all()
    # The real officer, with the page's own token, logs in at once.
    r = post_login(client, "canbo")
    assert r.status_code == 303 and "loaxa_session" in client.cookies


def test_the_login_form_carries_its_token_and_its_cookie_stays_on_login(
        site: WebSite) -> None:
    client = site.client(None)
    r = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert token and len(token.group(1)) >= 32
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/login" in cookie
    # A second tab gets the same token, so either tab's form still logs in.
    assert login_csrf(client) == token.group(1)


def test_a_session_form_with_a_strange_token_is_refused_not_crashed(site: WebSite) -> None:
    officer = site.client("canbo")
    for token in ("é" * 40, "\x00", "x" * 5000):
        r = officer.post("/logout", data={"csrf": token})
        assert r.status_code == 403 and "Biểu mẫu đã cũ" in r.text
    assert officer.get("/c/tan-lang").status_code == 200  # still logged in

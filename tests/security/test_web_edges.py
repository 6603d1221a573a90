"""The log-in limiter as an attacker meets it: it counts the peer's real address (an
X-Forwarded-For header is not believed unless a trusted proxy is configured), backs off per
(name, address) so wrong passwords typed elsewhere never lock the real user out, stops one
address trying many names, and forgets what is old."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.web_site import WebSite, make_site

from headend.core.auth import LoginLimiter
from headend.core.models import AuditEntry
from headend.nodes.broker import find_free_port
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
    port = find_free_port()
    server = uvicorn.Server(uvicorn.Config(site.app, host="127.0.0.1", port=port,
                                           log_level="warning", **proxy_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    try:
        yield site, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        site.close()


def login(base: str, username: str, password: str, forwarded: str) -> int:
    data = urllib.parse.urlencode({"username": username, "password": password}).encode()
    req = urllib.request.Request(f"{base}/login", data=data,
                                 headers={"X-Forwarded-For": forwarded})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
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

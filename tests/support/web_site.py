"""A web app over a real SQLite database with two communes and a user of every role, for the
page, API and role tests (no broker, no nodes)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from headend.communes.files import load_commune
from headend.communes.registry import provision_commune
from headend.core import auth
from headend.core.db import open_db
from headend.core.home import Home
from headend.planning.templates import commune_from_template

REPO = Path(__file__).resolve().parents[2]
TAN_LANG = REPO / "schedules" / "tan-lang.toml"
OTHER = "xa-khac"  # the second commune: nobody of Tân Lang may see it
PASSWORD = "mat-khau-thu-nghiem"

# username -> (role, communes)
USERS: dict[str, tuple[str, list[str]]] = {
    "admin": ("admin", ["*"]),
    "kt-tinh": ("technician", ["*"]),
    "kt-tanlang": ("technician", ["tan-lang"]),
    "canbo": ("officer", ["tan-lang"]),
    "truongban": ("approver", ["tan-lang"]),
    "canbo-khac": ("officer", [OTHER]),
    "truongban-khac": ("approver", [OTHER]),
}


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


# Monday 23/11/2026 08:00 in Hà Nội.
NOW_MS = utc_ms(2026, 11, 23, 1, 0)


@dataclass
class Clock:
    ms: int = NOW_MS

    def __call__(self) -> int:
        return self.ms


@dataclass
class WebSite:
    home: Home
    engine: Engine
    app: FastAPI
    clock: Clock
    schedules: dict[str, Path]
    clients: dict[str, TestClient] = field(default_factory=dict)

    def client(self, username: str | None) -> TestClient:
        """A client logged in as `username` (None: nobody)."""
        key = username or ""
        if key not in self.clients:
            c = TestClient(self.app, raise_server_exceptions=False, follow_redirects=False)
            if username is not None:
                login(c, username)
            self.clients[key] = c
        return self.clients[key]

    def token(self, username: str, scopes: tuple[str, ...] = (auth.READ, auth.IMPORT)) -> str:
        return auth.new_token(self.engine, username, "test", self.clock(), scopes)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.engine.dispose()


def login_csrf(client: httpx.Client) -> str:
    """The log-in form's CSRF token (its cookie stays in the client), as a browser gets it."""
    html = client.get("/login").text
    m = re.search(r'<input type="hidden" name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token on the log-in form"
    return m.group(1)


def post_login(client: httpx.Client, username: str, password: str = PASSWORD,
               **more: str) -> httpx.Response:
    """The log-in form as a browser sends it: its CSRF token first, then the POST."""
    data = {"username": username, "password": password, "csrf": login_csrf(client), **more}
    return client.post("/login", data=data, follow_redirects=False)


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    r = post_login(client, username, password)
    assert r.status_code == 303, r.text
    assert "loaxa_session" in client.cookies


def csrf_of(client: TestClient, path: str = "/communes") -> str:
    """The session's CSRF token, as every page carries it."""
    html = client.get(path).text
    m = re.search(r'<meta name="csrf" content="([^"]+)"', html)
    assert m, f"no CSRF token on {path}"
    return m.group(1)


def make_site(tmp_path: Path, **app_args: object) -> WebSite:
    from headend.web.app import make_app

    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    slug, text = commune_from_template("Xã Khác")
    assert slug == OTHER
    other = tmp_path / f"{OTHER}.toml"
    other.write_text(text, encoding="utf-8")
    tan_lang = tmp_path / "tan-lang.toml"
    tan_lang.write_text(TAN_LANG.read_text(encoding="utf-8"), encoding="utf-8")
    schedules = {"tan-lang": tan_lang, OTHER: other}
    for path in schedules.values():
        provision_commune(engine, home, load_commune(path))
    clock = Clock()
    for username, (role, communes) in USERS.items():
        auth.add_user(engine, username, PASSWORD, role, communes, clock(), name=username)
    app = make_app(engine, home.media_dir, clock, schedule_paths=schedules,
                   **app_args)  # type: ignore[arg-type]
    return WebSite(home, engine, app, clock, schedules)


def app_routes(app: FastAPI) -> list[tuple[str, set[str]]]:
    """(path, methods) of every route, included routers flattened (FastAPI 0.165 keeps them as
    lazily resolved entries in app.routes)."""
    from fastapi.routing import iter_route_contexts

    return [(str(rc.path), set(rc.methods or {"*"})) for rc in iter_route_contexts(app.routes)]


@contextmanager
def served_over_http(app: FastAPI, **config: object) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port in a thread (what a browser or a
    proxy talks to); yields its base URL, stops it after."""
    from headend.nodes.broker import find_free_port

    port = find_free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", **config))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)

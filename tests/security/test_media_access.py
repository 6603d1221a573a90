"""/media as an attacker meets it: a bulletin's file (a draft, rejected, any) only for the
users of its commune and the province's admin, and for a node that shows the token the
headend put in the URL it gave that node (its plan, its commands). Anyone else, a guessed or
borrowed token, a revoked node: the same 404 as a file that does not exist."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from support.audio_check import sine
from support.web_site import OTHER, WebSite, make_site

from headend.core.audit import Actor
from headend.core.models import Bulletin, Node
from headend.media import access, bulletins
from headend.media.library import MediaLibrary
from headend.media.pipeline import prepare
from headend.media.store import store_media
from headend.nodes.gateway import Gateway
from headend.planning import wire
from headend.planning.publishing import PlanPublisher

C = "tan-lang"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebSite]:
    s = make_site(tmp_path)
    yield s
    s.close()


def draft(site: WebSite, commune: str = C, hz: int = 440) -> str:
    """A draft bulletin of `commune` (nobody approved it); the name of one of its files
    (one per node profile)."""
    audio = prepare(sine(hz, duration=3000, volume=-20), site.home.media_dir)
    bid = bulletins.create(site.engine, commune, Actor("canbo", "officer", "test"),
                           bulletins.Meta("Tin nháp", "Tóm tắt"), audio, "upload", site.clock())
    with Session(site.engine) as s:
        files = json.loads(s.get(Bulletin, bid).media)  # type: ignore[union-attr]
    return str(sorted(files.values())[0])


def nodes_of(site: WebSite, commune: str) -> list[str]:
    with Session(site.engine) as s:
        return sorted(s.scalars(select(Node.id).where(Node.id.startswith(
            "tl-" if commune == C else ""))))


def missing(site: WebSite, client: httpx.Client, url: str) -> None:
    """Refused exactly as a file that does not exist is."""
    r = client.get(url)
    nothing = client.get("/media/khong-co-tep-nay.wav")
    assert (r.status_code, r.content) == (404, nothing.content), url
    assert len(r.content) < 100


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def command_url(site: WebSite, node_id: str, name: str) -> str:
    """The URL a node gets in a play command, as the gateway signs it."""
    gw = Gateway(site.engine, 0, "")
    [cmd] = gw.prepare([node_id], "play", {"url": f"http://127.0.0.1:8080/media/{name}",
                                           "title": "Thử"})
    return str(json.loads(cmd.payload)["args"]["url"])


def test_people_hear_the_files_of_their_communes_only(site: WebSite) -> None:
    name = draft(site)
    url = f"/media/{name}"
    for user in ("canbo", "truongban", "kt-tanlang", "kt-tinh", "admin"):
        r = site.client(user).get(url)
        assert r.status_code == 200, user  # drafts too
        assert r.content == (site.home.media_dir / name).read_bytes()
    for user in ("canbo-khac", "truongban-khac", None):
        missing(site, site.client(user), url)
    # An API token is for /api/ only: not a way around the login either.
    token = site.token("admin")
    missing(site, httpx.Client(transport=site.client(None)._transport,
                               base_url="http://testserver",
                               headers={"Authorization": f"Bearer {token}"}), url)
    # A file that is no bulletin (a schedule file, the fallback, a firmware image): admin only.
    stored = store_media(site.home.media_dir, b"RIFF" + b"\0" * 100, ".wav")
    assert site.client("admin").get(f"/media/{stored.name}").status_code == 200
    for user in ("canbo", "kt-tinh", None):
        missing(site, site.client(user), f"/media/{stored.name}")


def test_a_node_fetches_what_its_commands_name(site: WebSite) -> None:
    name = draft(site)
    node, other = nodes_of(site, C)[:2]
    url = command_url(site, node, name)
    q = parse_qs(urlsplit(url).query)
    assert q["n"] == [node] and len(q["t"][0]) == 32
    anyone = site.client(None)
    r = anyone.get(path_of(url))
    assert r.status_code == 200 and r.content == (site.home.media_dir / name).read_bytes()
    # The as-run record the node sends back names the URL without its token.
    assert access.without_token(url) == f"http://127.0.0.1:8080/media/{name}"
    token = q["t"][0]
    other_file = draft(site, OTHER, hz=550)  # another sound: another file
    assert other_file != name
    for bad in [
        f"/media/{name}",                                   # no token
        f"/media/{name}?n={node}",                          # half of it
        f"/media/{name}?t={token}",
        f"/media/{name}?n={other}&t={token}",               # another node's
        f"/media/{other_file}?n={node}&t={token}",          # another file's
        f"/media/{name}?n={node}&t={token.upper()}",
        f"/media/{name}?n={node}&t={token[:-1]}",
        f"/media/{name}?n={node}&t={token[:-1]}0" if token[-1] != "0" else
        f"/media/{name}?n={node}&t={token[:-1]}1",
        f"/media/{name}?n={node}&t={'0' * 32}",
        f"/media/{name}?n={node}&t={token}{token}",
        f"/media/{name}?n=khong-co&t={token}",               # unknown node
        f"/media/{name}?n=headend&t={token}",
        f"/media/{name}?n=../{node}&t={token}",
        f"/media/{name}?n={node}&t={'é' * 32}",
        f"/media/{name}?n={node}&t={'x' * 10_000}",
    ]:
        missing(site, anyone, bad)
    # The node's token does not open a page either.
    assert anyone.get(f"/c/{C}?n={node}&t={token}").status_code == 303


def test_a_node_fetches_what_its_plan_names_and_a_revoked_node_nothing(
        site: WebSite) -> None:
    library = MediaLibrary(site.home.media_dir, "http://127.0.0.1:8080")
    fallback = library.add_bytes(b"RIFF" + b"\1" * 500)

    async def nothing(node_id: str, payload: bytes) -> None:
        return None

    publisher = PlanPublisher(site.engine, site.schedules[C], library, nothing, site.clock,
                              fallback=fallback)
    plans = {p.node_id: json.loads(p.payload) for p in publisher.build(site.clock())}
    node = sorted(plans)[0]
    url = plans[node]["fallback"]["url"]
    assert len(url) <= len(wire._SIZING_MEDIA.url)  # the plan budget counts the token
    anyone = site.client(None)
    assert anyone.get(path_of(url)).status_code == 200
    # Another node's plan names the same file with its own token.
    second = sorted(plans)[1]
    assert plans[second]["fallback"]["url"] != url
    assert anyone.get(path_of(plans[second]["fallback"]["url"])).status_code == 200
    # A revoked node (its key removed) fetches nothing, however right its token was.
    with Session(site.engine) as s, s.begin():
        s.execute(update(Node).where(Node.id == node).values(key=""))
    missing(site, anyone, path_of(url))
    assert anyone.get(path_of(plans[second]["fallback"]["url"])).status_code == 200


def test_the_longest_node_id_still_fits_the_plan_budget() -> None:
    url = access.node_url("https://" + "h" * 60 + "/media/" + "0" * 16 + ".wav", "n" * 40,
                          "ab" * 32)
    assert url.endswith(url[-len(access.LONGEST_QUERY):])
    assert len(url) == len(wire._SIZING_MEDIA.url)
    # Only /media URLs get a token: a relay stream or a URL with a query is left alone.
    for other in ("http://vov.example/live", "http://h/media/x.wav?a=1", "http://h/other/x"):
        assert access.node_url(other, "n1", "ab" * 32) == other


def test_guessing_does_not_crash_the_media_server(site: WebSite) -> None:
    name = draft(site)

    async def many() -> list[int]:
        transport = httpx.ASGITransport(app=site.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            rs = await asyncio.gather(*(c.get(f"/media/{name}?n=tl-nalang-1&t={i:032x}")
                                        for i in range(200)))
        return [r.status_code for r in rs]

    assert set(asyncio.run(many())) == {404}
    assert site.client("canbo").get(f"/media/{name}").status_code == 200

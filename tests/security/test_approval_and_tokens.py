"""Approval cannot be bypassed: the emergency page sends text, files or approved bulletins,
never a draft or a rejected one; API tokens work only on /api/*, carry scopes (read, import)
and never approve; whoever made or imported a bulletin cannot approve it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.web_site import WebSite, csrf_of, make_site

from headend.core import auth
from headend.core.models import Broadcast, Bulletin

HT = "/api/httttn/v1"
TL = "tan-lang"
SENT: list[Any] = []


async def emergency(*args: Any, **kwargs: Any) -> int:
    SENT.append(args)  # what would reach the loudspeakers
    return 1


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSite]:
    s = make_site(tmp_path_factory.mktemp("approval"), emergency=emergency)
    try:
        yield s
    finally:
        s.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def imported(site: WebSite, token: str, ext_id: str) -> Any:
    return site.client(None).post(f"{HT}/xa/{TL}/ban-tin", headers=bearer(token), json={
        "maBanTin": ext_id, "tieuDe": f"Tin {ext_id}", "noiDung": "Kính thưa bà con."})


def bulletin(site: WebSite, ext_id: str) -> Bulletin:
    with Session(site.engine) as s:
        b = s.scalars(select(Bulletin).where(Bulletin.external_id == ext_id)).one()
        s.expunge(b)
        return b


def decide(site: WebSite, username: str, b: Bulletin, approve: bool) -> Any:
    c = site.client(username)
    return c.post(f"/c/{TL}/bulletins/{b.id}/{'approve' if approve else 'reject'}",
                  data={"csrf": csrf_of(c), "note": "Sai địa điểm."})


def test_a_read_token_cannot_import_and_no_token_reaches_the_pages(site: WebSite) -> None:
    read = site.token("admin", (auth.READ,))
    r = imported(site, read, "T-READ")
    assert r.status_code == 403, r.text
    assert site.client(None).get(f"/api/v1/communes/{TL}/criterion",
                                 headers=bearer(read)).status_code == 200
    # The pages and their forms need a person: a token there is nobody.
    for method, path in (("GET", "/communes"), ("GET", f"/c/{TL}/emergency"),
                         ("POST", f"/c/{TL}/emergency/confirm")):
        r = site.client(None).request(method, path, headers=bearer(read))
        assert r.status_code in (303, 401), (path, r.status_code)
        assert r.status_code == 401 or r.headers["location"].startswith("/login")


def test_an_import_token_imports_but_nobody_approves_with_it(site: WebSite) -> None:
    token = site.token("admin", (auth.IMPORT,))
    assert imported(site, token, "T-IMPORT").status_code == 201
    b = bulletin(site, "T-IMPORT")
    assert (b.status, b.created_by) == ("draft", "admin")
    # The approve form with the token, no session and no CSRF: not even seen as a user.
    r = site.client(None).post(f"/c/{TL}/bulletins/{b.id}/approve", headers=bearer(token))
    assert r.status_code in (303, 401)
    assert bulletin(site, "T-IMPORT").status == "draft"
    # The person behind the token, logged in, still may not approve what they imported.
    r = decide(site, "admin", b, approve=True)
    assert r.status_code == 422 and "không tự duyệt" in r.text
    assert bulletin(site, "T-IMPORT").status == "draft"
    # Someone else may.
    assert decide(site, "truongban", b, approve=True).status_code == 303
    assert bulletin(site, "T-IMPORT").status == "approved"


@pytest.mark.parametrize("fate", ["draft", "rejected"])
def test_the_emergency_page_never_sends_an_unapproved_bulletin(site: WebSite,
                                                               fate: str) -> None:
    ext = f"T-{fate.upper()}"
    assert imported(site, site.token("admin", (auth.IMPORT,)), ext).status_code == 201
    b = bulletin(site, ext)
    if fate == "rejected":
        assert decide(site, "truongban", b, approve=False).status_code == 303
        assert bulletin(site, ext).status == "rejected"
    officer = site.client("canbo")
    page = officer.get(f"/c/{TL}/emergency")
    assert page.status_code == 200 and f'value="{b.id}"' not in page.text
    form = {"title": "Khẩn", "bulletin": str(b.id), "all": "1", "csrf": csrf_of(officer)}
    r = officer.post(f"/c/{TL}/emergency/confirm", data=form)
    assert r.status_code == 422 and "chưa được duyệt" in r.text
    r = officer.post(f"/c/{TL}/emergency/send", data={**form, "key": "k" * 24})
    assert r.status_code == 422 and "chưa được duyệt" in r.text
    assert SENT == []
    with Session(site.engine) as s:
        assert s.scalars(select(Broadcast)).all() == []


def test_token_scopes_are_checked_when_made(site: WebSite) -> None:
    with pytest.raises(auth.AuthError):
        auth.new_token(site.engine, "admin", "x", 0, ("approve",))
    with pytest.raises(auth.AuthError):
        auth.new_token(site.engine, "admin", "x", 0, ())

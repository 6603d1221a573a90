"""Every query value a page or the API reads, tried as an attacker would: out of range
(a week in year 9999, year 1, a huge `before=`), impossible (2026-02-31), not a number, not
ASCII, very long. Each gets a 400 with a Vietnamese message (an HTML page for people, JSON on
/api/), never a 500 nor pydantic's English 422; an id in a page's path that no row can have
is a 404. The table below must name every query parameter the app has, so a new one cannot
be added untested."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator

import pytest
from fastapi.routing import iter_route_contexts
from support.web_site import WebSite, make_site

C = "tan-lang"
HT = "/api/httttn/v1"

DAYS = ["9999-12-31", "9999-12-27", "0001-01-01", "1999-12-31", "2100-01-01", "0000-01-01",
        "2026-02-31", "2026-02-29", "2026-13-01", "2026-00-10", "2026-11-31", "10000-01-01",
        "-2026-11-23", "23/11/2026", "2026/11/23", "hom-nay", "-1", "99999999999999999999",
        "2026-11-23\x00", "２０２６-１１-２３", "2026-11-23' OR '1'='1", "9" * 5000]
MONTHS = ["9999-12", "0001-01", "1999-12", "2100-01", "2026-13", "2026-00", "2026-1", "26-11",
          "2026-11-01", " 2026-11", "2026 -11", "+2026-11", "２０２６-１１", "-2026-11", "abc",
          "99999999999999999999-01", "2026-11\x00", "9" * 5000]
IDS = ["-1", "0", "99999999999999999999", "9223372036854775808", "-9223372036854775809",
       "1e9", "1.5", "0x10", "NaN", "inf", "abc", "١٢", "9" * 5000]
BOOLS = ["maybe", "2", "-1", "null", "tru", "9" * 5000]
STATUSES = ["sent", "DRAFT", "' OR 1=1 --", "../approved", "\x00", "x" * 5000]
FORMATS = ["exe", "../pdf", "PDF", "pdf\x00", "html", "x" * 5000]

# (path, parameter) -> the values that must be refused with a 400.
BAD: dict[tuple[str, str], list[str]] = {
    (f"/c/{C}", "day"): DAYS,
    (f"/c/{C}/calendar", "week"): DAYS,
    (f"/diary/{C}", "first"): DAYS,
    (f"/diary/{C}", "last"): DAYS,
    (f"/diary/{C}/export", "first"): DAYS,
    (f"/diary/{C}/export", "last"): DAYS,
    (f"/diary/{C}/export", "fmt"): FORMATS,
    (f"/diary/{C}/report", "month"): MONTHS,
    (f"/diary/{C}/report", "fmt"): FORMATS,
    (f"/c/{C}/audit", "before"): IDS,
    ("/audit", "before"): IDS,
    (f"/api/v1/communes/{C}/plan", "first"): DAYS,
    (f"/api/v1/communes/{C}/plan", "last"): DAYS,
    (f"/api/v1/communes/{C}/diary", "first"): DAYS,
    (f"/api/v1/communes/{C}/diary", "last"): DAYS,
    (f"/api/v1/communes/{C}/criterion", "week"): DAYS,
    ("/api/v1/asrun", "day"): DAYS,
    ("/api/v1/alarms", "all"): BOOLS,
    (f"/api/v1/communes/{C}/bulletins", "status"): STATUSES,
    (f"{HT}/xa/{C}/lich-phat", "tuNgay"): DAYS,
    (f"{HT}/xa/{C}/lich-phat", "denNgay"): DAYS,
    (f"{HT}/xa/{C}/thong-ke", "tuNgay"): DAYS,
    (f"{HT}/xa/{C}/thong-ke", "denNgay"): DAYS,
}
# Parameters that take any text: a message key shown only when known, a path on this site.
# A node's media token: any wrong one is the 404 of a missing file (test_media_access.py).
FREE = {(f"/c/{C}/calendar", "done"), (f"/c/{C}/bulletins/1", "done"), ("/login", "next"),
        ("/lang/vi", "next"), ("/media/{name}", "n"), ("/media/{name}", "t")}
CASES = [(path, name, value) for (path, name), values in BAD.items() for value in values]


def vietnamese(text: str) -> bool:
    return any(ch in "đĐ" or (ch.isalpha() and unicodedata.normalize("NFD", ch) != ch)
               for ch in text)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSite]:
    s = make_site(tmp_path_factory.mktemp("query"))
    yield s
    s.close()


_TOKENS: dict[int, str] = {}


def get(site: WebSite, path: str, params: dict[str, str]) -> tuple[int, str, str]:
    """As the province admin: the session for pages, a token for the API."""
    if path.startswith("/api/"):
        if id(site) not in _TOKENS:
            _TOKENS[id(site)] = site.token("admin")
        token = _TOKENS[id(site)]
        r = site.client(None).get(path, params=params,
                                  headers={"Authorization": f"Bearer {token}"})
    else:
        r = site.client("admin").get(path, params=params)
    return r.status_code, r.headers.get("content-type", ""), r.text


def test_the_table_names_every_query_parameter(site: WebSite) -> None:
    seen = set()
    for rc in iter_route_contexts(site.app.routes):
        dep = getattr(getattr(rc, "route", rc), "dependant", None)
        if dep is None or "GET" not in (rc.methods or ()):
            continue
        for p in [*dep.query_params, *(q for d in dep.dependencies for q in d.query_params)]:
            seen.add((str(rc.path), p.alias))
    path_of = {(p.replace(C, "{commune_id}").replace("/1", "/{bulletin_id}")
                .replace("/xa/{commune_id}", "/xa/{maXa}").replace("/lang/vi", "/lang/{code}"),
                n) for p, n in [*BAD, *FREE]}
    assert seen == path_of, f"untested: {seen - path_of}; gone: {path_of - seen}"


@pytest.mark.parametrize(("path", "name", "value"), CASES,
                         ids=[f"{p}?{n}={v[:20]!r}" for p, n, v in CASES])
def test_a_bad_query_value_is_a_400_in_vietnamese(site: WebSite, path: str, name: str,
                                                 value: str) -> None:
    status, kind, body = get(site, path, {name: value})
    assert status == 400, body[:300]
    assert "Input should" not in body and "Traceback" not in body
    assert len(body) < 20_000  # the value is not echoed whole
    if path.startswith("/api/"):
        assert kind.startswith("application/json")
        detail = json.loads(body)["detail"]
        assert isinstance(detail, str) and vietnamese(detail), detail
    else:
        assert kind.startswith("text/html")
        assert '<html lang="vi">' in body and "Yêu cầu không hợp lệ" in body
        assert vietnamese(body.split("<main>", 1)[1])


@pytest.mark.parametrize("path", [f"/c/{C}/calendar", f"/c/{C}/bulletins/1", "/login"])
@pytest.mark.parametrize("value", ["9999-12-31", "\x00", "' OR 1=1", "//evil.example",
                                   "x" * 5000])
def test_free_text_parameters_never_fail(site: WebSite, path: str, value: str) -> None:
    name = "next" if path == "/login" else "done"
    status, _, body = get(site, path, {name: value})
    assert status in (200, 404), body[:300]  # bulletin 1 may not exist


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1.5", "99999999999999999999",
                                 "9223372036854775808", "１"])
@pytest.mark.parametrize("page", [f"/c/{C}/bulletins/{{}}", f"/c/{C}/bulletins/{{}}/audio",
                                  f"/c/{C}/emergency/{{}}", f"/c/{C}/emergency/{{}}/status"])
def test_an_id_no_row_can_have_is_a_404_in_vietnamese(site: WebSite, page: str,
                                                     bad: str) -> None:
    status, kind, body = get(site, page.format(bad), {})
    assert status == 404, body[:300]
    assert "Input should" not in body
    if kind.startswith("text/html"):
        assert "Không tìm thấy trang" in body


def test_the_edges_of_the_range_still_work(site: WebSite) -> None:
    for path, params in [(f"/c/{C}", {"day": "2000-01-01"}), (f"/c/{C}", {"day": "2099-12-31"}),
                         (f"/c/{C}/calendar", {"week": "2099-12-31"}),
                         (f"/c/{C}/calendar", {"week": "2000-01-01"}),
                         (f"/diary/{C}/report", {"month": "2099-12", "fmt": "csv"}),
                         (f"/c/{C}/audit", {"before": "9223372036854775807"}),
                         (f"/api/v1/communes/{C}/plan", {"first": "2099-12-25"}),
                         (f"/api/v1/communes/{C}/diary", {"last": "2000-01-07"}),
                         ("/api/v1/alarms", {"all": "true"})]:
        status, _, body = get(site, path, params)
        assert status == 200, (path, params, body[:300])
    # Past the edge: the arrows to the next day are not offered.
    _, _, body = get(site, f"/c/{C}", {"day": "2099-12-31"})
    assert "day=2100-01-01" not in body


def test_the_site_is_up_after_all_that(site: WebSite) -> None:
    assert site.client(None).get("/healthz").json() == {"status": "ok"}
    assert site.client("canbo").get(f"/c/{C}/calendar").status_code == 200

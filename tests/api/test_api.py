"""The REST API (/api/v1) and the HTTTN adapter (/api/httttn/v1): who may call what (a table
of every endpoint, checked against the app's routes so a new endpoint cannot go untested),
the OpenAPI document, bulletin imports (drafts only; refused audio, oversized uploads and
missing CSRF tokens store nothing), and the HTTTN's mapping."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import math
import struct
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from support.web_site import NOW_MS, OTHER, USERS, WebSite, app_routes, csrf_of, make_site, utc_ms

from headend.api.common import PlanItemOut
from headend.api.httttn import (
    IMPORT_FIELDS,
    BanTinNhap,
    HttttnError,
    decode_audio,
    guess_suffix,
    muc_phat,
    parse_import,
    thong_ke,
)
from headend.core import auth
from headend.core.models import Alarm, ApiToken, Bulletin, Node
from headend.diary.reconciliation import (
    AIRED,
    MISSED,
    CommuneInfo,
    ProgrammeLine,
    VillageOutcome,
)
from headend.media.probe import MAX_BYTES
from headend.planning.expansion import expand
from headend.planning.programme import record_programme
from headend.planning.schedule import load_schedule

TL = "tan-lang"
COMMUNES = (TL, OTHER)
SEEDED = "HTTTN-SEED"  # an import each commune has, for the import-status endpoint

# Who may, per commune: VIEW (every role of the commune, province-wide staff) and MAKE.
MAY_VIEW = {TL: {"admin", "kt-tinh", "kt-tanlang", "canbo", "truongban"},
            OTHER: {"admin", "kt-tinh", "canbo-khac", "truongban-khac"}}
MAY_MAKE = {TL: {"admin", "canbo"}, OTHER: {"admin", "canbo-khac"}}
# NODES (technicians) on routes without a commune: the province's and the commune's technicians.
MAY_NODES = {TL: {"admin", "kt-tinh", "kt-tanlang"}}


def tone_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A 440 Hz tone, 16-bit mono WAV."""
    n = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                      for i in range(n))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


WAV = tone_wav()
_n = itertools.count()


def _text_form() -> dict[str, Any]:
    return {"data": {"title": f"Tin thử {next(_n)}", "summary": "Thử", "text": "Bà con chú ý."}}


def _httttn_json() -> dict[str, Any]:
    return {"json": {"maBanTin": f"HT-{next(_n)}", "tieuDe": "Tin của tỉnh",
                     "noiDung": "Bà con chú ý nghe."}}


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str  # as the app names it
    permission: str | None  # None: any logged-in user; else on the commune in the path
    query: str = ""
    body: Callable[[], dict[str, Any]] | None = None

    def url(self, commune: str) -> str:
        return (self.route.replace("{commune_id}", commune).replace("{maXa}", commune)
                .replace("{maBanTin}", SEEDED) + self.query)

    def expected(self, user: str, commune: str) -> int:
        if self.permission is None:
            return 200
        allowed = {auth.VIEW: MAY_VIEW, auth.MAKE: MAY_MAKE,
                   auth.NODES: MAY_NODES}[self.permission][commune]
        if user not in allowed:
            return 403
        return 201 if self.method == "POST" else 200


V1, HT = "/api/v1", "/api/httttn/v1"
ENDPOINTS = [
    Endpoint("GET", f"{V1}/me", None),
    Endpoint("GET", f"{V1}/communes", None),
    Endpoint("GET", f"{V1}/communes/{{commune_id}}/plan", auth.VIEW,
             "?first=2026-11-23&last=2026-11-24"),
    Endpoint("GET", f"{V1}/communes/{{commune_id}}/diary", auth.VIEW),
    Endpoint("GET", f"{V1}/communes/{{commune_id}}/criterion", auth.VIEW, "?week=2026-11-23"),
    Endpoint("GET", f"{V1}/communes/{{commune_id}}/nodes", auth.VIEW),
    Endpoint("GET", f"{V1}/communes/{{commune_id}}/bulletins", auth.VIEW),
    Endpoint("GET", f"{V1}/nodes", None),
    Endpoint("GET", f"{V1}/asrun", None, "?day=2026-11-23"),
    Endpoint("GET", f"{V1}/alarms", auth.NODES),
    Endpoint("POST", f"{V1}/communes/{{commune_id}}/bulletins", auth.MAKE, body=_text_form),
    Endpoint("GET", f"{HT}/xa/{{maXa}}/lich-phat", auth.VIEW, "?tuNgay=2026-11-23"),
    Endpoint("GET", f"{HT}/xa/{{maXa}}/thong-ke", auth.VIEW),
    Endpoint("GET", f"{HT}/xa/{{maXa}}/trang-thai", auth.VIEW),
    Endpoint("POST", f"{HT}/xa/{{maXa}}/ban-tin", auth.MAKE, body=_httttn_json),
    Endpoint("GET", f"{HT}/xa/{{maXa}}/ban-tin/{{maBanTin}}", auth.VIEW),
]
IDS = [f"{e.method} {e.route}" for e in ENDPOINTS]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSite]:
    s = make_site(tmp_path_factory.mktemp("api"))
    admin = bearer(s.token("admin"))
    for commune in COMMUNES:
        r = s.client(None).post(f"{HT}/xa/{commune}/ban-tin", headers=admin, json={
            "maBanTin": SEEDED, "tieuDe": "Tin gốc", "noiDung": "Xin chào."})
        assert r.status_code == 201, r.text
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def tokens(site: WebSite) -> dict[str, str]:
    return {user: site.token(user) for user in USERS}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(site: WebSite, e: Endpoint, commune: str, headers: dict[str, str]) -> Any:
    return site.client(None).request(e.method, e.url(commune), headers=headers,
                                     **(e.body() if e.body else {}))


def bulletin_count(site: WebSite) -> int:
    with Session(site.engine) as s:
        return s.scalar(select(func.count()).select_from(Bulletin)) or 0


def media_files(site: WebSite) -> set[str]:
    return {p.name for p in site.home.media_dir.iterdir()}


# --- Who may call what --------------------------------------------------------------------------

def test_every_api_route_is_in_the_table(site: WebSite) -> None:
    routes = {(m, path) for path, methods in app_routes(site.app)
              if path.startswith(("/api/v1", "/api/httttn")) for m in methods - {"HEAD"}}
    assert routes == {(e.method, e.route) for e in ENDPOINTS}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_roles_and_communes(site: WebSite, tokens: dict[str, str], endpoint: Endpoint) -> None:
    wrong = []
    communes = COMMUNES if "{" in endpoint.route else (TL,)
    for user, commune in itertools.product(USERS, communes):
        r = call(site, endpoint, commune, bearer(tokens[user]))
        want = endpoint.expected(user, commune)
        if r.status_code != want:
            wrong.append(f"{user} on {commune}: {r.status_code} (want {want}) {r.text[:200]}")
        elif want == 403:
            assert not r.json()["detail"].isascii()  # a Vietnamese message
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_no_login_bad_or_revoked_token(site: WebSite, endpoint: Endpoint) -> None:
    revoked = site.token("admin")
    with Session(site.engine) as s, s.begin():
        s.execute(update(ApiToken).where(ApiToken.id == auth.digest(revoked))
                  .values(revoked=True))
    before = bulletin_count(site)
    for headers in ({}, bearer("lx_not-a-token"), bearer(revoked), {"Authorization": "Basic x"}):
        r = call(site, endpoint, TL, headers)
        assert r.status_code == 401, (headers, r.text)
        assert "Bearer" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert bulletin_count(site) == before


def test_session_cookie_works_for_reading(site: WebSite) -> None:
    assert site.client("canbo").get(f"{V1}/communes/{TL}/nodes").status_code == 200
    assert site.client("canbo").get(f"{V1}/communes/{OTHER}/nodes").status_code == 403


def test_communes_only_those_the_caller_sees(site: WebSite, tokens: dict[str, str]) -> None:
    def ids(user: str) -> list[str]:
        r = site.client(None).get(f"{V1}/communes", headers=bearer(tokens[user]))
        return sorted(c["id"] for c in r.json())

    assert ids("canbo") == [TL]
    assert ids("kt-tanlang") == [TL]
    assert ids("truongban-khac") == [OTHER]
    assert ids("kt-tinh") == ids("admin") == sorted(COMMUNES)
    me = site.client(None).get(f"{V1}/me", headers=bearer(tokens["canbo"])).json()
    assert me["role"] == "officer" and me["communes"] == [TL] and "make" in me["permissions"]


def test_unknown_commune_is_404_for_the_province(site: WebSite, tokens: dict[str, str]) -> None:
    for path in (f"{V1}/communes/khong-co/nodes", f"{V1}/communes/khong-co/plan",
                 f"{V1}/communes/khong-co/diary", f"{HT}/xa/khong-co/trang-thai"):
        r = site.client(None).get(path, headers=bearer(tokens["admin"]))
        assert r.status_code == 404, path
        assert r.json() == {"detail": "Không có xã này."}
    # Someone of one commune learns nothing about others, known or not.
    r = site.client(None).get(f"{V1}/communes/khong-co/nodes", headers=bearer(tokens["canbo"]))
    assert r.status_code == 403


@pytest.mark.parametrize(("path", "word"), [
    (f"{V1}/communes/{TL}/plan?first=23/11/2026", "Ngày không hợp lệ"),
    (f"{V1}/communes/{TL}/plan?first=2026-11-23&last=2026-12-31", "tối đa 31 ngày"),
    (f"{V1}/communes/{TL}/plan?first=2026-11-23&last=2026-11-01", "trước ngày đầu"),
    (f"{V1}/communes/{TL}/diary?first=2025-01-01&last=2026-11-23", "tối đa 366 ngày"),
    (f"{V1}/communes/{TL}/diary?last=9999-99-99", "Ngày không hợp lệ"),
    (f"{V1}/communes/{TL}/bulletins?status=sent", "Trạng thái không đúng"),
    (f"{V1}/communes/{TL}/criterion?week=23/11/2026", "Ngày không hợp lệ"),
    (f"{HT}/xa/{TL}/thong-ke?tuNgay=hom-qua", "Ngày không hợp lệ"),
])
def test_bad_query_is_400_in_vietnamese(site: WebSite, tokens: dict[str, str], path: str,
                                        word: str) -> None:
    r = site.client(None).get(path, headers=bearer(tokens["canbo"]))
    assert r.status_code == 400
    assert word in r.json()["detail"]


# --- OpenAPI ----------------------------------------------------------------------------------

def test_openapi_lists_the_endpoints_and_bearer_security(site: WebSite) -> None:
    doc = site.client("canbo").get("/openapi.json").json()  # behind the login
    assert "loaxa user token USERNAME --label HTTTN" in doc["info"]["description"]
    assert "Authorization: Bearer" in doc["info"]["description"]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["token"] == {"type": "http", "scheme": "bearer",
                                "description": schemes["token"]["description"]}
    assert schemes["session"]["in"] == "cookie"
    for e in ENDPOINTS:
        op = doc["paths"][e.route][e.method.lower()]
        assert op["summary"] and op["tags"], e.route
        assert {"token": []} in op["security"], e.route
        assert {"401", "403"} <= set(op["responses"]), e.route
    upload = doc["paths"][f"{V1}/communes/{{commune_id}}/bulletins"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert form["audio"]["format"] == "binary" and "text" in form
    ht = doc["paths"][f"{HT}/xa/{{maXa}}/ban-tin"]["post"]["requestBody"]["content"]
    assert set(ht["application/json"]["schema"]["properties"]) == IMPORT_FIELDS
    plan = doc["paths"][f"{V1}/communes/{{commune_id}}/plan"]["get"]
    assert plan["responses"]["200"]["content"]["application/json"]["schema"]


# --- Plan, diary, nodes -------------------------------------------------------------------------

def test_plan_items_with_times_and_villages(site: WebSite, tokens: dict[str, str]) -> None:
    r = site.client(None).get(f"{V1}/communes/{TL}/plan?first=2026-11-23&last=2026-11-23",
                              headers=bearer(tokens["canbo"]))
    plan = r.json()
    assert plan["timezone"] == "Asia/Ho_Chi_Minh" and plan["first"] == plan["last"]
    items = plan["items"]
    assert [i["start_ms"] for i in items] == sorted(i["start_ms"] for i in items)
    vov = next(i for i in items if i["kind"] == "vov_relay")
    assert vov["start_local"].startswith("2026-11-23T") and vov["start_local"].endswith("+07:00")
    assert vov["priority_class"] == "normal" and vov["villages"] and vov["village_names"]
    assert vov["placeholder"] is False
    # Monday's local bulletin has no recording yet: planned, flagged.
    waiting = [i for i in items if i["placeholder"]]
    assert [i["kind"] for i in waiting] == ["local_bulletin"]
    # An item for some villages only (the Tày group), in the commune's village order.
    tuesday = site.client(None).get(
        f"{V1}/communes/{TL}/plan?first=2026-11-24&last=2026-11-24",
        headers=bearer(tokens["canbo"])).json()["items"]
    tay = next(i for i in tuesday if i["occurrence"] == "ban-tin-tay@2026-11-24")
    schedule = load_schedule(site.schedules[TL])
    order = [v.id for v in schedule.commune.villages]
    assert tay["villages"] == [v for v in order if v in schedule.groups["tay"]]
    assert 0 < len(tay["villages"]) < len(order) and tay["language"] == "tay"
    # Default: a week from today.
    week = site.client(None).get(f"{V1}/communes/{TL}/plan", headers=bearer(tokens["canbo"]))
    assert (week.json()["first"], week.json()["last"]) == ("2026-11-23", "2026-11-29")


@pytest.fixture(scope="module")
def yesterday_programme(site: WebSite) -> None:
    """Sunday's programme as built plans record it; no node reported anything."""
    schedule = load_schedule(site.schedules[TL])
    lo, hi = utc_ms(2026, 11, 21, 17), utc_ms(2026, 11, 22, 17)
    record_programme(site.engine, schedule, expand(schedule, lo, hi), lo, hi, now_ms=lo)


def test_diary_lines(site: WebSite, tokens: dict[str, str], yesterday_programme: None) -> None:
    r = site.client(None).get(f"{V1}/communes/{TL}/diary?first=2026-11-22&last=2026-11-22",
                              headers=bearer(tokens["kt-tanlang"]))
    assert r.status_code == 200
    lines = r.json()["lines"]
    assert lines and all(line["day"] == "2026-11-22" for line in lines)
    line = lines[0]
    assert line["planned_start_local"].startswith("2026-11-22T")
    assert line["start_ms"] is None and line["outcome"] in ("missed", "no_report")
    assert {v["village"] for v in line["villages"]} and line["aired_villages"] == []
    assert {"trigger", "operator", "approver", "title", "source", "session"} <= set(line)


def test_criterion_counts_only_bulletins_with_a_recording(site: WebSite,
                                                          tokens: dict[str, str]) -> None:
    # Tân Lang's bulletins are slots kept for recordings not made yet: the relays are there
    # every day, the news is not ("6/3 – Đạt" was the bug).
    r = site.client(None).get(f"{V1}/communes/{TL}/criterion", headers=bearer(tokens["canbo"]))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["timezone"] == "Asia/Ho_Chi_Minh"
    aired, planned = got["aired"], got["planned"]
    assert (aired["basis"], aired["week"], aired["monday"]) == ("aired", "2026-W48", "2026-11-23")
    assert aired["local_news"] == 0 and aired["placeholders"] == []  # nothing aired yet
    assert planned["basis"] == "planned"
    assert (planned["vov_days"], planned["province_days"]) == (7, 7)
    assert (planned["local_news"], planned["local_news_required"]) == (0, 3)
    assert planned["local_news_text"] == "0 tin, cần ít nhất 3"
    assert planned["placeholders"][:2] == ["ban-tin-xa@2026-11-23", "ban-tin-tay@2026-11-24"]
    assert len(planned["placeholders"]) == 6 and planned["short_news"] == []
    assert (planned["ok"], planned["verdict_vi"]) == (False, "Chưa đạt")
    assert planned["warnings"] == ["6 bản tin thiếu bản ghi, không tính (T2 23/11, T3 24/11, "
                                   "T4 25/11, T5 26/11, T6 27/11, T7 28/11)"]
    assert planned["min_news_seconds"] == 60
    # A past week: what aired only.
    past = site.client(None).get(f"{V1}/communes/{TL}/criterion?week=2026-11-18",
                                 headers=bearer(tokens["canbo"])).json()
    assert past["aired"]["week"] == "2026-W47" and past["planned"] is None


def test_nodes_with_telemetry_and_alarms(site: WebSite, tokens: dict[str, str]) -> None:
    with Session(site.engine) as s, s.begin():
        s.execute(update(Node).where(Node.id == "tl-banchu-1").values(
            online=True, last_seen_ms=NOW_MS - 5000, fw="1.2.3",
            telemetry=json.dumps({"volume": 70, "signal_dbm": -109, "link": "4g"})))
        s.add(Alarm(kind="weak_signal", subject="tl-banchu-1", commune_id=TL,
                    detail="-109 dBm", raised_ms=NOW_MS))
    r = site.client(None).get(f"{V1}/communes/{TL}/nodes", headers=bearer(tokens["kt-tanlang"]))
    nodes = r.json()
    assert nodes["total"] == 5 and nodes["online"] == 1
    node = next(n for n in nodes["nodes"] if n["id"] == "tl-banchu-1")
    assert node["volume"] == 70 and node["telemetry"]["signal_dbm"] == -109
    assert node["alarms"] == ["weak_signal"] and node["last_seen_local"].endswith("+07:00")

    status = site.client(None).get(f"{HT}/xa/{TL}/trang-thai",
                                   headers=bearer(tokens["admin"])).json()
    assert (status["maXa"], status["tongSoCum"], status["soCumTrucTuyen"]) == (TL, 5, 1)
    assert status["tongSoThon"] == 5 and status["soThonCoCumTrucTuyen"] == 1
    cum = next(c for c in status["danhSachCum"] if c["maCum"] == "tl-banchu-1")
    assert cum == {"maCum": "tl-banchu-1", "maThon": "ban-chu", "tenThon": "Bản Chu",
                   "trucTuyen": True, "lanLienLacCuoi": "2026-11-23T07:59:55+07:00",
                   "phienBanPhanMem": "1.2.3", "amLuong": 70, "doManhTinHieu": -109,
                   "dangPhat": None, "canhBao": ["SONG_YEU"]}


# --- Bulletins ----------------------------------------------------------------------------------

def test_text_import_is_a_draft_in_the_list(site: WebSite, tokens: dict[str, str]) -> None:
    h = bearer(tokens["canbo"])
    r = site.client(None).post(f"{V1}/communes/{TL}/bulletins", headers=h, data={
        "title": "Lịch tiêm phòng", "summary": "Tiêm cho trẻ", "language": "vi",
        "kind": "notice", "text": "Sáng thứ năm, trạm y tế xã tiêm phòng cho trẻ em."})
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["status"], made["origin"], made["kind"]) == ("draft", "tts", "notice")
    assert made["created_by"] == "canbo" and made["text"].startswith("Sáng thứ năm")
    assert set(made["media"]) == {"esp32", "rpi"}
    assert all((site.home.media_dir / name).is_file() for name in made["media"].values())
    listed = site.client(None).get(f"{V1}/communes/{TL}/bulletins?status=draft",
                                   headers=bearer(tokens["truongban"])).json()
    assert made["id"] in [b["id"] for b in listed]
    assert all(b["status"] == "draft" for b in listed)


def test_audio_upload_is_a_draft(site: WebSite, tokens: dict[str, str]) -> None:
    r = site.client(None).post(
        f"{V1}/communes/{TL}/bulletins", headers=bearer(tokens["canbo"]),
        data={"title": "Bản tin có tiếng", "chime": "true"},
        files={"audio": ("ban-tin.wav", WAV, "audio/wav")})
    assert r.status_code == 201, r.text
    assert (r.json()["origin"], r.json()["status"]) == ("upload", "draft")
    assert r.json()["duration_ms"] > 1000  # the tone and the chimes


@pytest.mark.parametrize(("form", "files", "word"), [
    ({"title": "Tin"}, {"audio": ("tin.mp3", b"Day la van ban, khong phai am thanh.\n" * 50,
                                  "audio/mpeg")}, "không phải âm thanh"),
    ({"title": "Tin"}, {"audio": ("tin.exe", WAV, "audio/wav")}, "Không nhận loại tệp"),
    ({"title": ""}, {"audio": ("tin.wav", WAV, "audio/wav")}, "tiêu đề"),
    ({"title": "Tin", "kind": "emergency"}, {"audio": ("tin.wav", WAV, "audio/wav")}, "Loại"),
    ({"title": "Tin", "text": "Cả hai"}, {"audio": ("tin.wav", WAV, "audio/wav")}, "cả hai"),
    ({"title": "Tin"}, None, "văn bản"),
])
def test_refused_upload_stores_nothing(site: WebSite, tokens: dict[str, str],
                                       form: dict[str, str], files: Any, word: str) -> None:
    before, media = bulletin_count(site), media_files(site)
    r = site.client(None).post(f"{V1}/communes/{TL}/bulletins", headers=bearer(tokens["canbo"]),
                               data=form, files=files)
    assert r.status_code == 422, r.text
    assert word in r.json()["detail"]
    assert bulletin_count(site) == before
    assert media_files(site) == media


class Streamed:
    """A request body sent in 1 MiB chunks as the server asks for them, never built whole;
    counts what the server read."""

    CHUNK = b"\0" * (1 << 20)

    def __init__(self, head: bytes, zeros: int, tail: bytes) -> None:
        self.parts = itertools.chain([head], itertools.repeat(self.CHUNK, zeros // len(
            self.CHUNK)), [tail])
        self.read = 0
        self.done = False

    async def receive(self) -> dict[str, Any]:
        if self.done:
            return {"type": "http.disconnect"}
        part = next(self.parts, None)
        if part is None:
            self.done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self.read += len(part)
        return {"type": "http.request", "body": part, "more_body": True}


def asgi_post(site: WebSite, path: str, headers: dict[str, str], body: Streamed
              ) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("testserver", 80), "state": {},
             "headers": [(b"host", b"testserver")] + [
                 (k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(site.app(scope, body.receive, send))  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(payload)


def test_upload_over_50_mb_is_413_and_not_read_further(site: WebSite,
                                                        tokens: dict[str, str]) -> None:
    boundary = "loaxa-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nTo\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; "
            f"filename=\"to.wav\"\r\nContent-Type: audio/wav\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {**bearer(tokens["canbo"]),
               "content-type": f"multipart/form-data; boundary={boundary}"}
    path = f"{V1}/communes/{TL}/bulletins"
    before, media = bulletin_count(site), media_files(site)

    # Chunked (no Content-Length): read until the file passes the limit, then refused.
    body = Streamed(head, MAX_BYTES + 20 * 2**20, tail)
    status, answer = asgi_post(site, path, headers, body)
    assert status == 413
    assert "Tệp quá lớn" in answer["detail"] and "50 MB" in answer["detail"]
    assert MAX_BYTES < body.read <= MAX_BYTES + 2 * len(Streamed.CHUNK)

    # Declared too large: refused before any of it is read.
    body = Streamed(head, 200 * 2**20, tail)
    status, answer = asgi_post(site, path, {**headers, "content-length": str(201 * 2**20)},
                               body)
    assert (status, body.read) == (413, 0)
    assert bulletin_count(site) == before
    assert media_files(site) == media


def test_session_post_needs_csrf(site: WebSite) -> None:
    client = site.client("canbo")
    before = bulletin_count(site)
    form = {"title": "Tin từ trình duyệt", "text": "Xin chào bà con."}
    r = client.post(f"{V1}/communes/{TL}/bulletins", data=form)
    assert r.status_code == 403 and "tải lại trang" in r.json()["detail"]
    r = client.post(f"{V1}/communes/{TL}/bulletins", data={**form, "csrf": "sai"})
    assert r.status_code == 403
    r = client.post(f"{HT}/xa/{TL}/ban-tin", json={"maBanTin": "S-1", "tieuDe": "T",
                                                   "noiDung": "Xin chào."})
    assert r.status_code == 403
    assert bulletin_count(site) == before
    token = csrf_of(client)
    r = client.post(f"{V1}/communes/{TL}/bulletins", data={**form, "csrf": token})
    assert r.status_code == 201, r.text
    r = client.post(f"{V1}/communes/{TL}/bulletins", data=form,
                    headers={"X-CSRF-Token": token})
    assert r.status_code == 201, r.text


# --- HTTTN --------------------------------------------------------------------------------

def test_httttn_import_is_idempotent(site: WebSite, tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    body = {"maBanTin": "TINH-2026-0042", "maXa": TL, "tieuDe": "Phòng chống rét đậm",
            "tomTat": "Khuyến cáo của tỉnh", "ngonNgu": "vi", "loaiBanTin": "THONG_BAO",
            "tepAmThanh": base64.b64encode(WAV).decode()}
    first = site.client(None).post(f"{HT}/xa/{TL}/ban-tin", headers=h, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["trangThai"] == "CHO_DUYET" and first.json()["daTonTai"] is False
    before, media = bulletin_count(site), media_files(site)
    again = site.client(None).post(f"{HT}/xa/{TL}/ban-tin", headers=h,
                                   json={**body, "tieuDe": "Gửi lại"})
    assert again.status_code == 200
    assert again.json()["maBanTinLoaXa"] == first.json()["maBanTinLoaXa"]
    assert again.json()["daTonTai"] is True
    assert (bulletin_count(site), media_files(site)) == (before, media)
    # The same id from another commune is another bulletin.
    other = site.client(None).post(f"{HT}/xa/{OTHER}/ban-tin", headers=h,
                                   json={**body, "maXa": OTHER})
    assert other.status_code == 201 and other.json()["maBanTinLoaXa"] != first.json()[
        "maBanTinLoaXa"]

    listed = site.client(None).get(f"{V1}/communes/{TL}/bulletins",
                                   headers=bearer(tokens["truongban"])).json()
    b = next(b for b in listed if b["id"] == first.json()["maBanTinLoaXa"])
    assert (b["origin"], b["status"], b["external_id"]) == ("httttn", "draft", "TINH-2026-0042")
    assert (b["kind"], b["title"]) == ("notice", "Phòng chống rét đậm")
    status = site.client(None).get(f"{HT}/xa/{TL}/ban-tin/TINH-2026-0042", headers=h).json()
    assert status["trangThai"] == "CHO_DUYET" and status["maBanTinLoaXa"] == b["id"]
    assert site.client(None).get(f"{HT}/xa/{TL}/ban-tin/KHONG-CO", headers=h).status_code == 404


@pytest.mark.parametrize(("body", "status", "word"), [
    ({"maBanTin": "X1", "tieuDe": "T", "tepAmThanh": "không phải base64!"}, 422, "base64"),
    ({"maBanTin": "X2", "tieuDe": "T", "tepAmThanh": base64.b64encode(b"van ban " * 40)
      .decode(), "tenTep": "tin.mp3"}, 422, "không phải âm thanh"),
    ({"maBanTin": "X3", "maXa": OTHER, "tieuDe": "T", "noiDung": "a"}, 422, "khác xã"),
    ({"tieuDe": "T", "noiDung": "a"}, 422, "maBanTin"),
    ({"maBanTin": "X4", "tieuDe": "", "noiDung": "a"}, 422, "tiêu đề"),
    ({"maBanTin": "X5", "tieuDe": "T", "noiDung": "a", "uuTien": 1}, 422, "uuTien"),
], ids=["not-base64", "not-audio", "other-commune", "no-id", "no-title", "unknown-field"])
def test_httttn_refused_import_stores_nothing(site: WebSite, tokens: dict[str, str],
                                              body: dict[str, Any], status: int,
                                              word: str) -> None:
    before, media = bulletin_count(site), media_files(site)
    r = site.client(None).post(f"{HT}/xa/{TL}/ban-tin", headers=bearer(tokens["canbo"]),
                               json=body)
    assert r.status_code == status, r.text
    assert word in r.json()["detail"]
    assert (bulletin_count(site), media_files(site)) == (before, media)


def test_httttn_not_json_is_400(site: WebSite, tokens: dict[str, str]) -> None:
    r = site.client(None).post(f"{HT}/xa/{TL}/ban-tin", headers=bearer(tokens["canbo"]),
                               content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["detail"]


def test_httttn_plan_export(site: WebSite, tokens: dict[str, str]) -> None:
    r = site.client(None).get(f"{HT}/xa/{TL}/lich-phat?tuNgay=2026-11-23&denNgay=2026-11-23",
                              headers=bearer(tokens["canbo"]))
    plan = r.json()
    assert (plan["maXa"], plan["tuNgay"], plan["denNgay"]) == (TL, "2026-11-23", "2026-11-23")
    assert plan["muiGio"] == "Asia/Ho_Chi_Minh"
    items = plan["danhSachMucPhat"]
    assert plan["soMucPhat"] == len(items) > 0
    assert set(items[0]) == {"maMucPhat", "loaiChuongTrinh", "mucUuTien", "tieuDe", "tomTat",
                             "ngonNgu", "nguon", "thoiGianBatDau", "thoiGianKetThuc",
                             "thoiLuongGiay", "maThon", "tenThon", "choAmThanh"}
    kinds = {i["loaiChuongTrinh"] for i in items}
    assert {"TIEP_SONG_TRUNG_UONG", "TIEP_SONG_TINH", "BAN_TIN_DIA_PHUONG"} <= kinds
    vov = next(i for i in items if i["loaiChuongTrinh"] == "TIEP_SONG_TRUNG_UONG")
    assert vov["mucUuTien"] == "THUONG" and vov["thoiGianBatDau"].endswith("+07:00")
    assert vov["thoiLuongGiay"] > 0 and vov["tenThon"] and vov["nguon"]
    assert [i["choAmThanh"] for i in items if i["loaiChuongTrinh"] == "BAN_TIN_DIA_PHUONG"] \
        == [True]


def test_httttn_statistics(site: WebSite, tokens: dict[str, str],
                           yesterday_programme: None) -> None:
    r = site.client(None).get(f"{HT}/xa/{TL}/thong-ke?tuNgay=2026-11-22&denNgay=2026-11-22",
                              headers=bearer(tokens["canbo"]))
    stats = r.json()
    assert stats["maXa"] == TL and stats["tenXa"] == "Xã Tân Lang"
    assert stats["tongSoMuc"] > 0 and stats["soMucDaPhat"] == 0 and stats["soGioDaPhat"] == 0
    assert stats["soMucKhongPhat"] + stats["soMucChuaBaoCao"] == stats["tongSoMuc"]
    assert {t["loaiChuongTrinh"] for t in stats["theoLoai"]} >= {"TIEP_SONG_TRUNG_UONG"}
    assert len(stats["theoThon"]) == 5
    assert all(t["soMucCanPhat"] > 0 and t["soMucDaPhat"] == 0 for t in stats["theoThon"])


# --- HTTTN mapping (pure) ---------------------------------------------------------------------

def test_import_schema_and_parser_agree() -> None:
    assert set(BanTinNhap.model_json_schema()["properties"]) == IMPORT_FIELDS


def test_parse_import() -> None:
    req = parse_import({"maBanTin": " A-1 ", "tieuDe": "T", "ngonNgu": "TAY",
                        "loaiBanTin": "thong_bao", "coNhacHieu": True,
                        "tepAmThanh": "data:audio/wav;base64,UklG\nRg==", "tenTep": "C:\\a\\b.wav"},
                       TL)
    assert (req.external_id, req.meta.language, req.meta.kind) == ("A-1", "tay", "notice")
    assert (req.audio_b64, req.filename, req.chime, req.text) == ("UklGRg==", "b.wav", True,
                                                                   None)
    for bad, word in (([], "đối tượng"), ({"maBanTin": "A", "tieuDe": "T"}, "một trong hai"),
                      ({"maBanTin": "A", "tieuDe": "T", "noiDung": "x", "tepAmThanh": "AA=="},
                       "một trong hai"),
                      ({"maBanTin": "A" * 101, "tieuDe": "T", "noiDung": "x"}, "dài quá"),
                      ({"maBanTin": 5, "tieuDe": "T", "noiDung": "x"}, "chuỗi"),
                      ({"maBanTin": "A", "tieuDe": "T", "noiDung": "x", "loaiBanTin": "KHAN_CAP"},
                       "Loại bản tin")):
        with pytest.raises(HttttnError, match=word):
            parse_import(bad, TL)


def test_decode_audio_and_sniffing(tmp_path: Path) -> None:
    out = tmp_path / "a"
    assert decode_audio(base64.b64encode(WAV).decode(), out) == len(WAV)
    assert out.read_bytes() == WAV
    with pytest.raises(HttttnError) as e:
        decode_audio(base64.b64encode(b"x" * 100).decode(), out, limit=99)
    assert e.value.status == 413
    with pytest.raises(HttttnError, match="base64"):
        decode_audio("@@@@", out)
    assert guess_suffix(WAV[:16]) == ".wav"
    assert guess_suffix(b"ID3\x04") == guess_suffix(b"\xff\xfb\x90\x00") == ".mp3"
    assert guess_suffix(b"OggS\0") == ".ogg"
    assert guess_suffix(b"\0\0\0\x20ftypM4A ") == ".m4a"
    assert guess_suffix(b"hello") == ""


def test_mapping_of_a_plan_item() -> None:
    item = PlanItemOut(
        occurrence="khan@2026-11-23", kind="emergency", kind_vi="Khẩn cấp", priority=2,
        priority_class="emergency", language="nung", title="Lũ", summary="Nước lên",
        source="Đài truyền thanh xã", start_ms=1000, end_ms=61_000,
        start_local="2026-11-23T08:00:00+07:00", end_local="2026-11-23T08:01:00+07:00",
        villages=["na-pan"], village_names=["Thôn Nà Pàn"], operator="canbo", approver="",
        placeholder=False)
    m = muc_phat(item)
    assert (m.loaiChuongTrinh, m.mucUuTien, m.thoiLuongGiay, m.ngonNgu) == (
        "KHAN_CAP", "KHAN_CAP", 60, "nung")
    assert (m.maThon, m.tenThon, m.choAmThanh) == (["na-pan"], ["Thôn Nà Pàn"], False)


def test_statistics_mapping() -> None:
    info = CommuneInfo("x", "Xã X", "Lạng Sơn", "mountainous", ZoneInfo("Asia/Ho_Chi_Minh"),
                       {"a": "Thôn A", "b": "Thôn B"})

    def line(kind: str, lang: str, outcome_a: str, outcome_b: str, secs: int) -> ProgrammeLine:
        return ProgrammeLine(
            key=f"{kind}@d", kind=kind, title="t", summary="", language=lang, priority=0,
            trigger="plan", source="", planned_start_ms=0, planned_end_ms=secs * 1000,
            start_ms=0, end_ms=secs * 1000,
            villages=[VillageOutcome("Thôn A", outcome_a), VillageOutcome("Thôn B", outcome_b)])

    stats = thong_ke(info, date(2026, 11, 1), date(2026, 11, 7), [
        line("vov_relay", "vi", AIRED, AIRED, 3600),
        line("local_bulletin", "tay", AIRED, MISSED, 900),
        line("local_bulletin", "vi", MISSED, MISSED, 600),
    ])
    assert (stats.tongSoMuc, stats.soMucDaPhat, stats.soMucPhatMotPhan,
            stats.soMucKhongPhat) == (3, 1, 1, 1)
    assert stats.soGioDaPhat == 1.25 and stats.soBanTinDiaPhuongDaPhat == 1
    by_kind = {t.loaiChuongTrinh: (t.soMuc, t.soMucDaPhat) for t in stats.theoLoai}
    assert by_kind == {"TIEP_SONG_TRUNG_UONG": (1, 1), "BAN_TIN_DIA_PHUONG": (2, 1)}
    assert {t.ngonNgu: t.soGioDaPhat for t in stats.theoNgonNgu} == {"vi": 1.0, "tay": 0.25}
    assert [(t.maThon, t.soMucCanPhat, t.soMucDaPhat) for t in stats.theoThon] == [
        ("a", 3, 2), ("b", 3, 1)]

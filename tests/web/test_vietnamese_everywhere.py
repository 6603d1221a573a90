"""Everything an officer or technician reads in Vietnamese is Vietnamese: the diary page, the
overview, the node pages, /health and the diary's and monthly report's downloads show no word
of the English the nodes report in (reason codes, "pre-empted by emergency", "stream ended",
alarm kinds, "amplifier draws 0 mA"), however the records are worded. A failure names the
page and the words."""

from __future__ import annotations

import csv
import html
import io
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine, update
from support.commune_diary import DAY, MIN, rec
from support.schedule_files import ms
from support.web_site import PASSWORD, login

from firmware import protocol
from headend.cli.main import main
from headend.core.auth import add_user
from headend.core.models import Node
from headend.nodes.ingest import store_reports
from headend.planning.schedule import Schedule
from headend.web.app import make_app

# The vocabularies the nodes and the headend's own health checks speak in English.
REASONS = [
    protocol.R_QUIET, protocol.R_EXPIRED, protocol.R_BUSY, protocol.R_SAFE_MODE,
    protocol.R_AMP_FAULT, protocol.R_NOT_VERIFIED, "pre-empted by emergency",
    "pre-empted by plan item", "stopped by reboot", "stream ended early",
    "stream: [Errno 104] ECONNRESET", "primary: stream ended; backup: eof",
    "media not cached (HTTP 404)", "media shorter than the slot", "stopped",
]
ENGLISH = re.compile(
    r"\b(pre-?empted|stream|streams|ended|early|media|cached|primary|backup|fallback|"
    r"quiet_hours|expired|amp_fault|not_verified|safe_mode|busy_emergency|amplifier|"
    r"offline|online|stopped|reboot|aired|missed|partial|failed|no_report|draws|"
    r"not heard|temperature|node_offline|village_silent|relay_failed|tone|slot)\b", re.I)


def visible(page: str) -> str:
    """The text a browser shows: no scripts, styles, tags or attribute values."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def english_in(text: str) -> list[str]:
    return sorted({m.group(0) for m in ENGLISH.finditer(text)})


def command_record(node: str, rid: int, trigger: str, media: str, title: str, start: int,
                   outcome: str, reason: str | None) -> tuple[str, str, dict[str, Any]]:
    aired = outcome in ("aired", "partial")
    return node, "asrun", {
        "v": 1, "t": "asrun", "node": node, "rid": rid, "cmd": f"c-{node}-{rid}",
        "trigger": trigger, "media": media, "title": title, "planned": None,
        "start": start if aired else None, "end": start + 20_000 if aired else None,
        "outcome": outcome, "reason": reason, "kind": "test" if media.startswith("tone")
        else None}


@pytest.fixture
def client(setup: tuple[Engine, Schedule], tmp_path: Path) -> TestClient:
    engine, _ = setup
    six, seven = ms(DAY, 6 * 60), ms(DAY, 7 * 60)
    nodes = ("n0-a", "n0-b", "n1-a", "n2-a")
    reports: list[tuple[str, str, dict[str, Any]]] = [
        rec("n0-a", 1, f"vov@{DAY}", "vov_relay", six, "partial",
            reason="pre-empted by emergency"),
        rec("n0-b", 1, f"vov@{DAY}", "vov_relay", six, "failed",
            reason="primary: stream ended; backup: eof"),
        rec("n1-a", 1, f"vov@{DAY}", "vov_relay", six, "aired", reason=protocol.R_NOT_VERIFIED),
        rec("n2-a", 1, f"vov@{DAY}", "vov_relay", six, "failed", reason=protocol.R_AMP_FAULT),
        rec("n0-a", 2, f"tin@{DAY}", "local_bulletin", six + 30 * MIN, "failed",
            reason="media not cached (HTTP 404)"),
        rec("n1-a", 2, f"tin@{DAY}", "local_bulletin", six + 30 * MIN, "aired",
            reason="media shorter than the slot"),
    ]
    # Airings nobody planned, one per reason left: a test tone, a notice, an emergency.
    for i, reason in enumerate(REASONS):
        node = nodes[i % len(nodes)]
        outcome = "missed" if reason in (protocol.R_QUIET, protocol.R_EXPIRED, protocol.R_BUSY,
                                         protocol.R_SAFE_MODE) else "partial"
        media = "tone:1000Hz" if i % 3 == 0 else f"http://127.0.0.1:8080/media/{i:016x}.wav"
        trigger = ("manual", "command", "emergency")[i % 3]
        reports.append(command_record(node, 10 + i, trigger, media, f"Thông báo số {i}",
                                      seven + i * 2 * MIN, outcome, reason))
    reports.append(("n1-a", "telemetry", {
        "v": 1, "t": "telemetry", "node": "n1-a", "at": six + 3000, "board": "esp32",
        "signal_dbm": -109, "link": "4g", "amp": True, "amp_fault": True, "amp_ma": 0,
        "temp_c": 78, "heap_free": 61000}))
    store_reports(engine, reports, seven + 60 * MIN)
    with engine.begin() as conn:
        conn.execute(update(Node).where(Node.id == "n0-b").values(online=False))
    add_user(engine, "admin", PASSWORD, "admin", [], ms(DAY))
    client = TestClient(make_app(engine, tmp_path, clock=lambda: ms(DAY, 12 * 60)))
    login(client, "admin")
    return client


@pytest.mark.parametrize("path", [
    f"/diary/thu?first={DAY}", "/c/thu", "/c/thu/nodes", "/health", "/communes",
])
def test_pages_speak_vietnamese(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text
    text = visible(r.text)
    assert english_in(text) == [], (path, [x for x in text.splitlines() if english_in(x)])


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "pdf"])
def test_downloads_speak_vietnamese(client: TestClient, tmp_path: Path, fmt: str) -> None:
    for what in (f"/diary/thu/export?fmt={fmt}&first={DAY}",
                 f"/diary/thu/report?fmt={fmt}&month={DAY:%Y-%m}"):
        r = client.get(what)
        assert r.status_code == 200, r.text
        if fmt == "csv":
            text = "\n".join(" | ".join(row) for row in csv.reader(
                io.StringIO(r.content.decode("utf-8-sig"))))
        elif fmt == "xlsx":
            book = load_workbook(io.BytesIO(r.content))
            text = "\n".join(" | ".join(str(c) for c in row if c is not None)
                             for ws in book.worksheets for row in ws.iter_rows(values_only=True))
        else:
            pdf = tmp_path / "d.pdf"
            pdf.write_bytes(r.content)
            text = subprocess.run(["pdftotext", str(pdf), "-"], check=True,
                                  capture_output=True, text=True).stdout
        assert english_in(text) == [], (what, [x for x in text.splitlines() if english_in(x)])
    # The reasons are there, in Vietnamese: the test looked at real content.
    r = client.get(f"/diary/thu/export?fmt=csv&first={DAY}")
    text = r.content.decode("utf-8-sig")
    for said in ("bị ngắt để phát tin khẩn cấp", "luồng chính: luồng âm thanh bị ngắt",
                 "ampli không đẩy ra loa", "đang trong giờ nghỉ của thôn", "Âm thử 1 kHz"):
        assert said in text, said


def test_the_command_line_speaks_vietnamese(client: TestClient, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """What the technician reads on the server: nodes, alarms and the diary."""
    home = ["--home", str(tmp_path / "home")]
    for args in (["nodes"], ["alarms", "--all"], ["diary", "--day", str(DAY)],
                 ["diary", "items", "--commune", "thu", "--from", str(DAY), "--to", str(DAY)]):
        code = main([*home, *args])
        out = capsys.readouterr().out
        assert code == 0 and out.strip(), args
        # (node ids, zone names and units are data, not words)
        assert english_in(out) == [], (args, [x for x in out.splitlines() if english_in(x)])

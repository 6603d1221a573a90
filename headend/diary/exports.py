"""The diary as a document an assessor signs: PDF (A4 landscape), XLSX or CSV.

`export_diary` lays out the commune's "Sổ nhật ký truyền thanh" for a range of days, one line per
programme item (`commune_diary.lines_for_days`), times in the commune's timezone. The three
formats carry the same columns and the same cell text, so a CSV row equals its XLSX row. The CSV
is the table alone (UTF-8 with a BOM, for Excel on Windows and for other software); the PDF and
the XLSX add the heading, the totals and the signature lines.

The writers work on a small neutral `Document` (heading, tables, summary lines, signatures), so
the monthly report (`headend.diary.monthly`) is rendered by the same code. A file is written beside
its final path and renamed into place: a failed or interrupted export leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from headend.diary.reconciliation import (
    AIRED,
    KIND_VI,
    LANGUAGE_VI,
    PARTIAL,
    PLANNED,
    TRIGGER_VI,
    CommuneInfo,
    DiaryQueryError,
    ProgrammeLine,
    lines_for_days,
    session_of,
)

FORMATS = ("pdf", "xlsx", "csv")
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}  # Debian: fonts-dejavu-core

# Airtime is grouped the way criterion 8.3 asks about it: the two relays and local production.
SOURCE_GROUPS = {"vov_relay": "vov", "province_relay": "province", "local_bulletin": "local",
                 "notice": "local", "emergency": "local"}
SOURCE_VI = {"vov": "Tiếp sóng VOV", "province": "Tiếp sóng Đài tỉnh",
             "local": "Chương trình địa phương", "other": "Khác (thử loa)"}

DIARY_COLUMNS = (
    "Ngày", "Buổi", "Giờ dự kiến (bắt đầu–kết thúc)", "Giờ thực tế (bắt đầu–kết thúc)",
    "Thời lượng", "Loại", "Tên chương trình / tóm tắt", "Nguồn", "Ngôn ngữ", "Thôn đã phát",
    "Thôn không phát (lý do)", "Người thực hiện", "Người duyệt", "Sự cố / ghi chú",
)
# Widths in mm on A4 landscape (277 mm between the margins); XLSX widths are derived from them.
DIARY_WIDTHS = (16, 10, 19, 19, 13, 18, 40, 20, 13, 29, 29, 18, 16, 17)
SIGNATURES = ("Người trực máy", "Trưởng ban biên tập")

Progress = Callable[[int, int], None]  # (rows written, rows in all)


class ExportError(ValueError):
    """An export that cannot be made: says what is wrong (format, path, range, commune)."""


# --- the neutral document ------------------------------------------------------------------


@dataclass
class Table:
    columns: Sequence[str]
    widths: Sequence[float]  # mm on the PDF page, in proportion
    rows: list[list[str]]
    title: str = ""
    total_row: list[str] | None = None  # PDF and XLSX only


@dataclass
class Document:
    province: str  # "Tỉnh Lạng Sơn"
    commune: str  # "Xã Tân Lang"
    title: str  # "SỔ NHẬT KÝ TRUYỀN THANH"
    subtitle: list[str]  # the period, the timezone
    tables: list[Table]
    summary: list[str] = field(default_factory=list)
    place: str = ""  # for "<place>, ngày ... tháng ... năm ..."
    signatures: Sequence[str] = SIGNATURES
    station: str = "Đài truyền thanh xã"

    @property
    def date_line(self) -> str:
        return f"{self.place or '.' * 12}, ngày ..... tháng ..... năm ........."

    def heading_rows(self) -> list[str]:
        return [self.province, self.commune, self.station, "", self.title, *self.subtitle]


# --- the diary -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    items: int
    aired: int  # fully or partly, in at least one village
    not_aired: int  # due and not heard anywhere (missed, failed, no report)
    pending: int  # not due yet
    airtime_s: dict[str, int]  # per SOURCE_GROUPS group (vov, province, local, other)

    @property
    def total_airtime_s(self) -> int:
        return sum(self.airtime_s.values())


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    fmt: str
    commune: str
    first: date
    last: date
    lines: int
    totals: Totals


def aired_s(line: ProgrammeLine) -> int:
    """Seconds the item sounded: from the first village's start to the last village's end."""
    if line.outcome not in (AIRED, PARTIAL):
        return 0
    return line.duration_s or 0


def source_group(kind: str) -> str:
    return SOURCE_GROUPS.get(kind, "other")


def totals(lines: Sequence[ProgrammeLine]) -> Totals:
    airtime = dict.fromkeys(SOURCE_VI, 0)
    aired = pending = 0
    for line in lines:
        outcome = line.outcome
        if outcome in (AIRED, PARTIAL):
            aired += 1
        elif outcome == PLANNED:
            pending += 1
        airtime[source_group(line.kind)] += aired_s(line)
    return Totals(len(lines), aired, len(lines) - aired - pending, pending, airtime)


def hms(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def hours_text(seconds: int) -> str:
    """"12 giờ 05 phút" (rounded to the minute)."""
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} giờ {m:02d} phút"


def vn_date(d: date) -> str:
    return d.strftime("%d/%m/%Y")


def _clock(ms: int | None, tz: ZoneInfo) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, tz).strftime("%H:%M")


def _span(start: int | None, end: int | None, tz: ZoneInfo) -> str:
    if start is None:
        return ""
    return f"{_clock(start, tz)}–{_clock(end, tz)}" if end is not None else _clock(start, tz)


def diary_row(line: ProgrammeLine, tz: ZoneInfo) -> list[str]:
    """One diary line as the cells of DIARY_COLUMNS."""
    at = line.sort_ms
    title = line.title or "(không có tên)"
    if line.summary:
        title = f"{title} — {line.summary}"
    notes = (["Chưa đến giờ phát"] if line.outcome == PLANNED else []) + line.notes
    duration = line.duration_s if line.outcome in (AIRED, PARTIAL) else None
    return [
        vn_date(datetime.fromtimestamp(at / 1000, tz).date()),
        session_of(at, tz),
        _span(line.planned_start_ms, line.planned_end_ms, tz),
        _span(line.start_ms, line.end_ms, tz) if duration is not None else "",
        hms(duration) if duration is not None else "",
        KIND_VI.get(line.kind, line.kind),
        title,
        line.source,
        LANGUAGE_VI.get(line.language, line.language),
        ", ".join(line.aired_villages),
        line.silent_text(),
        line.operator or TRIGGER_VI.get(line.trigger, line.trigger),
        line.approver,
        "; ".join(notes),
    ]


def province_label(info: CommuneInfo) -> str:
    p = info.province.strip()
    return p if p.lower().startswith(("tỉnh", "thành phố")) or not p else f"Tỉnh {p}"


def commune_label(info: CommuneInfo) -> str:
    n = info.name.strip()
    return n if n.lower().startswith(("xã", "phường", "thị trấn", "đặc khu")) else f"Xã {n}"


def place_name(info: CommuneInfo) -> str:
    """The name a Vietnamese document's date line starts with: "Tân Lang"."""
    n = info.name.strip()
    for prefix in ("Xã ", "Phường ", "Thị trấn ", "Đặc khu "):
        if n.startswith(prefix):
            return n[len(prefix):]
    return n


def period_line(first: date, last: date) -> str:
    return f"Từ ngày {vn_date(first)} đến ngày {vn_date(last)}"


def tz_line(tz: ZoneInfo, at: date) -> str:
    offset = datetime(at.year, at.month, at.day, 12, tzinfo=tz).strftime("%z")
    return f"Giờ theo múi giờ {tz.key} (UTC{offset[:3]}:{offset[3:]})"


def diary_document(info: CommuneInfo, lines: Sequence[ProgrammeLine], first: date,
                   last: date) -> tuple[Document, Totals]:
    t = totals(lines)
    total_row = [""] * len(DIARY_COLUMNS)
    total_row[0] = "Tổng cộng"
    total_row[4] = hms(t.total_airtime_s)
    total_row[6] = f"{t.items} lượt phát; đã phát {t.aired}; không phát {t.not_aired}"
    table = Table(DIARY_COLUMNS, DIARY_WIDTHS, [diary_row(x, info.tz) for x in lines],
                  total_row=total_row)
    by_kind = "; ".join(f"{SOURCE_VI[g]}: {hours_text(s)}" for g, s in t.airtime_s.items()
                        if s or g != "other")
    summary = [
        f"Tổng số lượt phát: {t.items} (đã phát: {t.aired}; không phát: {t.not_aired}"
        + (f"; chưa đến giờ: {t.pending})" if t.pending else ")"),
        f"Tổng thời lượng phát: {hours_text(t.total_airtime_s)} ({by_kind})",
    ]
    doc = Document(province_label(info), commune_label(info), "SỔ NHẬT KÝ TRUYỀN THANH",
                   [period_line(first, last), tz_line(info.tz, first)], [table], summary,
                   place_name(info))
    return doc, t


def export_diary(engine: Engine, commune_id: str, first: date, last: date, fmt: str,
                 output: Path, now_ms: int, progress: Progress | None = None) -> ExportSummary:
    """Write the commune's diary for the local days first..last (inclusive) to `output`.

    Raises ExportError for an unknown format, commune, a reversed or over-long range, a
    missing font (PDF) or a path that cannot be written."""
    fmt = check_format(fmt)
    try:
        info, lines = lines_for_days(engine, commune_id, first, last, now_ms)
    except DiaryQueryError as e:
        raise ExportError(str(e)) from e
    doc, t = diary_document(info, lines, first, last)
    write_document(doc, fmt, Path(output), progress)
    return ExportSummary(Path(output), fmt, info.name, first, last, len(lines), t)


# --- writers -------------------------------------------------------------------------------


def check_format(fmt: str) -> str:
    f = fmt.lower().lstrip(".")
    if f not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (use one of: {', '.join(FORMATS)})")
    return f


def format_of(path: Path) -> str:
    """The format a file name asks for ("so-nhat-ky.pdf" -> "pdf")."""
    return check_format(path.suffix or "?")


def font_paths(font_dir: Path | None = None) -> dict[str, Path]:
    """The DejaVu Sans files the PDF embeds (regular and bold), or ExportError."""
    paths = {style: (font_dir or FONT_DIR) / name for style, name in FONT_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ExportError(f"font not found: {', '.join(missing)} (install the Debian package "
                          "fonts-dejavu-core; the PDF needs a font with Vietnamese letters)")
    return paths


def write_document(doc: Document, fmt: str, output: Path,
                   progress: Progress | None = None) -> None:
    """Render `doc` and put it at `output` only once it is complete."""
    fmt = check_format(fmt)
    fonts = font_paths() if fmt == "pdf" else {}
    if output.is_dir():
        raise ExportError(f"cannot write {output}: it is a directory")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part",
                                        dir=output.parent)
    except OSError as e:
        raise ExportError(f"cannot write {output}: {e.strerror or e}") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            if fmt == "csv":
                _write_csv(doc, f, progress)
            elif fmt == "xlsx":
                _write_xlsx(doc, f, progress)
            else:
                _write_pdf(doc, f, fonts, progress)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except OSError as e:
        raise ExportError(f"cannot write {output}: {e.strerror or e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _nfc(text: str) -> str:
    # Vietnamese typed on some keyboards arrives decomposed; the fonts draw composed letters.
    return unicodedata.normalize("NFC", text)


def _counter(doc: Document, progress: Progress | None) -> Callable[[], None]:
    total = sum(len(t.rows) for t in doc.tables)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None and (done == total or done % 50 == 0):
            progress(done, total)

    return tick


FORMULA_START = ("=", "+", "-", "@")
ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # as openpyxl's own check


def _csv_text(value: str) -> str:
    """A cell that a spreadsheet opening the CSV reads as text, never as a formula: a title or
    a node's reason may start with = + - @ or a control character (OWASP CSV injection)."""
    text = _nfc(value)
    if text and (text.startswith(FORMULA_START) or text[0] < " "):
        return "'" + text
    return text


def _xlsx_put(ws: Any, row: int, col: int, value: str) -> Any:
    """A text cell, always text: openpyxl would store "=..." as a live formula, and refuses
    control characters (a node's reason may carry them) with an exception."""
    cell = ws.cell(row, col, ILLEGAL_XLSX.sub("", _nfc(value)))
    cell.data_type = "s"
    return cell


def _write_csv(doc: Document, f: IO[bytes], progress: Progress | None) -> None:
    tick = _counter(doc, progress)
    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
    try:
        w = csv.writer(text)
        for i, table in enumerate(doc.tables):
            if len(doc.tables) > 1:
                if i:
                    w.writerow([])
                w.writerow([_csv_text(table.title)])
            w.writerow([_csv_text(c) for c in table.columns])
            for row in table.rows:
                w.writerow([_csv_text(c) for c in row])
                tick()
    finally:
        text.flush()
        text.detach()  # the caller closes the file


def _write_xlsx(doc: Document, f: IO[bytes], progress: Progress | None) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    tick = _counter(doc, progress)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "So nhat ky" if doc.title.startswith("SỔ NHẬT KÝ") else "Bao cao"
    ncols = max(len(t.columns) for t in doc.tables)
    bold = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    thin = Side(style="thin")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    fill = PatternFill("solid", fgColor="E6E6E6")
    r = 1
    for text in doc.heading_rows():
        if text:
            _xlsx_put(ws, r, 1, text)
            if text in (doc.title, doc.commune):
                ws.cell(r, 1).font = Font(bold=True, size=14 if text == doc.title else 11)
        r += 1
    for table in doc.tables:
        r += 1
        if table.title:
            _xlsx_put(ws, r, 1, table.title).font = bold
            r += 1
        for c, name in enumerate(table.columns, 1):
            cell = _xlsx_put(ws, r, c, name)
            cell.font, cell.alignment, cell.border, cell.fill = bold, wrap, box, fill
        if len(doc.tables) == 1:
            ws.freeze_panes = f"A{r + 1}"  # the column names stay in view
            ws.print_title_rows = f"{r}:{r}"
        r += 1
        for row in table.rows:
            for c, value in enumerate(row, 1):
                cell = _xlsx_put(ws, r, c, value)
                cell.alignment, cell.border = wrap, box
            r += 1
            tick()
        if table.total_row:
            for c, value in enumerate(table.total_row, 1):
                cell = _xlsx_put(ws, r, c, value)
                cell.font, cell.alignment, cell.border = bold, wrap, box
            r += 1
    r += 1
    for text in doc.summary:
        _xlsx_put(ws, r, 1, text)
        r += 1
    r += 1
    right = max(1, ncols - 3)
    _xlsx_put(ws, r, right, doc.date_line)
    r += 1
    for who, col in zip(doc.signatures, (2, right), strict=False):
        _xlsx_put(ws, r, col, who).font = bold
        _xlsx_put(ws, r + 1, col, "(ký, ghi rõ họ tên)")
    widths = max(doc.tables, key=lambda t: len(t.columns)).widths
    for c, mm in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(c)].width = max(8.0, mm * 0.75)
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    if ws.sheet_properties.pageSetUpPr is not None:
        ws.sheet_properties.pageSetUpPr.fitToPage = True
    wb.save(f)


def _write_pdf(doc: Document, f: IO[bytes], fonts: dict[str, Path],
               progress: Progress | None) -> None:
    from fpdf import FPDF

    tick = _counter(doc, progress)
    margin = 10.0

    class Page(FPDF):
        def header(self) -> None:
            if self.page_no() > 1:  # the first page has the full heading
                self.set_font("DejaVu", "", 7)
                self.cell(0, 4, _nfc(f"{doc.title} – {doc.commune} – {doc.subtitle[0]}"),
                          align="R")
                self.ln(6)

        def footer(self) -> None:
            self.set_y(-9)
            self.set_font("DejaVu", "", 7)
            self.cell(0, 4, f"Trang {self.page_no()}/{{nb}}", align="C")

    pdf = Page(orientation="L", unit="mm", format="A4")
    pdf.set_margins(margin, margin, margin)
    pdf.set_auto_page_break(True, margin=12)
    for style, path in fonts.items():
        pdf.add_font("DejaVu", style, str(path))
    pdf.set_title(_nfc(f"{doc.title} – {doc.commune}"))
    pdf.set_author(_nfc(f"{doc.station} – {doc.commune}"))
    pdf.set_creator("LoaXa")
    pdf.add_page()
    width = pdf.w - 2 * margin
    half = width / 2
    left = [(doc.province, ""), (doc.commune, "B"), (doc.station, "")]
    right = [("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "B"), ("Độc lập - Tự do - Hạnh phúc", "B")]
    top = pdf.get_y()
    for i in range(max(len(left), len(right))):
        pdf.set_xy(margin, top + 5 * i)
        if i < len(left):
            pdf.set_font("DejaVu", left[i][1], 10)
            pdf.cell(half * 0.6, 5, _nfc(left[i][0]), align="C")
        if i < len(right):
            pdf.set_xy(margin + half, top + 5 * i)
            pdf.set_font("DejaVu", right[i][1], 10)
            pdf.cell(half, 5, _nfc(right[i][0]), align="C")
    pdf.set_y(top + 5 * max(len(left), len(right)) + 4)
    pdf.set_font("DejaVu", "B", 15)
    pdf.cell(0, 8, _nfc(doc.title), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 10)
    for text in doc.subtitle:
        pdf.cell(0, 5, _nfc(text), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for table in doc.tables:
        if table.title:
            pdf.set_font("DejaVu", "B", 9)
            pdf.cell(0, 6, _nfc(table.title), new_x="LMARGIN", new_y="NEXT")
        size = 6.5 if len(table.columns) > 8 else 8.5
        _pdf_table(pdf, table, size, min(width, sum(table.widths)), tick)
        pdf.ln(3)
    pdf.set_font("DejaVu", "", 9)
    for text in doc.summary:
        pdf.multi_cell(0, 5, _nfc(text), new_x="LMARGIN", new_y="NEXT")
    if pdf.get_y() > pdf.h - 45:  # keep the signature block on one page
        pdf.add_page()
    pdf.ln(4)
    y = pdf.get_y()
    pdf.set_font("DejaVu", "", 9)
    pdf.set_xy(margin + half, y)
    pdf.cell(half, 5, _nfc(doc.date_line), align="C")
    y += 6
    for i, who in enumerate(doc.signatures[:2]):
        x = margin + i * half
        pdf.set_xy(x, y)
        pdf.set_font("DejaVu", "B", 10)
        pdf.cell(half, 5, _nfc(who), align="C")
        pdf.set_xy(x, y + 5)
        pdf.set_font("DejaVu", "", 9)
        pdf.cell(half, 5, "(ký, ghi rõ họ tên)", align="C")
    f.write(bytes(pdf.output()))


class _Widths:
    """Glyph widths of the current font, measured once per character: fpdf2's own table
    measures every cell character by character and took 4-6 s for a month (bench diary)."""

    def __init__(self, pdf: Any) -> None:
        self.pdf = pdf
        self.cache: dict[tuple[str, float, str], float] = {}

    def of(self, text: str) -> float:
        key = (self.pdf.font_style, self.pdf.font_size_pt)
        total = 0.0
        for ch in text:
            w = self.cache.get((*key, ch))
            if w is None:
                w = self.cache[(*key, ch)] = self.pdf.get_string_width(ch)
            total += w
        return total

    def wrap(self, text: str, width: float) -> list[str]:
        """Lines of at most `width` mm, broken between words (inside a word only when one
        word is wider than the cell)."""
        lines: list[str] = []
        for para in text.split("\n"):
            line, used = "", 0.0
            space = self.of(" ")
            for word in para.split(" "):
                w = self.of(word)
                if line and used + space + w <= width:
                    line, used = f"{line} {word}", used + space + w
                    continue
                if line:
                    lines.append(line)
                line, used = "", 0.0
                while w > width and len(word) > 1:  # a very long word: cut it
                    cut = len(word)
                    while cut > 1 and self.of(word[:cut]) > width:
                        cut -= 1
                    lines.append(word[:cut])
                    word = word[cut:]
                    w = self.of(word)
                line, used = word, w
            lines.append(line)
        return lines or [""]


def _pdf_table(pdf: Any, table: Table, size: float, width: float,
               tick: Callable[[], None]) -> None:
    """A ruled table with its heading repeated on every page, rows never split over pages."""
    pad, line_h = 0.8, size * 0.45
    scale = width / sum(table.widths)
    cols = [w * scale for w in table.widths]
    x0 = pdf.l_margin
    bottom = pdf.h - 12
    widths = _Widths(pdf)

    def row_lines(cells: Sequence[str], style: str) -> list[list[str]]:
        pdf.set_font("DejaVu", style, size)
        return [widths.wrap(_nfc(c), w - 2 * pad) for c, w in zip(cells, cols, strict=True)]

    heading = row_lines(table.columns, "B")

    def draw(lines: list[list[str]], style: str, fill: bool, centre: bool = False) -> None:
        height = max(len(cell) for cell in lines) * line_h + 2 * pad
        if pdf.get_y() + height > bottom:
            pdf.add_page()
            if not fill:  # a data row on a new page: the heading first
                draw(heading, "B", True, True)
        y, x = pdf.get_y(), x0
        pdf.set_font("DejaVu", style, size)
        for cell, w in zip(lines, cols, strict=True):
            pdf.rect(x, y, w, height, style="DF" if fill else "D")
            for k, text in enumerate(cell):
                dx = (w - 2 * pad - widths.of(text)) / 2 if centre else 0.0
                pdf.text(x + pad + dx, y + pad + line_h * (k + 0.78), text)
            x += w
        pdf.set_y(y + height)

    pdf.set_draw_color(0)
    pdf.set_fill_color(230, 230, 230)
    pdf.set_line_width(0.15)
    draw(heading, "B", True, True)
    for cells in table.rows:
        draw(row_lines(cells, ""), "", False)
        tick()
    if table.total_row:
        draw(row_lines(table.total_row, "B"), "B", False)
    pdf.set_x(x0)

"""`loaxa diary items|export|report|correct` on the command line: what a technician sees, and
clear errors for bad requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, select
from support.cli import run_main
from support.commune_diary import DAY, commune_home, rec
from support.schedule_files import ms

from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import AsRunRecord
from headend.nodes.ingest import store_reports


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home, engine, _ = commune_home(tmp_path)
    six = ms(DAY, 6 * 60)
    store_reports(engine, [rec("n0-a", 1, f"vov@{DAY}", "vov_relay", six),
                           rec("n1-a", 1, f"vov@{DAY}", "vov_relay", six, "missed",
                               reason="mất điện")], six + 3600_000)
    engine.dispose()
    return home


def entry_id(engine: Engine, node: str) -> int:
    with engine.connect() as conn:
        value = conn.scalar(select(AsRunRecord.id).where(AsRunRecord.node_id == node))
    assert value is not None
    return int(value)


def test_items_export_correct_and_report(home: Home, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    h = ["--home", str(home.root)]
    code, out, _ = run_main(capsys, *h, "diary", "items", "--commune", "thu", "--from",
                            str(DAY), "--to", str(DAY))
    assert code == 0 and "Xã Thử" in out and "trang 1/1" in out
    assert ("thôn đã phát: Thôn 0; không phát: Thôn 1 (Bỏ lỡ: mất điện); "
            "Bản 2 (Chưa có báo cáo)") in out
    xlsx = tmp_path / "so.xlsx"
    code, out, _ = run_main(capsys, *h, "diary", "export", "--commune", "thu", "--from",
                            str(DAY), "--to", str(DAY), "--format", "xlsx", "--output",
                            str(xlsx))
    assert code == 0 and "2 chương trình, 1 đã phát" in out
    sheet = load_workbook(xlsx).active
    assert sheet is not None
    cells = {str(c) for row in sheet.iter_rows(values_only=True) for c in row if c}
    assert "Thôn 1 (Bỏ lỡ: mất điện); Bản 2 (Chưa có báo cáo)" in cells
    engine = open_db(home.db_url)
    wrong = entry_id(engine, "n1-a")
    engine.dispose()
    code, out, _ = run_main(capsys, *h, "diary", "correct", str(wrong), "--outcome", "aired",
                            "--note", "Loa vẫn phát, báo cáo sai", "--by", "Kỹ thuật viên B")
    assert code == 0 and "bằng mục mới" in out
    code, out, _ = run_main(capsys, *h, "diary", "items", "--commune", "thu", "--from",
                            str(DAY), "--to", str(DAY))
    assert "thôn đã phát: Thôn 0, Thôn 1; không phát: Bản 2" in out
    code, out, _ = run_main(capsys, *h, "diary", "verify")
    assert code == 0
    code, out, _ = run_main(capsys, *h, "diary", "report", "--commune", "thu", "--month",
                            "2026-11")
    assert code == 0 and "Xã Thử" in out


@pytest.mark.parametrize(("args", "message"), [
    (["items", "--commune", "nowhere", "--from", "2026-11-01", "--to", "2026-11-02"],
     "unknown commune 'nowhere'"),
    (["items", "--commune", "thu", "--from", "2026-11-02", "--to", "2026-11-01"],
     "ends (2026-11-01) before it starts (2026-11-02)"),
    (["export", "--commune", "thu", "--from", "2016-01-01", "--to", "2025-12-31",
      "--format", "pdf", "--output", "x.pdf"], "3653 days asked for; at most 366"),
    (["items", "--commune", "thu", "--from", "2026-11-01", "--to", "2026-11-01",
      "--page", "2"], "page 2 asked for; the range has 1 page(s)"),
    (["correct", "999", "--outcome", "aired", "--note", "x", "--by", "y"],
     "no diary entry with id 999"),
    (["export", "--commune", "thu", "--from", "2026-11-01", "--to", "2026-11-01",
      "--format", "pdf", "--output", "/nonexistent/dir/x.pdf"], "/nonexistent/dir"),
    (["report", "--commune", "thu", "--month", "2026-13"], "not a month"),
])
def test_bad_requests_are_clear_errors(home: Home, capsys: pytest.CaptureFixture[str],
                                       args: list[str], message: str) -> None:
    code, _, err = run_main(capsys, "--home", str(home.root), "diary", *args)
    assert code == 2 and message in err

"""`loaxa bench web` on two weeks of data: the generated commune is one the app serves (its
schedule file loads, the calendar shows the generated bulletins, the diary its entries), and the
command prints every figure with a verdict."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from headend.bench.diary import FIRST_DAY
from headend.bench.web import build_commune, measure_pages
from headend.core.db import open_db
from headend.planning.calendar import effective, occurrences
from headend.planning.schedule import load_schedule

LOAXA = str(Path(sys.executable).parent / "loaxa")


def test_the_generated_commune_is_served_with_its_calendar_and_diary(tmp_path: Path) -> None:
    db, schedule_path, cid, now = build_commune(tmp_path, 3, 14, lambda _: None)
    schedule = load_schedule(schedule_path)
    assert [v.id for v in schedule.commune.villages] == [f"{cid}-thon-0{i}" for i in (1, 2, 3)]
    engine = open_db(f"sqlite:///{db}")
    week = occurrences(effective(engine, schedule, tmp_path / "media"), FIRST_DAY,
                       FIRST_DAY + timedelta(days=6))
    engine.dispose()
    bulletin_days = {o.day for o in week if o.title.startswith("Bản tin ngày")}
    assert {d.weekday() for d in bulletin_days} == {0, 2, 4}  # three bulletins a week
    assert sum(o.kind == "vov_relay" for o in week) == 7 * 4
    times = measure_pages(db, schedule_path, cid, now, 14, rounds=6)
    assert [t.name.split(" ")[0] for t in times] == ["calendar,", "diary", "diary", "reference:"]
    assert all(len(t.ms) == 6 and min(t.ms) > 0 for t in times)
    assert date.fromtimestamp(now / 1000) == FIRST_DAY + timedelta(days=13)


def test_the_command_prints_its_figures_and_a_verdict() -> None:
    out = subprocess.run([LOAXA, "bench", "web", "--villages", "2", "--days", "7", "--rounds",
                          "5", "--upload-minutes", "0.2", "--upload-runs", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr
    for what in ("calendar, a week", "diary page, a day", "reference: /healthz",
                 "bare ffmpeg transcodes", "prepare_upload", "verdict: "):
        assert what in out.stdout, out.stdout

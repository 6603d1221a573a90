"""`loaxa bench diary` on a tiny province: the generated diary is a real one (counts, chain that
`loaxa diary verify` accepts, migrated schema) and the measurement runs against it."""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from headend.bench import diary as bd
from headend.core.db import open_db
from headend.diary import chain
from headend.diary.reconciliation import lines_for_days

COMMUNES, VILLAGES, DAYS, ITEMS = 2, 3, 10, 9


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "diary.db"
    report = bd.build(path, COMMUNES, VILLAGES, DAYS, ITEMS, log=lambda _: None)
    assert report.rows == COMMUNES * VILLAGES * DAYS * ITEMS
    assert report.programme == COMMUNES * DAYS * ITEMS
    return path


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    engine = open_db(f"sqlite:///{db_path}")  # migrating again is a no-op on a current schema
    yield engine
    engine.dispose()


def _schema(path: Path) -> set[tuple[str, str, str | None]]:
    with sqlite3.connect(path) as db:
        return {(t, n, s) for t, n, s in db.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'")}


def test_generated_rows_are_a_province_diary(db_path: Path, tmp_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        per_node = dict(db.execute("SELECT node_id, count(*) FROM asrun GROUP BY node_id"))
        outcomes = dict(db.execute("SELECT outcome, count(*) FROM asrun GROUP BY outcome"))
        heads = dict(db.execute("SELECT commune_id, seq FROM diary_heads"))
        unplanned = db.execute(
            "SELECT count(*) FROM asrun a LEFT JOIN programme p ON p.commune_id = a.commune_id "
            "AND p.occurrence = a.item_id WHERE p.id IS NULL").fetchone()[0]
        late = db.execute("SELECT count(*) FROM asrun WHERE start_ms < planned_start_ms "
                          "OR start_ms > planned_end_ms").fetchone()[0]
    assert len(per_node) == COMMUNES * VILLAGES
    assert set(per_node.values()) == {DAYS * ITEMS}
    assert heads == {bd.commune_id(c): VILLAGES * DAYS * ITEMS for c in range(COMMUNES)}
    assert unplanned == 0  # every entry is the airing of a programme item of its commune
    assert late == 0  # nothing starts before its plan or after its planned end
    assert outcomes["aired"] > 0.9 * sum(outcomes.values())
    # The same schema and indexes as a freshly migrated database.
    fresh = tmp_path / "fresh.db"
    open_db(f"sqlite:///{fresh}").dispose()
    assert _schema(db_path) == _schema(fresh)


def test_the_chain_verifies_and_an_edit_is_found(db_path: Path, tmp_path: Path) -> None:
    engine = open_db(f"sqlite:///{db_path}")
    communes = [bd.commune_id(c) for c in range(COMMUNES)]
    assert chain.verify(engine, communes) == []
    engine.dispose()
    copy = tmp_path / "copy.db"
    with sqlite3.connect(db_path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE asrun SET outcome = 'aired' WHERE outcome != 'aired' "
                   "AND commune_id = 'xa-002' AND chain_seq = (SELECT min(chain_seq) FROM asrun "
                   "WHERE outcome != 'aired' AND commune_id = 'xa-002')")
    tampered = open_db(f"sqlite:///{copy}")
    problems = chain.verify(tampered, communes)
    tampered.dispose()
    assert [p.commune_id for p in problems] == ["xa-002"]


def test_reuse_only_a_matching_database(db_path: Path) -> None:
    assert bd.reuse_problem(db_path, COMMUNES, VILLAGES, DAYS, ITEMS) is None
    assert "entries" in (bd.reuse_problem(db_path, COMMUNES, VILLAGES, DAYS, 8) or "")
    assert "communes" in (bd.reuse_problem(db_path, 3, VILLAGES, DAYS, ITEMS) or "")
    assert bd.reuse_problem(db_path, COMMUNES, VILLAGES, DAYS + 1, ITEMS) is not None


def test_diary_page_lines_for_a_generated_day(engine: Engine) -> None:
    day = bd.FIRST_DAY + timedelta(days=DAYS - 1)
    now = bd._day_start_ms(day + timedelta(days=1))
    _, lines = lines_for_days(engine, "xa-001", day, day, now)
    assert len(lines) == ITEMS
    assert all(len(line.villages) == VILLAGES for line in lines)
    assert [line.kind for line in lines].count("vov_relay") == 4


def test_measurement_runs(engine: Engine, db_path: Path, tmp_path: Path) -> None:
    timings = bd.measure(engine, db_path, COMMUNES, DAYS, rounds=2, formats=("csv",),
                         out_dir=tmp_path, log=lambda _: None)
    by_name = {t.name: t for t in timings}
    page = by_name["commune diary, one day (lines_for_days)"]
    assert len(page.runs) == 2 and page.met is not None
    ref = by_name["reference: bare SELECT of the day's rows"]
    # Entries that started that day (missed and failed ones have no start).
    assert 0 < float(ref.note.split()[0]) <= VILLAGES * ITEMS
    table = "\n".join(bd.format_table(timings))
    assert "commune diary, one day" in table and "ms" in table


def test_the_command_reuses_its_database(db_path: Path, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    bd.add_parser(parser.add_subparsers(dest="bench"))
    wrong = parser.parse_args(["diary", "--db", str(db_path), "--communes", "3"])
    assert bd.run_diary(wrong) == 2
    assert "does not match" in capsys.readouterr().out
    fresh = tmp_path / "new.db"
    args = parser.parse_args(["diary", "--db", str(fresh), "--communes", "1", "--villages", "2",
                              "--years", "1", "--items-per-day", "3", "--rounds", "1",
                              "--formats", "csv"])
    assert bd.run_diary(args) in (0, 1)
    out = capsys.readouterr().out
    assert "2,196 as-run entries" in out and "verdict:" in out
    assert bd.reuse_problem(fresh, 1, 2, 366, 3) is None

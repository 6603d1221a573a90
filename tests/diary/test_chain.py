"""The diary's hash chain: intact chains verify, and every kind of tampering with the database
(edit, delete, reorder, insert, truncate) is found and located by `loaxa diary verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session
from support.cli import run_main
from support.loaxa_stack import small_commune

from headend.communes.registry import provision_commune
from headend.core.db import alembic_config, open_db
from headend.core.home import Home
from headend.core.models import AsRunRecord
from headend.diary import chain
from headend.nodes.ingest import store_reports

COMMUNE = "test-xa"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, small_commune(2))
    engine.dispose()
    return home


@pytest.fixture
def engine(home: Home) -> Engine:
    return open_db(home.db_url)


def record(node: str, rid: int, outcome: str = "aired") -> dict[str, Any]:
    return {"v": 1, "t": "asrun", "node": node, "rid": rid, "trigger": "plan",
            "item": f"news@2026-11-0{rid % 9 + 1}", "kind": "local_bulletin", "p": 0,
            "lang": "vi", "title": f"Bản tin số {rid}", "planned": 1000 * rid,
            "planned_end": 1000 * rid + 900, "start": 1000 * rid + 5, "end": 1000 * rid + 900,
            "outcome": outcome, "src": "cache"}


def fill(engine: Engine, n: int = 6) -> None:
    # Two batches, two nodes interleaved: one chain for the commune, in storing order.
    store_reports(engine, [("n0001", "asrun", record("n0001", r)) for r in range(1, n, 2)], 10)
    store_reports(engine, [("n0002", "asrun", record("n0002", r)) for r in range(2, n + 1, 2)],
                  20)


def problems(engine: Engine) -> list[str]:
    return [str(p) for p in chain.verify(engine, [COMMUNE])]


def tamper(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql))


def test_stored_entries_form_one_numbered_chain_per_commune(engine: Engine) -> None:
    fill(engine)
    with Session(engine) as s:
        rows = s.scalars(select(AsRunRecord).order_by(AsRunRecord.chain_seq)).all()
    assert [r.chain_seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {r.commune_id for r in rows} == {COMMUNE}
    # A record sent again after a lost ack is not a new entry.
    store_reports(engine, [("n0001", "asrun", record("n0001", 1))], 30)
    assert problems(engine) == []
    with Session(engine) as s:
        assert len(s.scalars(select(AsRunRecord)).all()) == 6


def test_an_edited_entry_is_found_where_it_is(engine: Engine) -> None:
    fill(engine)
    tamper(engine, "UPDATE asrun SET outcome = 'aired', title = 'Bản tin đã sửa' "
                   "WHERE chain_seq = 3")
    assert len(problems(engine)) == 1
    assert "entry #3" in problems(engine)[0] and "does not match its hash" in problems(engine)[0]


def test_an_edit_that_recomputes_its_own_hash_breaks_the_next_link(engine: Engine) -> None:
    fill(engine)
    with Session(engine) as s:
        prev = s.scalar(select(AsRunRecord.hash).where(AsRunRecord.chain_seq == 2))
        row = s.scalars(select(AsRunRecord).where(AsRunRecord.chain_seq == 3)).one()
        row.end_ms = (row.end_ms or 0) + 60_000
        entry = {f: getattr(row, f) for f in chain.FIELDS}
        row.hash = chain.entry_hash(prev or "", entry)
        s.commit()
    [found] = problems(engine)
    assert "entry #4" in found


def test_a_deleted_entry_is_found(engine: Engine) -> None:
    fill(engine)
    tamper(engine, "DELETE FROM asrun WHERE chain_seq = 4")
    [found] = problems(engine)
    assert "entries #4 are missing" in found


def test_entries_cut_off_the_end_are_found(engine: Engine) -> None:
    fill(engine)
    tamper(engine, "DELETE FROM asrun WHERE chain_seq >= 5")
    [found] = problems(engine)
    assert "the last entries #5 to #6 are missing" in found


def test_reordered_entries_are_found(engine: Engine) -> None:
    fill(engine)
    tamper(engine, "UPDATE asrun SET chain_seq = -1 WHERE chain_seq = 2")
    tamper(engine, "UPDATE asrun SET chain_seq = 2 WHERE chain_seq = 5")
    tamper(engine, "UPDATE asrun SET chain_seq = 5 WHERE chain_seq = -1")
    found = problems(engine)
    assert any("entry #2" in p for p in found) and any("entry #5" in p for p in found)


def test_an_inserted_entry_is_found(engine: Engine) -> None:
    fill(engine)
    tamper(engine, "INSERT INTO asrun (node_id, rid, trigger, media, title, outcome, "
                   "received_ms, commune_id) VALUES ('n0001', 99, 'plan', '', 'Giả', 'aired', "
                   f"1, '{COMMUNE}')")
    [found] = problems(engine)
    assert "inserted outside the chain" in found


def test_a_correction_is_a_new_entry_and_keeps_the_chain_intact(engine: Engine) -> None:
    fill(engine)
    with Session(engine) as s:
        old = s.scalars(select(AsRunRecord).where(AsRunRecord.chain_seq == 2)).one()
        old_id, old_outcome = old.id, old.outcome
    new_id = chain.correct(engine, old_id, "missed", "Mất điện thôn 2, loa không kêu",
                           "Nguyễn Văn A", 40)
    with Session(engine) as s:
        new = s.get(AsRunRecord, new_id)
        assert new is not None and s.get(AsRunRecord, old_id) is not None
        assert (new.chain_seq, new.corrects_id, new.outcome) == (7, old_id, "missed")
        assert s.get(AsRunRecord, old_id).outcome == old_outcome  # type: ignore[union-attr]
    assert problems(engine) == []
    with pytest.raises(chain.CorrectionError):
        chain.correct(engine, 12345, "missed", "x", "y", 50)
    with pytest.raises(chain.CorrectionError):
        chain.correct(engine, old_id, "missed", " ", "y", 50)


def test_entries_stored_before_the_chain_join_it_on_upgrade(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "old")
    engine = create_engine(home.db_url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.execute(text("INSERT INTO communes (id, name, province, timezone) "
                          "VALUES ('c1', 'Xã Một', 'Lạng Sơn', 'Asia/Ho_Chi_Minh')"))
        conn.execute(text("INSERT INTO villages (id, commune_id, name) VALUES ('v1', 'c1', 'T')"))
        conn.execute(text("INSERT INTO nodes (id, village_id, key, seq, online, session) "
                          "VALUES ('a1', 'v1', 'k', 0, 0, 0)"))
        for rid in (1, 2, 3):
            conn.execute(text("INSERT INTO asrun (node_id, rid, trigger, media, title, outcome, "
                              "received_ms) VALUES ('a1', :r, 'command', '', 'Tin', 'aired', 5)"),
                         {"r": rid})
    engine.dispose()
    engine = open_db(home.db_url)
    with Session(engine) as s:
        assert s.scalars(select(AsRunRecord.chain_seq).order_by(AsRunRecord.id)).all() == [1, 2, 3]
    assert chain.verify(engine, ["c1"]) == []


def test_cli_verify_reports_tampering_and_exits_nonzero(
        home: Home, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    fill(engine)
    code, out, _ = run_main(capsys, "--home", str(home.root), "diary", "verify")
    assert code == 0 and "Sổ nhật ký nguyên vẹn (diary intact): đã kiểm 6 mục" in out
    tamper(engine, "DELETE FROM asrun WHERE chain_seq = 3")
    code, out, _ = run_main(capsys, "--home", str(home.root), "diary", "verify",
                            "--commune", COMMUNE)
    assert code == 1 and f"{COMMUNE}: entry #4" in out and "#3 are missing" in out
    code, _, err = run_main(capsys, "--home", str(home.root), "diary", "verify",
                            "--commune", "nowhere")
    assert code == 2 and "unknown commune 'nowhere'" in err

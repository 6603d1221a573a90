"""The commune diary: programme items from the plans, reconciled with what each node recorded:
planned beside actual, villages that aired an item and those that did not (and why)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from support.commune_diary import DAY, MIN, rec
from support.schedule_files import load, ms, slot

from headend.core.models import Command, Programme
from headend.diary import chain, reasons
from headend.diary.reasons import reason_vi
from headend.diary.reconciliation import (
    AIRED,
    MISSED,
    NO_REPORT,
    PARTIAL,
    PLANNED,
    DiaryQueryError,
    commune_info,
    lines_for_days,
)
from headend.nodes.gateway import Gateway
from headend.nodes.ingest import store_reports
from headend.planning.expansion import expand
from headend.planning.programme import record_programme
from headend.planning.schedule import Schedule


def test_each_programme_item_lists_the_villages_that_aired_it_and_those_that_did_not(
        setup: tuple[Engine, Schedule]) -> None:
    engine, _ = setup
    vov, tin = f"vov@{DAY}", f"tin@{DAY}"
    six, six30 = ms(DAY, 6 * 60), ms(DAY, 6 * 60 + 30)
    store_reports(engine, [
        rec("n0-a", 1, vov, "vov_relay", six),
        rec("n0-b", 1, vov, "vov_relay", six, MISSED, reason="quiet_hours"),
        rec("n1-a", 1, vov, "vov_relay", six, late_ms=1500),
        rec("n1-a", 2, tin, "local_bulletin", six30),
        rec("n2-a", 1, tin, "local_bulletin", six30, MISSED, reason="node off"),
        # n2-a never reports the relay: its village shows "no report".
    ], six30 + 20 * MIN)
    info, lines = lines_for_days(engine, "thu", DAY, DAY, now_ms=ms(DAY, 12 * 60))
    assert info.name == "Xã Thử"
    by_key = {line.key: line for line in lines}
    assert list(by_key) == [vov, tin]
    relay = by_key[vov]
    assert (relay.planned_start_ms, relay.planned_end_ms) == (six, six30)
    assert relay.start_ms == six + 1500 and relay.source == "VOV1 – luồng chính"
    # Thôn 0 aired it on one of its two nodes: the village aired it.
    assert relay.aired_villages == ["Thôn 0", "Thôn 1"]
    assert [(v.village, v.outcome) for v in relay.silent_villages] == [("Bản 2", NO_REPORT)]
    assert relay.outcome == PARTIAL
    bulletin = by_key[tin]
    assert bulletin.aired_villages == ["Thôn 1"]  # the group g: v1 and v2 only
    assert [(v.village, v.outcome, v.reason) for v in bulletin.silent_villages] == [
        ("Bản 2", MISSED, "node off")]
    # The reason stands beside the village that did not air, not again in the notes.
    assert bulletin.silent_text() == "Bản 2 (Bỏ lỡ: node off)" and bulletin.notes == []


def test_an_item_not_yet_due_is_planned_and_a_correction_changes_the_outcome(
        setup: tuple[Engine, Schedule]) -> None:
    engine, _ = setup
    vov = f"vov@{DAY}"
    six = ms(DAY, 6 * 60)
    [line, _] = lines_for_days(engine, "thu", DAY, DAY, now_ms=ms(DAY, 5 * 60))[1]
    assert line.outcome == PLANNED
    store_reports(engine, [rec(node, 1, vov, "vov_relay", six, MISSED, reason="power cut")
                           for node in ("n0-a", "n0-b", "n1-a", "n2-a")], six + 40 * MIN)
    [line, _] = lines_for_days(engine, "thu", DAY, DAY, now_ms=ms(DAY, 12 * 60))[1]
    assert line.outcome == MISSED and line.aired_villages == []
    with engine.connect() as conn:
        from headend.core.models import AsRunRecord
        entry = conn.scalar(select(AsRunRecord.id).where(AsRunRecord.node_id == "n2-a"))
    assert entry is not None
    chain.correct(engine, entry, AIRED, "Kiểm tra lại: loa thôn vẫn phát (mất báo cáo)",
                  "Trưởng đài", six + 60 * MIN)
    [line, _] = lines_for_days(engine, "thu", DAY, DAY, now_ms=ms(DAY, 12 * 60))[1]
    assert line.aired_villages == ["Bản 2"]
    assert any("Trưởng đài" in n for n in line.notes)


def test_an_emergency_to_several_nodes_is_one_line(setup: tuple[Engine, Schedule]) -> None:
    engine, _ = setup
    cmds = Gateway(engine, 1, "x", clock=lambda: ms(DAY, 9 * 60)).prepare(
        ["n0-a", "n1-a", "n2-a"], "emergency", {"url": "http://h:1/bao.wav"},
        operator="Cán bộ VH", title="Bão số 5")
    start = ms(DAY, 9 * 60) + 300
    store_reports(engine, [(c.node_id, "asrun", {
        "v": 1, "t": "asrun", "node": c.node_id, "rid": 7, "cmd": c.id,
        "trigger": "emergency", "media": "http://h:1/bao.wav", "title": "Bão số 5",
        "start": start, "end": start + MIN, "outcome": AIRED}) for c in cmds], start + MIN)
    lines = lines_for_days(engine, "thu", DAY, DAY, now_ms=ms(DAY, 12 * 60))[1]
    [em] = [line for line in lines if line.trigger == "emergency"]
    assert em.kind == "emergency" and em.operator == "Cán bộ VH"
    assert em.aired_villages == ["Thôn 0", "Thôn 1", "Bản 2"] and em.outcome == AIRED


def test_the_programme_follows_schedule_changes_until_an_item_starts(
        tmp_path: Path, setup: tuple[Engine, Schedule]) -> None:
    engine, _ = setup
    lo, hi = ms(DAY), ms(DAY, 24 * 60)
    changed = load(tmp_path, slot("vov", "vov_relay", "06:00", "06:20"), "changed.toml")
    # At 06:10 the relay has started (it stays as it was); the bulletin has not (it is gone).
    record_programme(engine, changed, expand(changed, lo, hi), lo, hi, now_ms=ms(DAY, 370))
    with Session(engine) as s:
        rows = {p.occurrence: p for p in s.scalars(select(Programme))}
    assert list(rows) == [f"vov@{DAY}"] and rows[f"vov@{DAY}"].end_ms == ms(DAY, 390)
    record_programme(engine, changed, expand(changed, lo, hi), lo, hi, now_ms=lo)
    with Session(engine) as s:
        assert s.scalars(select(Programme.end_ms)).all() == [ms(DAY, 380)]


@pytest.mark.parametrize(("commune", "first", "last", "message"), [
    ("nowhere", DAY, DAY, "unknown commune 'nowhere' (known: thu)"),
    ("thu", DAY, date(2026, 11, 1), "ends (2026-11-01) before it starts (2026-11-23)"),
    ("thu", date(2016, 1, 1), date(2025, 12, 31), "3653 days asked for; at most 366"),
])
def test_bad_ranges_are_refused_clearly(setup: tuple[Engine, Schedule], commune: str,
                                        first: date, last: date, message: str) -> None:
    engine, _ = setup
    with pytest.raises(DiaryQueryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lines_for_days(engine, commune, first, last, now_ms=0)


def test_an_empty_range_has_no_lines(setup: tuple[Engine, Schedule]) -> None:
    engine, _ = setup
    assert lines_for_days(engine, "thu", date(2026, 1, 1), date(2026, 1, 7), 0)[1] == []
    assert commune_info(engine, "thu").villages == {"v0": "Thôn 0", "v1": "Thôn 1",
                                                    "v2": "Bản 2"}


def _answer(engine: Engine, cmd_id: str, status: str, reason: str | None = None) -> None:
    """A node's answer to its command, as the gateway stores it."""
    with Session(engine) as s, s.begin():
        row = s.get(Command, cmd_id)
        assert row is not None
        row.status, row.reason = status, reason


def test_a_village_whose_second_node_started_is_not_missed(
        setup: tuple[Engine, Schedule]) -> None:
    # Thôn 0 has two nodes: one never answered before the command expired, the other started
    # it and has not reported yet. The village may have heard it: not "missed".
    engine, _ = setup
    at = ms(DAY, 9 * 60)
    cmds = Gateway(engine, 1, "x", clock=lambda: at).prepare(
        ["n0-a", "n0-b"], "play", {"url": "http://h:1/hop.wav"}, ttl_ms=MIN,
        title="Họp thôn")
    _answer(engine, cmds[1].id, "started")
    [line] = [x for x in lines_for_days(engine, "thu", DAY, DAY, at + 5 * MIN)[1]
              if x.trigger == "command"]
    assert [(v.village, v.outcome) for v in line.villages] == [("Thôn 0", NO_REPORT)]
    assert line.villages[0].reason == reason_vi(reasons.STARTED_NO_REPORT)


def test_a_test_tone_is_named_as_one_and_its_record_joins_its_line(
        setup: tuple[Engine, Schedule]) -> None:
    engine, _ = setup
    at = ms(DAY, 10 * 60)
    [tone, _] = Gateway(engine, 1, "x", clock=lambda: at).prepare(
        ["n1-a", "n2-a"], "test_tone", {"seconds": 3, "hz": 1000}, title="Thử loa")
    store_reports(engine, [("n1-a", "asrun", {
        "v": 1, "t": "asrun", "node": "n1-a", "rid": 9, "cmd": tone.id, "trigger": "manual",
        "kind": "test", "media": "tone:1000Hz", "title": "Thử loa: âm thử 1000 Hz",
        "start": at + 500, "end": at + 3500, "outcome": AIRED})], at + MIN)
    [line] = [x for x in lines_for_days(engine, "thu", DAY, DAY, at + 2 * MIN)[1]
              if x.kind == "test"]
    assert line.source == "Âm thử 1 kHz"
    assert [(v.village, v.outcome) for v in line.villages] == [
        ("Thôn 1", AIRED), ("Bản 2", NO_REPORT)]


def test_two_broadcasts_of_one_title_at_one_moment_stay_two_lines(
        setup: tuple[Engine, Schedule]) -> None:
    engine, _ = setup
    at = ms(DAY, 11 * 60)
    gw = Gateway(engine, 1, "x", clock=lambda: at)
    gw.prepare(["n0-a"], "play", {"url": "http://h:1/a.wav"}, title="Thông báo")
    gw.prepare(["n1-a"], "play", {"url": "http://h:1/b.wav"}, title="Thông báo")
    lines = [x for x in lines_for_days(engine, "thu", DAY, DAY, at + MIN)[1]
             if x.trigger == "command"]
    assert sorted([v.village for v in x.villages] for x in lines) == [["Thôn 0"], ["Thôn 1"]]

"""Storing node reports: idempotent as-run records, statuses that only move forward, and
availability that a late last-will cannot undo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from support.loaxa_stack import small_commune

from firmware import protocol
from headend.communes.registry import provision_commune
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import AsRunRecord, Command, Node
from headend.nodes.gateway import Gateway
from headend.nodes.ingest import store_reports

NODE = "n0001"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, small_commune(2))
    return engine


def asrun(rid: int, cmd: str | None = None, outcome: str = "aired") -> dict[str, Any]:
    return {"v": 1, "t": "asrun", "node": NODE, "rid": rid, "cmd": cmd, "title": "Tin xã",
            "start": 1000 * rid, "end": 1000 * rid + 500, "outcome": outcome}


def ack(cmd_id: str, status: str) -> dict[str, Any]:
    return protocol.ack(NODE, cmd_id, status, 1)


def command(engine: Engine, cmd_id: str) -> Command:
    with Session(engine) as s:
        cmd = s.get(Command, cmd_id)
        assert cmd is not None
        return cmd


def node(engine: Engine) -> Node:
    with Session(engine) as s:
        n = s.get(Node, NODE)
        assert n is not None
        return n


def sent(engine: Engine) -> str:
    [c] = Gateway(engine, 1, "x").prepare([NODE], "play", {"url": "http://h:1/a.wav"})
    return c.id


def test_asrun_records_are_stored_once_however_often_they_arrive(engine: Engine) -> None:
    acks = store_reports(engine, [(NODE, "asrun", asrun(1)), (NODE, "asrun", asrun(1)),
                                  (NODE, "asrun", asrun(2))], now=5)
    assert acks == {NODE: [1, 1, 2]}  # every copy is acknowledged, so the node drops it
    acks = store_reports(engine, [(NODE, "asrun", asrun(2)), (NODE, "asrun", asrun(3))], now=6)
    assert acks == {NODE: [2, 3]}
    with Session(engine) as s:
        rids = s.scalars(select(AsRunRecord.rid).order_by(AsRunRecord.rid)).all()
        assert rids == [1, 2, 3]
        first = s.scalars(select(AsRunRecord).where(AsRunRecord.rid == 2)).one()
        assert first.received_ms == 5  # the resend did not overwrite the first copy


def test_a_record_from_an_unknown_node_is_not_stored(engine: Engine) -> None:
    assert store_reports(engine, [("ghost", "asrun", asrun(1))], now=1) == {}
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(AsRunRecord)) == 0


def test_status_only_moves_forward(engine: Engine) -> None:
    cid = sent(engine)
    store_reports(engine, [(NODE, "ack", ack(cid, "accepted"))], now=1)
    # A QoS 1 redelivery the node refused as a replay must not undo the acceptance.
    store_reports(engine, [(NODE, "ack", ack(cid, "rejected"))], now=2)
    assert command(engine, cid).status == "accepted"
    store_reports(engine, [(NODE, "ack", ack(cid, "started")), (NODE, "ack", ack(cid, "done"))],
                  now=3)
    assert command(engine, cid).status == "done"
    store_reports(engine, [(NODE, "ack", ack(cid, "started"))], now=4)  # late, out of order
    assert command(engine, cid).status == "done"


def test_an_ack_cannot_touch_another_nodes_command(engine: Engine) -> None:
    cid = sent(engine)
    store_reports(engine, [("n0002", "ack", {**ack(cid, "done"), "node": "n0002"})], now=1)
    assert command(engine, cid).status == "sent"


def test_asrun_settles_a_command_whose_final_ack_was_lost(engine: Engine) -> None:
    cid = sent(engine)
    store_reports(engine, [(NODE, "ack", ack(cid, "started"))], now=1)
    assert node(engine).playing == cid
    store_reports(engine, [(NODE, "asrun", asrun(7, cmd=cid, outcome="partial"))], now=2)
    assert command(engine, cid).status == "failed"


def test_late_last_will_is_ignored(engine: Engine) -> None:
    def state(online: bool, session: int) -> tuple[str, str, dict[str, Any]]:
        return (NODE, "state", protocol.state(NODE, online, session, 1, "0.1.0"))

    store_reports(engine, [state(True, 4)], now=1)
    store_reports(engine, [state(True, 5), state(False, 4)], now=2)  # will of 4 after birth of 5
    n = node(engine)
    assert n.online and n.session == 5
    store_reports(engine, [state(False, 5)], now=3)
    assert not node(engine).online


def test_a_node_whose_flash_was_wiped_comes_back_online(engine: Engine) -> None:
    # Its session counter restarts at 1, below the 9 the headend has seen.
    def state(online: bool, session: int) -> tuple[str, str, dict[str, Any]]:
        return (NODE, "state", protocol.state(NODE, online, session, 1, "0.1.0"))

    store_reports(engine, [state(True, 9), state(False, 9)], now=1)
    store_reports(engine, [state(True, 1)], now=2)
    n = node(engine)
    assert n.online and n.session == 1
    store_reports(engine, [state(False, 1)], now=3)
    assert not node(engine).online


def test_a_plan_ack_updates_the_nodes_plan_and_an_old_ver_changes_nothing(engine: Engine) -> None:
    from headend.core.models import NodePlan

    with Session(engine) as s, s.begin():
        s.add(NodePlan(node_id=NODE, ver=7, issued_ms=1, from_ms=1, to_ms=2, digest="d" * 64,
                       items=3, status="sent", reason=None, updated_ms=1))
    store_reports(engine, [(NODE, protocol.ACK, protocol.ack(NODE, "plan-6", "rejected", 5,
                                                             "replay"))], 10)
    store_reports(engine, [(NODE, protocol.ACK, protocol.ack(NODE, "plan-7", "accepted", 5))], 11)
    with Session(engine) as s:
        plan = s.get(NodePlan, NODE)
        assert plan is not None and plan.status == "accepted" and plan.updated_ms == 11


def test_plan_records_keep_their_plan_fields_and_a_relay_on_fallback_raises_one_alarm(
        engine: Engine) -> None:
    from headend.core.alarms import RELAY_FAILED, list_alarms

    def relay(rid: int, src: str, outcome: str) -> dict[str, Any]:
        return dict(asrun(rid, outcome=outcome), trigger="plan", item=f"vov@{rid}",
                    kind="vov_relay", p=0, lang="vi", planned=1000 * rid - 5,
                    planned_end=1000 * rid + 600, src=src)

    store_reports(engine, [(NODE, protocol.ASRUN, relay(1, "fallback", "failed")),
                           (NODE, protocol.ASRUN, relay(2, "fallback", "failed"))], 10)
    store_reports(engine, [(NODE, protocol.ASRUN, relay(1, "fallback", "failed"))], 11)
    [alarm] = list_alarms(engine)
    assert (alarm.kind, alarm.subject, alarm.cleared_ms) == (RELAY_FAILED, NODE, None)
    store_reports(engine, [(NODE, protocol.ASRUN, relay(3, "backup", "aired"))], 12)
    [alarm] = list_alarms(engine)
    assert alarm.cleared_ms == 12
    with Session(engine) as s:
        rec = s.scalars(select(AsRunRecord).where(AsRunRecord.rid == 3)).one()
    assert (rec.item_id, rec.kind, rec.priority, rec.language, rec.planned_start_ms,
            rec.planned_end_ms, rec.source) == ("vov@3", "vov_relay", 0, "vi", 2995, 3600,
                                                "backup")

"""The emergency status page's village states: from the nodes' answers while they play, then
from their as-run records; a village is counted as hearing it only when it did."""

from __future__ import annotations

import json

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session
from support.commune_diary import DAY, MIN
from support.schedule_files import ms

from firmware import protocol
from headend.core.models import Broadcast, Command, Node
from headend.diary.reasons import reason_vi
from headend.nodes.emergency import (
    AIRED,
    PARTIAL,
    PLAYING,
    REFUSED,
    SENT,
    SILENT,
    scoped_key,
    village_states,
)
from headend.nodes.gateway import Gateway
from headend.nodes.ingest import store_reports
from headend.planning.schedule import Schedule

AT = ms(DAY, 9 * 60)


def _answer(engine: Engine, cmd_id: str, status: str, reason: str | None = None) -> None:
    with Session(engine) as s, s.begin():
        row = s.get(Command, cmd_id)
        assert row is not None
        row.status, row.reason = status, reason


def _asrun(node: str, cmd: str, outcome: str, reason: str | None = None) -> tuple[str, str, dict]:
    return node, "asrun", {
        "v": 1, "t": "asrun", "node": node, "rid": 1, "cmd": cmd, "trigger": "emergency",
        "media": "http://h:1/lu.wav", "title": "Lũ quét", "start": AT + 300,
        "end": AT + 20_000, "outcome": outcome, "reason": reason}


def test_states_follow_the_answers_then_the_records(setup: tuple[Engine, Schedule]) -> None:
    engine, _ = setup
    with Session(engine) as s, s.begin():
        s.execute(update(Node).values(online=True))
    cmds = {c.node_id: c.id for c in Gateway(engine, 1, "x", clock=lambda: AT).prepare(
        ["n0-a", "n0-b", "n1-a", "n2-a"], "emergency", {"url": "http://h:1/lu.wav"},
        ttl_ms=MIN, title="Lũ quét")}
    with Session(engine) as s, s.begin():
        b = Broadcast(commune_id="thu", title="Lũ quét", media="lu.wav",
                      villages=json.dumps(["v0", "v1", "v2"]), sent_by="canbo", sent_ms=AT,
                      commands=json.dumps(list(cmds.values())))
        s.add(b)
        s.flush()
        bid = b.id

    def states(now: int) -> list[tuple[str, str, str | None]]:
        return [(v.village, v.state, v.reason) for v in village_states(engine, bid, now)]

    assert states(AT + 1000) == [("Bản 2", SENT, None), ("Thôn 0", SENT, None),
                                 ("Thôn 1", SENT, None)]
    # Thôn 0's first node plays it; Thôn 1's started on an amplifier that drives nothing.
    _answer(engine, cmds["n0-a"], protocol.STARTED)
    _answer(engine, cmds["n1-a"], protocol.STARTED, protocol.R_AMP_FAULT)
    amp = reason_vi(protocol.R_AMP_FAULT)
    assert states(AT + 2000) == [("Bản 2", SENT, None), ("Thôn 0", PLAYING, None),
                                 ("Thôn 1", REFUSED, amp)]
    # The records: Thôn 0 aired it, Bản 2's stream broke off, Thôn 1 heard nothing.
    store_reports(engine, [_asrun("n0-a", cmds["n0-a"], protocol.AIRED),
                           _asrun("n1-a", cmds["n1-a"], protocol.OUTCOME_FAILED,
                                  protocol.R_AMP_FAULT),
                           _asrun("n2-a", cmds["n2-a"], protocol.PARTIAL,
                                  "stream ended early")], AT + 30_000)
    assert states(AT + 30_000) == [
        ("Bản 2", PARTIAL, reason_vi("stream ended early")), ("Thôn 0", AIRED, None),
        ("Thôn 1", REFUSED, amp)]
    # Thôn 0's second node never answered: the village still aired it.
    assert states(AT + 2 * MIN)[1] == ("Thôn 0", AIRED, None)


def test_a_village_that_never_answers_is_silent_once_the_minute_is_over(
        setup: tuple[Engine, Schedule]) -> None:
    engine, _ = setup
    [cmd] = Gateway(engine, 1, "x", clock=lambda: AT).prepare(
        ["n2-a"], "emergency", {"url": "http://h:1/lu.wav"}, ttl_ms=MIN, title="Lũ quét")
    with Session(engine) as s, s.begin():
        b = Broadcast(commune_id="thu", title="Lũ quét", media="lu.wav",
                      villages=json.dumps(["v2"]), sent_by="canbo", sent_ms=AT,
                      commands=json.dumps([cmd.id]))
        s.add(b)
        s.flush()
        bid = b.id
    [v] = village_states(engine, bid, AT + MIN + 1)
    assert (v.village, v.state) == ("Bản 2", SILENT) and v.reason


def test_idempotency_keys_are_per_commune() -> None:
    key = "k" * 22
    assert scoped_key("xa-a", key) != scoped_key("xa-b", key)
    one = scoped_key("xa-a", key)
    assert one == scoped_key("xa-a", key) and one is not None and len(one) == 64
    assert scoped_key("xa-a", None) is None

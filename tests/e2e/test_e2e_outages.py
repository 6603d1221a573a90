"""Outages: the broker restarted while nodes play, a node's link cut and restored, and a
last-will that arrives after the node has already come back."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from support.loaxa_stack import Stack, wait_until

from firmware import protocol
from headend.core.models import Node
from headend.media.store import write_test_tone


def node_row(stack: Stack, node_id: str) -> Node:
    with Session(stack.engine) as s:
        node = s.get(Node, node_id)
        assert node is not None
        return node


def test_broker_restart_while_playing_loses_and_doubles_nothing(stack: Stack) -> None:
    write_test_tone(stack.home.media_dir, "long.wav", seconds=4)
    connects = {k: v["connects"] for k, v in stack.fleet.status().items()}
    cmd_ids = stack.play(name="long.wav", title="Bản tin dài")
    wait_until(lambda: all(stack.fleet.recordings(n) for n in stack.node_ids), 10, "playback")

    # The broker goes away for longer than the rest of the audio: every node finishes playing
    # and tries to report while nobody can hear it.
    stack.broker.stop()
    time.sleep(5)
    assert not stack.asrun(), "records arrived while the broker was down?"
    stack.broker.start()

    # Nodes reconnect by themselves (jittered backoff) and deliver their records once.
    stack.fleet.wait_connected(30)
    records = wait_until(lambda: len(stack.asrun()) >= 5 and stack.asrun(), 30, "as-run records")
    status = stack.fleet.status()
    assert all(status[n]["connects"] > connects[n] for n in stack.node_ids)
    # Let resends and acks settle, then check nothing was doubled.
    wait_until(lambda: all(v["pending"] == 0 for v in stack.fleet.status().values()), 30,
               "nodes to drop acknowledged records")
    records = stack.asrun()
    assert Counter(r.node_id for r in records) == Counter(stack.node_ids)
    for r in records:
        assert r.outcome == "aired", (r.node_id, r.reason)
        assert r.end_ms is not None and r.start_ms is not None
        assert 3600 < r.end_ms - r.start_ms < 4600
        assert r.command_id in cmd_ids
    # Each node played the whole tone exactly once despite the outage.
    for n in stack.node_ids:
        recs = stack.fleet.recordings(n)
        assert len(recs) == 1 and len(recs[0].pcm()) == 4 * 16000 * 2
    # The lost "done" acks are settled from the as-run records.
    for cid in cmd_ids:
        assert stack.command(cid).status == "done"


def test_link_cut_marks_offline_and_node_comes_back(stack: Stack) -> None:
    node = "n0003"
    before = node_row(stack, node)
    assert before.online
    stack.fleet.set_link(node, False)
    wait_until(lambda: not node_row(stack, node).online, 10, "node offline (last-will)")
    assert node_row(stack, node).session == before.session
    time.sleep(1)
    stack.fleet.set_link(node, True)
    stack.fleet.wait_connected(15, [node])
    wait_until(lambda: node_row(stack, node).online, 10, "node back online")
    assert node_row(stack, node).session > before.session
    # It works again: a play reaches it.
    [cid] = stack.play([node])
    wait_until(lambda: stack.command(cid).status == "done", 15, "play after the outage")
    assert len(stack.fleet.recordings(node)) == 1


def test_late_last_will_does_not_mark_a_fresh_session_offline(stack: Stack) -> None:
    node = "n0002"
    current = node_row(stack, node).session
    client = stack.headend.client
    assert client is not None
    t = protocol.topic(node, protocol.STATE)
    now = int(time.time() * 1000)
    # The broker delivers the will of the previous session after the current birth.
    late_will = protocol.state(node, False, current - 1, now, "0.1.0")
    stack.run(client.publish(t, protocol.encode(late_will), qos=1))
    # A sentinel after it: once the sentinel's telemetry is stored, the will has been handled.
    stack.run(client.publish(protocol.topic(node, protocol.CMD), b"{}", qos=1))
    wait_until(lambda: stack.headend.rejections, 10, "the sentinel's rejection")
    stack.run(stack.headend.flush())
    row = node_row(stack, node)
    assert row.online and row.session == current
    # The will of the current session does mark it offline.
    will = protocol.state(node, False, current, now, "0.1.0")
    stack.run(client.publish(t, protocol.encode(will), qos=1))
    wait_until(lambda: not node_row(stack, node).online, 10, "offline on the current will")


@pytest.fixture
def chatty_stack(tmp_path: Path) -> Iterator[Stack]:
    """Nodes that send telemetry every second, so a silence of 1.5 s means something."""
    s = Stack(tmp_path, fleet_options={"telemetry_s": 1}).start()
    try:
        yield s
    finally:
        s.stop()


def test_an_offline_node_raises_one_alarm_and_clears_it_once_back(chatty_stack: Stack) -> None:
    """The periodic health check against the real node: a late will changes nothing; a real
    outage longer than N raises node_offline once however often the check runs; the node's
    return clears it once."""
    stack = chatty_stack
    from headend.core.alarms import NODE_OFFLINE, list_alarms
    from headend.nodes.health import HealthPolicy, check_nodes

    node = "n0004"
    policy = HealthPolicy(offline_after_ms=1500)

    def check() -> list[tuple[str, str, bool]]:
        check_nodes(stack.engine, int(time.time() * 1000), policy)
        return [(a.kind, a.subject, a.cleared_ms is None) for a in list_alarms(stack.engine)
                if a.kind == NODE_OFFLINE]

    current = node_row(stack, node).session
    client = stack.headend.client
    assert client is not None
    late_will = protocol.state(node, False, current - 1, int(time.time() * 1000), "0.1.0")
    stack.run(client.publish(protocol.topic(node, protocol.STATE), protocol.encode(late_will),
                             qos=1))
    for _ in range(4):  # telemetry keeps coming: the node never looks silent
        time.sleep(0.6)
        stack.run(stack.headend.flush())
        assert node_row(stack, node).online
        assert check() == []
    stack.fleet.set_link(node, False)
    wait_until(lambda: not node_row(stack, node).online, 10, "node offline (last-will)")
    time.sleep(2)
    for _ in range(3):
        assert check() == [(NODE_OFFLINE, node, True)]
    stack.fleet.set_link(node, True)
    stack.fleet.wait_connected(15, [node])
    wait_until(lambda: node_row(stack, node).online, 10, "node back online")
    for _ in range(3):
        assert check() == [(NODE_OFFLINE, node, False)]

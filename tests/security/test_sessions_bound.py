"""Sessions are bound to their owner (real Mosquitto as LoaXa configures it): a node's
credentials cannot take over the headend's or another node's session, whatever client id
they claim, and cannot log in where the headend does; `loaxa node revoke` takes a node's
login and key away at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from support.cli import node_cli, running
from support.loaxa_stack import Stack, wait_until
from support.mqtt_clients import Client, Clients

from firmware import protocol
from headend.core.models import AuditEntry, Node
from headend.nodes.broker import Broker, find_free_port
from headend.nodes.emergency import find_target

HEADEND_PW = "headend-secret"
NODES = {"node-a": "pw-a", "node-b": "pw-b"}
GATEWAY_ID = "loaxa-headend"  # headend.nodes.gateway.Gateway's client id


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", find_free_port(), headend_password=HEADEND_PW)
    b.write_config(NODES)
    with b:
        yield b


@pytest.fixture
def clients(broker: Broker) -> Iterator[Clients]:
    made = Clients(broker)
    yield made
    made.close_all()


def _alive(victim: Client, clients: Clients, topic: str, note: bytes) -> None:
    """The victim is still connected and still receives what is published to it."""
    assert not victim.disconnected.is_set(), "the victim was disconnected"
    sender = clients.connected("headend", HEADEND_PW, client_id="sender")
    sender.publish(topic, note)
    victim.wait_for(topic, note)


@pytest.mark.parametrize("claimed", [GATEWAY_ID, "node-b", "headend", ""])
def test_no_node_takes_over_another_session(clients: Clients, claimed: str) -> None:
    headend = clients.connected("headend", HEADEND_PW, client_id=GATEWAY_ID, clean=False)
    assert headend.subscribe("loaxa/#") == [1]
    node_b = clients.connected("node-b", "pw-b", client_id="node-b", clean=False)
    cmd_b = str(protocol.topic("node-b", protocol.CMD))
    assert node_b.subscribe(cmd_b) == [1]
    # node-a's stolen password, claiming the victims' client ids, clean session and all.
    for _ in range(3):
        thief = clients("node-a", "pw-a", client_id=claimed, clean=True)
        assert thief.connect() == 0  # it logs in as itself, "node-a", nothing more
        thief.close()
    time.sleep(0.3)
    _alive(headend, clients, str(protocol.topic("node-b", protocol.STATE)), b"still here")
    _alive(node_b, clients, cmd_b, b"still here")


def test_a_queued_command_survives_a_takeover_attempt(broker: Broker, clients: Clients) -> None:
    cmd_b = str(protocol.topic("node-b", protocol.CMD))
    node_b = clients.connected("node-b", "pw-b", client_id="node-b", clean=False)
    assert node_b.subscribe(cmd_b) == [1]
    node_b.close()  # offline: the broker keeps its session and queues for it
    headend = clients.connected("headend", HEADEND_PW, client_id=GATEWAY_ID)
    headend.publish(cmd_b, b"emergency")
    # Before: connecting with node-b's client id and a clean session dropped the queue.
    thief = clients("node-a", "pw-a", client_id="node-b", clean=True)
    assert thief.connect() == 0
    thief.close()
    again = clients.connected("node-b", "pw-b", client_id="node-b", clean=False)
    again.wait_for(cmd_b, b"emergency")


@pytest.mark.parametrize(("user", "password", "listener"), [
    ("node-a", "pw-a", "headend"), ("headend", HEADEND_PW, "nodes")])
def test_each_listener_takes_only_its_own_logins(broker: Broker, clients: Clients, user: str,
                                                 password: str, listener: str) -> None:
    port = broker.port if listener == "headend" else broker.node_port
    assert clients(user, password, port=port).connect().is_failure


def test_revoke_takes_the_login_and_key_at_once(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    stack = Stack(tmp_path, nodes=2).start()
    try:
        running(stack)
        gone, kept = stack.secrets[0], stack.secrets[1]
        code, out = node_cli(stack, capsys, "revoke", gone.id)
        assert code == 0 and "Đã thu hồi" in out
        # The broker dropped it at once and does not let it back; the other stays.
        wait_until(lambda: not stack.fleet.status()[gone.id]["connected"], 10, "disconnect")
        time.sleep(2)
        st = stack.fleet.status()
        assert not st[gone.id]["connected"] and st[kept.id]["connected"]
        clients = Clients(stack.broker)
        try:
            assert clients(gone.id, gone.password).connect().is_failure
        finally:
            clients.close_all()
        with Session(stack.engine) as s:
            node = s.get(Node, gone.id)
            assert node is not None and node.revoked_ms is not None
            assert node.key != gone.key  # what it signs with no longer checks
            assert s.query(AuditEntry).filter_by(action="node_revoke",
                                                 target=gone.id).count() == 1
        assert not (stack.home.nodes_dir / f"{gone.id}.json").exists()
        # A later start does not give it a login back; the emergency button skips it.
        text = stack.broker.passwd_path.read_text()
        assert f"{gone.id}:" not in text and f"{kept.id}:" in text
        assert find_target(stack.engine, "test-xa", None).node_ids == [kept.id]
        assert json.loads(stack.home.running_path.read_text())["node_port"]
    finally:
        stack.stop()

"""headend.nodes.broker against a real Mosquitto: credentials, per-node ACL, reload, lifecycle.

Negative checks ("receives nothing") are made meaningful with a sentinel: after the
forbidden publish is acknowledged, an allowed message is sent to the same observer and
awaited; the broker delivers to one subscriber in order, so anything forwarded from the
forbidden publish would have arrived first.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware import protocol
from headend.nodes.broker import Broker, BrokerError, find_free_port, hash_password
from tests.support.mqtt_clients import WAIT, Client, Clients

pytestmark = pytest.mark.skipif(
    not (shutil.which("mosquitto") or os.access("/usr/sbin/mosquitto", os.X_OK)),
    reason="mosquitto not installed",
)

HEADEND_PW = "headend-secret"
NODES = {"node-a": "pw-a", "node-b": "pw-b"}
A, B = "node-a", "node-b"


def t(node: str, leaf: str) -> str:
    return str(protocol.topic(node, leaf))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(
        tmp_path_factory.mktemp("broker"), find_free_port(), headend_password=HEADEND_PW
    )
    b.write_config(NODES)
    with b:
        yield b
    assert not b.running


@pytest.fixture
def clients(broker: Broker) -> Iterator[Clients]:
    made = Clients(broker)
    yield made
    made.close_all()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own, for tests that reconfigure or restart it."""
    b = Broker(tmp_path / "state", find_free_port(), headend_password=HEADEND_PW)
    b.write_config(NODES)
    b.start()
    yield b
    b.stop()


def headend(clients: Clients) -> Client:
    client = clients.connected("headend", HEADEND_PW)
    assert client.subscribe("loaxa/#") == [1]
    return client


# -- credentials --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("username", "password"),
    [(A, "wrong"), (A, None), ("node-x", "pw-a"), ("headend", "pw-a"), (None, None)],
    ids=["wrong-password", "no-password", "unknown-user", "headend-wrong-pw", "anonymous"],
)
def test_bad_credentials_refused(
    clients: Clients, username: str | None, password: str | None
) -> None:
    rc = clients(username, password).connect()
    assert rc.is_failure, rc


def test_node_and_headend_credentials_accepted(clients: Clients) -> None:
    for user, pw in [*NODES.items(), ("headend", HEADEND_PW)]:
        clients.connected(user, pw)


def test_hash_password_matches_mosquitto_passwd(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    path = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(path), "alice", "s3cret:é"], check=True)
    line = path.read_text().strip()
    m = re.fullmatch(r"alice:\$7\$101\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", line)
    assert m, line
    salt = base64.b64decode(m.group(1))
    assert hash_password("s3cret:é", salt) == line.split(":", 1)[1]
    assert hash_password("other", salt) != line.split(":", 1)[1]
    # Fresh random salts each time.
    assert hash_password("x") != hash_password("x")


def test_passwd_and_acl_files(broker: Broker) -> None:
    assert broker.passwd_path.stat().st_mode & 0o777 == 0o600
    users = [ln.split(":", 1)[0] for ln in broker.passwd_path.read_text().splitlines()]
    assert sorted(users) == sorted(NODES)
    headend = broker.headend_passwd_path.read_text().splitlines()
    assert [ln.split(":", 1)[0] for ln in headend] == ["headend"]
    assert broker.headend_passwd_path.stat().st_mode & 0o777 == 0o600
    conf = broker.config_path.read_text()
    assert f"listener {broker.port} 127.0.0.1\n" in conf
    assert f"listener {broker.node_port} 127.0.0.1\n" in conf
    assert "allow_anonymous false\n" in conf
    assert "max_inflight_messages 0\n" in conf


def test_write_config_rejects_bad_node_ids(tmp_path: Path) -> None:
    b = Broker(tmp_path, find_free_port(), headend_password="x")
    for bad in ["Node-A", "a/b", "a+", "#", "", "headend", "a b"]:
        with pytest.raises(ValueError):
            b.write_config({bad: "pw"})


# -- node ACL -----------------------------------------------------------------------------

@pytest.mark.parametrize("target", [A, B])
def test_node_cannot_publish_commands(clients: Clients, target: str) -> None:
    he = headend(clients)
    b = clients.connected(B, NODES[B])
    assert b.subscribe(t(B, protocol.CMD)) == [1]
    a = clients.connected(A, NODES[A])
    for leaf in (protocol.CMD, protocol.ASRUN_ACK, protocol.ECHO):
        a.publish(t(target, leaf), b"forged")
    # Sentinels: one to B over B's connection, one to the headend over its connection.
    he.publish(t(B, protocol.CMD), b"sentinel-b")
    b.wait_for(t(B, protocol.CMD), "sentinel-b")
    a.publish(t(A, protocol.STATE), b"sentinel-he")
    he.wait_for(t(A, protocol.STATE), "sentinel-he")
    assert (t(B, protocol.CMD), b"forged") not in b.messages
    assert all(payload != b"forged" for _, payload in he.messages), he.messages


@pytest.mark.parametrize(
    "pattern",
    ["loaxa/v1/node/+/cmd", "#", "loaxa/#", "loaxa/v1/node/node-b/cmd", "loaxa/v1/node/node-b/#"],
)
def test_node_cannot_receive_other_nodes_commands(clients: Clients, pattern: str) -> None:
    he = clients.connected("headend", HEADEND_PW)
    a = clients.connected(A, NODES[A])
    a.subscribe(pattern, t(A, protocol.CMD))  # its own cmd too, for the sentinel
    for leaf in (protocol.CMD, protocol.ASRUN_ACK, protocol.ECHO):
        he.publish(t(B, leaf), b"for-b")
    he.publish(t(A, protocol.CMD), b"sentinel")
    a.wait_for(t(A, protocol.CMD), "sentinel")
    assert not any(tp.startswith(t(B, "")) for tp in a.topics()), a.messages


def test_node_cannot_receive_other_nodes_reports(clients: Clients) -> None:
    a = clients.connected(A, NODES[A])
    a.subscribe("#", t(A, protocol.CMD))
    b = clients.connected(B, NODES[B])
    b.publish(t(B, protocol.STATE), b"b-state")
    he = clients.connected("headend", HEADEND_PW)
    he.publish(t(A, protocol.CMD), b"sentinel")
    a.wait_for(t(A, protocol.CMD), "sentinel")
    assert set(a.topics()) == {t(A, protocol.CMD)}, a.messages


def test_node_cannot_publish_as_another_node(clients: Clients) -> None:
    he = headend(clients)
    a = clients.connected(A, NODES[A])
    for leaf in protocol.ACK, protocol.STATE, protocol.TELEMETRY, protocol.ASRUN, "echo/r":
        a.publish(t(B, leaf), b"forged")
    a.publish("loaxa/v1/other", b"forged")
    a.publish("elsewhere/topic", b"forged")
    a.publish(t(A, protocol.ACK), b"sentinel")
    he.wait_for(t(A, protocol.ACK), "sentinel")
    assert all(payload != b"forged" for _, payload in he.messages), he.messages


def test_node_cannot_retain_on_other_topics(clients: Clients) -> None:
    a = clients.connected(A, NODES[A])
    a.publish(t(B, protocol.STATE), b"forged-retained", retain=True)
    he = headend(clients)  # subscribes after: would get the retained message first
    a.publish(t(A, protocol.TELEMETRY), b"sentinel")
    he.wait_for(t(A, protocol.TELEMETRY), "sentinel")
    assert all(payload != b"forged-retained" for _, payload in he.messages)


def test_denied_publish_reported_to_mqtt5_clients(clients: Clients) -> None:
    a = clients(A, NODES[A], version=mqtt.MQTTv5)
    assert a.connect() == 0
    rcs: list[ReasonCode] = []
    done = threading.Event()

    def on_publish(
        c: mqtt.Client, u: object, mid: int, rc: ReasonCode, p: Properties | None
    ) -> None:
        rcs.append(rc)
        done.set()

    a.c.on_publish = on_publish
    a.c.publish(t(B, protocol.CMD), b"forged", qos=1)
    assert done.wait(WAIT)
    assert rcs[0].value == 0x87  # Not authorized


def test_node_own_topics_work(clients: Clients) -> None:
    he = headend(clients)
    a = clients.connected(A, NODES[A])
    own_read = [t(A, leaf) for leaf in (protocol.CMD, protocol.ASRUN_ACK, protocol.ECHO)]
    assert a.subscribe(*own_read) == [1, 1, 1]
    for tp in own_read:
        he.publish(tp, b"to-a")
        a.wait_for(tp, "to-a")
    for leaf in (protocol.ACK, protocol.STATE, protocol.TELEMETRY, protocol.ASRUN, "echo/r"):
        a.publish(t(A, leaf), b"from-a")
        he.wait_for(t(A, leaf), "from-a")


def test_headend_can_do_everything(clients: Clients) -> None:
    he = headend(clients)
    for node in NODES:
        for leaf in (
            protocol.CMD, protocol.ASRUN_ACK, protocol.ECHO, protocol.ACK, protocol.STATE,
            protocol.TELEMETRY, protocol.ASRUN, protocol.ECHO_REPLY,
        ):
            he.publish(t(node, leaf), b"he")
            he.wait_for(t(node, leaf), "he")
    he.publish("loaxa/v1/headend/anything", b"he")
    he.wait_for("loaxa/v1/headend/anything", "he")


# -- reload, persistence, lifecycle ---------------------------------------------------------

def test_reload_adds_node_without_dropping_others(own_broker: Broker) -> None:
    clients = Clients(own_broker)
    try:
        he = headend(clients)
        a = clients.connected(A, NODES[A])
        a.subscribe(t(A, protocol.CMD))
        assert clients("node-c", "pw-c").connect().is_failure
        own_broker.write_config({**NODES, "node-c": "pw-c"})
        pid = own_broker.pid
        own_broker.reload()
        assert own_broker.pid == pid
        c = clients.connected("node-c", "pw-c")
        c.publish(t("node-c", protocol.STATE), b"hello")
        he.wait_for(t("node-c", protocol.STATE), "hello")
        # Existing sessions were not dropped and still work.
        assert not a.disconnected.is_set() and not he.disconnected.is_set()
        he.publish(t(A, protocol.CMD), b"still-here")
        a.wait_for(t(A, protocol.CMD), "still-here")
        # Removing a node drops its session and keeps it out from then on.
        own_broker.write_config(NODES)
        own_broker.reload()
        assert c.disconnected.wait(WAIT)
        c.c.loop_stop()  # before paho's reconnect back-off starts
        assert clients("node-c", "pw-c").connect().is_failure
        assert not a.disconnected.is_set()
    finally:
        clients.close_all()


def test_queued_qos1_survives_restart(own_broker: Broker) -> None:
    clients = Clients(own_broker)
    try:
        a = clients.connected(A, NODES[A], client_id=A, clean=False)
        a.subscribe(t(A, protocol.CMD))
        a.close()
        he = clients.connected("headend", HEADEND_PW)
        he.publish(t(A, protocol.CMD), b"queued")
        he.close()
        own_broker.restart()
        a2 = clients.connected(A, NODES[A], client_id=A, clean=False)
        a2.wait_for(t(A, protocol.CMD), "queued")
    finally:
        clients.close_all()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    b = Broker(tmp_path, find_free_port(), headend_password=HEADEND_PW)
    b.stop()  # never started: fine
    b.write_config({})
    with b:
        pid = b.pid
        assert pid is not None and b.running
        b.start()  # already running: no-op
        assert b.pid == pid
    assert not b.running and b.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", b.port), timeout=1):
        pass
    b.stop()  # idempotent
    with pytest.raises(BrokerError):
        b.reload()


def test_start_failure_is_reported(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        b = Broker(tmp_path, taken.getsockname()[1], headend_password=HEADEND_PW)
        b.write_config(NODES)
        started = time.monotonic()
        with pytest.raises(BrokerError, match=r"(?i)address already in use"):
            b.start()
        assert time.monotonic() - started < 5
        assert not b.running


def test_start_without_config(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="write_config"):
        Broker(tmp_path, find_free_port(), headend_password="x").start()

"""A node that sends garbage on its own topics (a firmware bug, a tampered device) cannot stop
the headend: the garbage is logged and dropped, and every other report is still stored."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from sqlalchemy.orm import Session
from support.loaxa_stack import Stack, wait_until

from firmware import protocol
from headend.core.models import Node

BAD_NODE = "n0005"

GARBAGE = [
    (protocol.ACK, b"not json at all"),
    (protocol.ACK, b'{"v":1,"t":"ack","id":[1,2],"status":{"x":1}}'),
    (protocol.ACK, b'{"v":1,"t":"ack","id":"c1","status":["done"]}'),
    (protocol.STATE, b'{"v":1,"t":"state","online":"yes","session":"many"}'),
    (protocol.TELEMETRY, b'{"v":1,"t":"telemetry","at":"now","fw":{"a":[1]}}'),
    (protocol.ASRUN, b'{"v":1,"t":"asrun","rid":"seven","start":"yesterday"}'),
    (protocol.ASRUN, b'{"v":1,"t":"asrun","rid":99,"start":"x","end":[],"outcome":5,'
                     b'"title":"' + b"t" * 3000 + b'"}'),  # (under MAX_PAYLOAD)
    (protocol.ASRUN, b'{"v":2,"t":"asrun","rid":1}'),
    (protocol.ASRUN, b"\xff\xfe\x00"),
]


def publish_as_node(stack: Stack, node_id: str, items: list[tuple[str, bytes]]) -> None:
    """With the node's password, while the node itself is off its link (the broker makes a
    client's id its username: the two would take the session from each other); the node is
    back and connected when this returns."""
    secret = next(s for s in stack.secrets if s.id == node_id)
    stack.fleet.set_link(node_id, False)
    wait_until(lambda: not stack.fleet.status()[node_id]["connected"], 10, "node off")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{node_id}-rogue")
    client.username_pw_set(node_id, secret.password)
    client.connect("127.0.0.1", stack.broker.node_port)
    client.loop_start()
    try:
        infos = [client.publish(protocol.topic(node_id, leaf), payload, qos=1)
                 for leaf, payload in items]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
        stack.fleet.set_link(node_id, True)
        stack.fleet.wait_connected(30, [node_id])


def test_garbage_from_one_node_stops_nothing(stack: Stack) -> None:
    publish_as_node(stack, BAD_NODE, GARBAGE)
    stack.run(stack.headend.flush())
    assert stack.headend.connected.is_set()

    # The headend still does its job for everybody, the rogue node included.
    cmd_ids = stack.play()
    records = wait_until(lambda: len(stack.asrun()) >= 5 and stack.asrun(), 30,
                         "the real nodes' records")
    real = [r for r in records if r.command_id in cmd_ids]
    assert sorted(r.node_id for r in real) == sorted(stack.node_ids)
    # None of the garbage is stored: unsigned, it is not a node's report at all (signed and
    # absurd records: tests/security/test_node_reports.py).
    assert [r for r in records if r.command_id not in cmd_ids] == []
    with Session(stack.engine) as s:
        node = s.get(Node, BAD_NODE)
        assert node is not None and node.online

"""What a node (or whoever holds its broker password) sends is bounded: messages over the size a
node needs are refused (by the broker above its packet limit, by the headend above a node's
largest message), telemetry keeps only known fields of a reading's shape (no 900-deep tables,
no huge numbers or texts), retained messages count only on the availability topic, and the
pages that show nodes stay up. Real Mosquitto, the real gateway, the web app."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from support.loaxa_stack import Stack, wait_until
from support.web_site import PASSWORD, login

from firmware import protocol
from headend.core import auth
from headend.core.models import Node
from headend.web.app import make_app

ROGUE = "n0005"


def telemetry(fw: str, **fields: object) -> bytes:
    return json.dumps({"v": 1, "t": "telemetry", "node": ROGUE, "at": int(time.time() * 1000),
                       "fw": fw, **fields}).encode()


def rogue(stack: Stack) -> mqtt.Client:
    secret = next(s for s in stack.secrets if s.id == ROGUE)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{ROGUE}-rogue")
    client.username_pw_set(ROGUE, secret.password)
    client.connect("127.0.0.1", stack.broker.node_port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, payload: bytes, retain: bool = False) -> bool:
    info = client.publish(protocol.topic(ROGUE, protocol.TELEMETRY), payload, qos=1,
                          retain=retain)
    info.wait_for_publish(5)
    return info.is_published()


def stored(stack: Stack) -> dict[str, object]:
    with Session(stack.engine) as s:
        node = s.get(Node, ROGUE)
        assert node is not None
        return dict(json.loads(node.telemetry)) if node.telemetry else {}


def test_oversized_deep_and_retained_telemetry_is_refused_and_pages_stay_up(
        stack: Stack) -> None:
    stack.fleet.set_link(ROGUE, False)  # its own telemetry would overwrite what is checked
    deep: object = 1
    for _ in range(900):  # 1.8 KB: under a node's largest message, 900 deep
        deep = [deep]
    client = rogue(stack)
    try:
        # Known fields of an unfit shape are dropped; unknown fields are never kept.
        unfit = telemetry("rogue-1", ota=deep, link_info=[[[[["deep"]]]]], heap_free=10 ** 30,
                          temp_c=float("inf"), safe_why="x" * 1000, uptime_s=5,
                          mine={"a": "b" * 500})
        assert len(unfit) <= protocol.MAX_PAYLOAD  # small enough to be read
        assert publish(client, unfit)
        wait_until(lambda: stored(stack).get("fw") == "rogue-1", 15, "the fitting fields")
        got = stored(stack)
        assert got["uptime_s"] == 5
        for gone in ("ota", "link_info", "heap_free", "temp_c", "safe_why", "mine"):
            assert gone not in got, gone
        assert len(json.dumps(got)) < 2000
        # Over a node's largest message: the headend drops it.
        assert publish(client, telemetry("rogue-big", pad="p" * (protocol.MAX_PAYLOAD + 10)))
        # Retained telemetry would come back on every reconnect of the headend: dropped.
        assert publish(client, telemetry("rogue-retained"), retain=True)
        assert publish(client, telemetry("rogue-after"))
        wait_until(lambda: stored(stack).get("fw") == "rogue-after", 15, "the next message")
    finally:
        client.loop_stop()
        client.disconnect()
    # Over the broker's packet limit (a 100 MB message was once stored): the broker
    # disconnects the sender and nothing reaches the headend.
    client = rogue(stack)
    try:
        assert not publish(client, telemetry("rogue-huge", pad="p" * 1_000_000))
    finally:
        client.loop_stop()
        client.disconnect()
    stack.run(stack.headend.flush())
    assert stored(stack).get("fw") == "rogue-after"
    assert "oversize packet" in stack.broker.log_path.read_text()
    # The pages that show nodes stay up.
    auth.add_user(stack.engine, "admin", PASSWORD, auth.ADMIN, ["*"], stack.clock.time_ms())
    web = TestClient(make_app(stack.engine, stack.home.media_dir, stack.clock.time_ms),
                     raise_server_exceptions=False, follow_redirects=False)
    login(web, "admin")
    for path in ("/health", "/c/test-xa/nodes", "/api/v1/nodes", "/communes"):
        r = web.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])

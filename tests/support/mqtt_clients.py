"""paho MQTT clients on their own network threads, for tests against a real broker."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from headend.nodes.broker import Broker

WAIT = 5.0


class Client:
    """A paho client on its own network thread, recording what it receives."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        client_id: str = "",
        clean: bool = True,
        version: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    ) -> None:
        self.port = port
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.connack: ReasonCode | None = None
        self.disconnected = threading.Event()
        kwargs: dict[str, object] = {"protocol": version}
        if version != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)  # type: ignore[arg-type]
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect

    def _on_connect(
        self, c: mqtt.Client, u: object, flags: object, rc: ReasonCode, p: Properties | None
    ) -> None:
        with self.cond:
            self.connack = rc
            self.cond.notify_all()

    def _on_disconnect(
        self, c: mqtt.Client, u: object, flags: object, rc: ReasonCode, p: Properties | None
    ) -> None:
        self.disconnected.set()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def connect(self) -> ReasonCode:
        self.c.connect("127.0.0.1", self.port, keepalive=30)
        # Drive the handshake here; a network thread only for accepted clients (a refused
        # one would sit in paho's reconnect back-off).
        deadline = time.monotonic() + WAIT
        while self.connack is None and time.monotonic() < deadline:
            self.c.loop(0.05)
        assert self.connack is not None, "no CONNACK"
        if self.connack == 0:
            self.c.loop_start()
        return self.connack

    def subscribe(self, *topics: str) -> list[int]:
        done = threading.Event()
        granted: list[int] = []

        def on_subscribe(
            c: mqtt.Client, u: object, mid: int, rcs: list[ReasonCode], p: Properties | None
        ) -> None:
            granted.extend(rc.value for rc in rcs)
            done.set()

        self.c.on_subscribe = on_subscribe
        rc, _ = self.c.subscribe([(tp, 1) for tp in topics])
        assert rc == mqtt.MQTT_ERR_SUCCESS
        assert done.wait(WAIT), "no SUBACK"
        return granted

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        """QoS 1 and wait for the PUBACK: the broker has finished with the message."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT)
        assert info.is_published(), f"no PUBACK for {topic}"

    def wait_for(self, topic: str, payload: bytes | str) -> None:
        want = (topic, payload.encode() if isinstance(payload, str) else payload)
        with self.cond:
            ok = self.cond.wait_for(lambda: want in self.messages, WAIT)
        assert ok, f"{want} never arrived; got {self.messages}"

    def topics(self) -> list[str]:
        with self.cond:
            return [tp for tp, _ in self.messages]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Clients:
    """Clients of one broker: the headend on its loopback listener, anyone else on the
    nodes' listener (``port=`` picks one)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.made: list[Client] = []

    def __call__(self, username: str | None, password: str | None, port: int | None = None,
                 **kw: object) -> Client:
        if port is None:
            port = self.broker.port if username == "headend" else self.broker.node_port
        client = Client(port, username, password, **kw)  # type: ignore[arg-type]
        self.made.append(client)
        return client

    def connected(self, username: str, password: str, **kw: object) -> Client:
        client = self(username, password, **kw)
        rc = client.connect()
        assert rc == 0, f"{username} refused: {rc}"
        return client

    def close_all(self) -> None:
        for client in self.made:
            client.close()

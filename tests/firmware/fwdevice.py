# Helpers for the device-life tests (watchdog, safe mode, OTA) under MicroPython and CPython: a
# node run through firmware.device on hal.sim, restarted in place on every reset as hw-sim does
# (a new SimBoard on the same directory), talking to the test broker, and an observer that
# keeps what the node publishes (births, telemetry, acks) and sends it signed commands.
import asyncio
import gc
import json

import fwsim
import fwtest

from firmware import protocol
from firmware.device import Device
from firmware.mqtt import sleep_ms
from hal.sim import SimBoard, SimClock, SimLink

SIGNER = fwsim.SIGNER
KEY = fwsim.KEY
SEC = 1000


class Host:
    """One node, restarted in place after each reset. link_up: the link of the next board."""

    def __init__(self, name, media_port=1, device=None, rate=1, **extra):
        self.id = fwtest.uid(name)
        self.dir = fwsim.tmpdir(name)
        host, port = fwtest.broker()
        self.cfg = {"id": self.id, "key": KEY,
                    "broker": {"host": host, "port": port, "password": "x", "keepalive": 10},
                    "media_hosts": ["127.0.0.1:%d" % media_port], "cache_bytes": 100000,
                    "session": {"backoff_min_ms": 100, "backoff_max_ms": 400,
                                "initial_jitter_ms": 50},
                    "device": device or {}}
        for k in extra:
            self.cfg[k] = extra[k]
        self.link_up = True
        # One clock for every boot (the RTC keeps time), at noon: outside quiet hours
        self.clock = SimClock(rate=rate, sim_epoch_ms=fwsim.day_noon_utc())
        self.dev = None
        self.board = None
        self.task = None
        self.boots = 0
        self.before_run = None  # called with the Device before it runs (a test breaks it)

    @property
    def node(self):
        return self.dev.node

    def boot(self):
        gc.collect()  # a reset starts on an empty heap, not on the garbage of the boot before
        self.board = SimBoard(self.dir, clock=self.clock, link=SimLink(self.link_up))
        self.board.on_reboot = lambda: asyncio.create_task(self._restart())
        self.dev = Device(self.board, self.cfg)
        self.boots += 1
        if self.before_run is not None:
            self.before_run(self.dev)
        self.task = asyncio.create_task(self.dev.run())
        return self

    def _stop(self):
        self.task.cancel()
        self.dev.halt()
        self.board.link.set_up(False)  # the old board is gone: its session cannot come back

    async def _restart(self):
        self._stop()
        await sleep_ms(50)
        self.boot()

    async def power_cut(self, off_ms=50):
        """Power off and on again (no reset cause written: the next board says "power")."""
        self.board.off = True
        self.board.sim_watchdog.stop()
        self._stop()
        await sleep_ms(off_ms)
        self.boot()

    def close(self):
        if self.dev is not None:
            self._stop()

    def events(self, kind=None):
        out = []
        with open(self.dir + "/events.jsonl") as f:
            for line in f:
                if line.strip():
                    ev = json.loads(line)
                    if kind is None or ev["event"] == kind:
                        out.append(ev)
        return out

    def boot_file(self):
        raw = self.board.storage.read("boot.json")
        return json.loads(raw) if raw else None


class Observer:
    """The headend's side on the test broker: keeps every message the node publishes and
    sends it signed commands (seq counting up)."""

    def __init__(self, node_id):
        self.node_id = node_id
        self.msgs = []  # (leaf, message)
        self.seq = 0
        self.c = None
        self.task = None

    async def start(self):
        self.c = fwtest.client("obs")

        def on_message(topic, payload):
            parts = protocol.split_topic(topic)
            if parts and parts[0] == self.node_id:
                msg = protocol.decode(payload)
                if msg is not None:
                    self.msgs.append((parts[1], msg))

        self.c.on_message = on_message
        self.task = await fwtest.started(self.c)
        for leaf in (protocol.ACK, protocol.STATE, protocol.TELEMETRY, protocol.ASRUN):
            await self.c.subscribe(protocol.topic(self.node_id, leaf), 1)
        return self

    async def close(self):
        if self.c is not None:
            await fwtest.stop(self.c, self.task)

    def of(self, leaf):
        return [m for lf, m in self.msgs if lf == leaf]

    def acks(self, cid):
        return [m for m in self.of(protocol.ACK) if m.get("id") == cid]

    def telemetry(self):
        t = self.of(protocol.TELEMETRY)
        return t[-1] if t else None

    async def send(self, op, args, now_ms):
        """now_ms: the node's clock (host.clock.time_ms())."""
        self.seq += 1
        cid = "c%d-%s" % (self.seq, op)
        cmd = protocol.make_command(SIGNER, cid, self.node_id, self.seq, now_ms,
                                    now_ms + 120000, op, args)
        await self.c.publish(protocol.topic(self.node_id, protocol.CMD),
                             protocol.encode_command(cmd), 1)
        return cid

    async def publish_plan(self, payload):
        """Retained, as the headend publishes plans."""
        await self.c.publish(protocol.topic(self.node_id, protocol.PLAN), payload, 1, True)

    async def clear_plan(self):
        await self.c.publish(protocol.topic(self.node_id, protocol.PLAN), b"", 1, True)

    async def final(self, cid, timeout_ms=15000):
        def done():
            for m in self.acks(cid):
                if m["status"] in (protocol.DONE, protocol.FAILED, protocol.REJECTED):
                    return m
            return None
        ok = await fwtest.until(done, timeout_ms, 20)
        assert ok, ("no final ack", cid, self.acks(cid))
        return done()


async def reported(host, obs, fw=None, timeout_ms=15000, after=0):
    """Until the node is connected and its telemetry (from this boot, with fw) is out."""
    def ok():
        if not (host.node.session.connected and host.node.reported):
            return False
        return any(fw is None or t.get("fw") == fw for t in obs.of(protocol.TELEMETRY)[after:])
    assert await fwtest.until(ok, timeout_ms, 20), ("not reported", fw, obs.telemetry())


def image(n, seed=b"loaxa-image"):
    """n bytes of a stand-in firmware image (the simulator runs no code from its slots),
    built in place: one allocation (the MicroPython test heap fragments easily)."""
    import hashlib
    out = bytearray(n)
    block = seed
    i = 0
    while i < n:
        block = hashlib.sha256(block).digest()
        k = min(32, n - i)
        out[i:i + k] = block[:k]
        i += k
    return out


def ota_args(srv, path, data, version, board="sim", signer=SIGNER):
    m = protocol.sign_ota_manifest(signer, version, board, len(data), fwsim.sha(data))
    m["url"] = srv.url(path)
    return m

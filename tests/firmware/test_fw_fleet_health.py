"""Node health on a running hw-sim fleet (the firmware under real MicroPython, a real
Mosquitto, signed commands over MQTT; no headend): Fleet.set_fault drives the simulated
hardware, amp_fault reaches telemetry at once, a test tone airs at its frequency, and a reboot
brings the node back with the next session counter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.audio_check import dominant_hz

from firmware import protocol
from firmware.mqtt import MQTTClient
from hwsim.fleet import Fleet, SimNode, quiet_away_from_now

KEY = "22" * 32
NODE = "n-health"
SIGNER = protocol.Signer(protocol.node_key(KEY))


class Headend:
    """Just enough of a headend: signs commands, collects what the node publishes."""

    def __init__(self, host: str, port: int) -> None:
        self.client = MQTTClient(f"hq-{time.time_ns() % 10**9}", host, port)
        self.msgs: list[tuple[str, dict[str, Any]]] = []
        self.seq = 0
        self.client.on_message = self._on_message
        self._task: asyncio.Task[None] | None = None

    def _on_message(self, topic: str, payload: bytes) -> None:
        parts = protocol.split_topic(topic)
        msg = protocol.decode(payload)
        if parts and msg is not None:
            self.msgs.append((parts[1], msg))

    async def start(self) -> None:
        await self.client.connect(5000)
        self._task = asyncio.create_task(self.client.run())
        for leaf in (protocol.ACK, protocol.STATE, protocol.TELEMETRY, protocol.ASRUN):
            await self.client.subscribe(protocol.topic(NODE, leaf), 1)

    async def send(self, op: str, args: dict[str, Any]) -> str:
        self.seq += 1
        now = int(time.time() * 1000)
        cid = f"h{self.seq}-{now}"
        cmd = protocol.make_command(SIGNER, cid, NODE, now * 10 + self.seq, now, now + 60000,
                                    op, args)
        await self.client.publish(protocol.topic(NODE, protocol.CMD),
                                  protocol.encode_command(cmd), 1)
        return cid

    def of(self, leaf: str) -> list[dict[str, Any]]:
        return [m for t, m in self.msgs if t == leaf]

    def ack(self, cid: str, status: str) -> dict[str, Any] | None:
        for m in self.of(protocol.ACK):
            if m["id"] == cid and m["status"] == status:
                return m
        return None

    async def wait(self, pred: Any, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            await asyncio.sleep(0.02)
        raise TimeoutError(f"waited in vain; got {self.msgs[-8:]}")

    async def stop(self) -> None:
        self.client.close()
        if self._task:
            with contextlib.suppress(BaseException):  # the reader ends with the socket
                await self._task


@pytest.fixture
def fleet(fw_env: dict[str, str], tmp_path: Path) -> Iterator[Fleet]:
    host, _, port = fw_env["LOAXA_FW_BROKER"].rpartition(":")
    f = Fleet(tmp_path / "fleet", int(port), ["127.0.0.1:9"],
              [SimNode(NODE, KEY, "x")], broker_host=host, telemetry_s=3600,
              session={"initial_jitter_ms": 0},
              extra={"quiet": quiet_away_from_now()})  # its test tone plays at any hour
    f.start()
    try:
        f.wait_connected(20)
        yield f
    finally:
        f.stop()


def test_faults_tone_and_reboot_on_a_running_fleet(fleet: Fleet, fw_env: dict[str, str]) -> None:
    host, _, port = fw_env["LOAXA_FW_BROKER"].rpartition(":")

    async def main() -> None:
        hq = Headend(host, int(port))
        await hq.start()
        try:
            await scenario(hq)
        finally:
            await hq.stop()

    async def scenario(hq: Headend) -> None:
        births = await hq.wait(lambda: [m for m in hq.of(protocol.STATE) if m["online"]])
        session = births[-1]["session"]

        # faults set from outside reach the node's telemetry; the clock offset shows in "at"
        fleet.set_fault(NODE, temp_c=72, signal_dbm=-107, clock_offset_ms=20_000)
        asked = time.time() * 1000
        await hq.send("report", {})
        tel = await hq.wait(lambda: [t for t in hq.of(protocol.TELEMETRY) if t.get("full")])
        t = tel[-1]
        assert t["temp_c"] == 72 and t["signal_dbm"] == -107 and t["amp_fault"] is False
        assert 15_000 < t["at"] - asked < 25_000, t["at"] - asked
        assert "key" not in t["config"] and t["cache_n"] == 0

        # a dead amplifier: telemetry says so as soon as it is switched on
        fleet.set_fault(NODE, amp_fault=True, clock_offset_ms=0)
        before = len(hq.of(protocol.TELEMETRY))
        cid = await hq.send("amp", {"on": True})
        done = await hq.wait(lambda: hq.ack(cid, protocol.DONE))
        assert done["amp"] is True and done["amp_fault"] is True and done["amp_ma"] == 0
        tel = await hq.wait(lambda: hq.of(protocol.TELEMETRY)[before:])
        assert tel[0]["amp_fault"] is True and tel[0]["amp"] is True
        cid = await hq.send("amp", {"on": False})
        await hq.wait(lambda: hq.ack(cid, protocol.DONE))
        assert fleet.status()[NODE]["amp_fault"] is True

        # repaired: the test tone airs and the fault clears at once
        fleet.set_fault(NODE, amp_fault=False)
        before = len(hq.of(protocol.TELEMETRY))
        cid = await hq.send("test_tone", {"seconds": 1, "hz": 1250})
        await hq.wait(lambda: hq.ack(cid, protocol.DONE), 20)
        tel = await hq.wait(lambda: hq.of(protocol.TELEMETRY)[before:])
        assert tel[0]["amp_fault"] is False and tel[0]["amp_ma"] > 0
        [rec] = fleet.recordings(NODE)
        assert (rec.rate, rec.bits, rec.channels) == (16000, 16, 1)
        assert len(rec.pcm()) == 32000 and dominant_hz(rec.pcm(), 16000) == 1250
        asrun = await hq.wait(lambda: [a for a in hq.of(protocol.ASRUN) if a["cmd"] == cid])
        assert asrun[0]["trigger"] == "manual" and asrun[0]["kind"] == "test"
        assert asrun[0]["title"] == "Thử loa: âm thử 1250 Hz"

        # reboot: ack, gone, back with the next session counter; its faults are kept
        fleet.set_fault(NODE, temp_c=55)
        cid = await hq.send("reboot", {})
        await hq.wait(lambda: hq.ack(cid, protocol.DONE))
        back = await hq.wait(lambda: [m for m in hq.of(protocol.STATE)
                                      if m["online"] and m["session"] > session], 20)
        assert back[0]["session"] == session + 1
        assert fleet.reboots(NODE) == 1
        st = fleet.status()[NODE]
        assert st["boots"] == 2 and st["session"] == session + 1 and st["seq"] >= 1
        cid = await hq.send("report", {})
        await hq.wait(lambda: hq.ack(cid, protocol.DONE))
        tel = await hq.wait(lambda: [t for t in hq.of(protocol.TELEMETRY)
                                     if t.get("full") and t["session"] > session])
        tel = tel[-1]
        assert tel["temp_c"] == 55 and tel["session"] == session + 1 and tel["uptime_s"] < 10
        # the audio recorded before the reboot is still there, not overwritten
        assert len(fleet.recordings(NODE)) == 1

    asyncio.run(main())
    events = [e["event"] for e in fleet.events(NODE)]
    assert "reboot" in events and events.count("fault") == 4, events
    assert json.loads((fleet.node_dir(NODE) / "flash" / "state.json").read_text())["session"] >= 2

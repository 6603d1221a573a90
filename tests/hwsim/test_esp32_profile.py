"""The ESP32 profile in hw-sim: the firmware core over hal/esp32 (the board code that runs on
the ESP32) over hw-sim/mpsim's simulated machine/network/esp32, under real MicroPython, serving
a real headend. What reached the simulated I2S DAC, the relay pin and the radio are checked."""

from __future__ import annotations

import asyncio
import struct
import wave
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from support.loaxa_stack import Stack, wait_until

from headend.bench.node_day import run_day

PREROLL_MS = 300
POSTROLL_MS = 300


@pytest.fixture
def esp(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, nodes=1, fleet_options={"profile": "esp32",
                                                "extra": {"device": {"wdt_ms": 2000}}})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _halved(pcm: bytes) -> bytes:
    """What I2S.shift(shift=-1) makes of 16-bit samples (volume 70 is one halving)."""
    n = len(pcm) // 2
    return struct.pack(f"<{n}h", *(v >> 1 for v in struct.unpack(f"<{n}h", pcm)))


def _wait_records(stack: Stack, n: int) -> None:
    wait_until(lambda: len(stack.asrun()) >= n, 30, f"{n} as-run records")


def test_play_through_i2s_relay_around_it_and_volume(esp: Stack) -> None:
    node = esp.node_ids[0]
    with wave.open(str(esp.tone)) as w:
        tone = w.readframes(w.getnframes())
    esp.play()
    _wait_records(esp, 1)
    rec = esp.fleet.recordings(node)[0]
    # The default volume (70) is one -6 dB shift of every sample, applied before the DAC.
    assert (rec.rate, rec.bits, rec.channels) == (16000, 16, 1)
    assert rec.pcm() == _halved(tone)
    assert rec.end_ms is not None and abs(rec.end_ms - rec.start_ms - 3000) < 400
    ev = esp.fleet.events(node)
    names = [e["event"] for e in ev]
    on, opened = names.index("amp_on"), names.index("audio_open")
    closed, off = names.index("audio_close"), names.index("amp_off")
    assert on < opened < closed < off
    # The relay pin closed a pre-roll before the first I2S sample, opened a post-roll after.
    assert ev[opened]["at"] - ev[on]["at"] >= PREROLL_MS - 20
    assert ev[off]["at"] - ev[closed]["at"] >= POSTROLL_MS - 20
    assert ev[closed]["underrun_ms"] < 100

    esp.run(esp.headend.send([node], "volume", {"level": 100}, operator="t"))
    wait_until(lambda: any(e["event"] == "volume" and e["level"] == 100
                           for e in esp.fleet.events(node)), 10, "volume 100")
    esp.play()
    _wait_records(esp, 2)
    wait_until(lambda: len(esp.fleet.recordings(node)) == 2
               and esp.fleet.recordings(node)[1].end_ms, 10, "second recording")
    assert esp.fleet.recordings(node)[1].pcm() == tone  # full volume: the media's own PCM


def test_wlan_drop_reconnect_and_watchdog(esp: Stack) -> None:
    node = esp.node_ids[0]
    connects = [e for e in esp.fleet.events(node) if e["event"] == "net_connect"]
    assert len(connects) == 1 and connects[0]["iface"] == "WLAN"
    esp.fleet.set_link(node, False)  # the radio loses the access point
    wait_until(lambda: not esp.fleet.status()[node]["connected"], 10, "node offline")
    esp.fleet.set_link(node, True)
    wait_until(lambda: esp.fleet.status()[node]["connects"] >= 2, 20, "reconnected")
    # hal/esp32 noticed the drop on network.WLAN and connected the station again.
    assert sum(e["event"] == "net_connect" for e in esp.fleet.events(node)) >= 2
    assert any(e["event"] == "ntp" for e in esp.fleet.events(node))

    # Fed by the running loop, the 2 s watchdog has not fired in all this time...
    assert not any(e["event"] == "wdt_reset" for e in esp.fleet.events(node))
    assert esp.fleet.status()[node]["boots"] == 1
    # ...and once feeds stop reaching it (a hung firmware), it resets the node.
    esp.fleet._control(esp.fleet._procs[0], f'fault {node} {{"wdt_hold": true}}')
    wait_until(lambda: any(e["event"] == "wdt_reset" for e in esp.fleet.events(node)), 10,
               "watchdog reset")
    esp.fleet._control(esp.fleet._procs[0], f'fault {node} {{"wdt_hold": false}}')
    wait_until(lambda: esp.fleet.status()[node]["boots"] == 2
               and esp.fleet.status()[node]["connected"], 20, "back after the reset")


def test_plan_day_under_small_heap(tmp_path: Path) -> None:
    """A short day (relay 06:00-06:30) at 150x, the node with the ESP32's 96 KB of heap once
    its code is loaded (precompiled, as frozen on the board): the relay airs through I2S, no
    MemoryError."""
    r = asyncio.run(run_day(tmp_path, "esp32", 96 * 1024, 150, "05:50", "06:40",
                            date.today() + timedelta(days=1), events=False))
    assert not r.memory_error, r.log_tail
    assert r.boots == 1
    assert r.recordings == 1  # one I2S set-up: the whole relay, ~30 min at 200 B/s
    assert r.pcm_bytes >= 200 * 1800 * 0.9  # at 150x a real-time hiccup of the host is an underrun
    assert list(r.asrun.values()) == ["aired"], r.asrun
    assert 0 < r.heap_peak - r.heap_base < 96 * 1024
    assert r.traffic.total() > 0

"""Both boards serve one headend: an ESP32 node (the firmware core and hal/esp32 over the
simulated machine/network modules, in hw-sim under MicroPython) and a Raspberry Pi node (the
same firmware core and hal/rpi under CPython, gpiozero's MockFactory for the pins, mpv for the
sound card, writing what it would play to a file). Real Mosquitto, real headend.

One bulletin is sent to both: each loudspeaker gets exactly the headend's audio, the ESP32's
relay pin closes before it and opens after it (the Pi's relay order is in test_hal_rpi.py), the
diary has one line per board, and each board's telemetry names it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from support.loaxa_stack import Stack, small_commune, wait_until

from headend.core.models import Node
from hwsim.fleet import SimNode

REPO = Path(__file__).resolve().parents[2]
SESSION = {"backoff_min_ms": 200, "backoff_max_ms": 2000, "initial_jitter_ms": 300}


@pytest.fixture
def boards(tmp_path: Path) -> Iterator[tuple[Stack, Path, Path]]:
    stack = Stack(tmp_path, commune=small_commune(2))
    esp, pi = stack.secrets
    stack.fleet.nodes = [SimNode(esp.id, esp.key, esp.password, esp.village, profile="esp32")]
    stack.node_ids = [esp.id, pi.id]
    # The Pi: as `loaxa node provision --profile rpi` writes it, plus where a PC keeps things.
    route = tmp_path / "route"  # a default route on eth0, whatever this machine has
    route.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                     "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n")
    speaker = tmp_path / "pi-speaker.pcm"
    cfg = {"id": pi.id, "key": pi.key, "profile": "rpi",
           "broker": {"host": "127.0.0.1", "port": stack.broker.node_port, "password": pi.password,
                      "keepalive": 10},
           "media_hosts": [stack.media_host], "session": SESSION, "telemetry_s": 2,
           "quiet": stack.node_quiet,
           "rpi": {"link": {"kind": "net", "route_file": str(route)},
                   "data_dir": str(tmp_path / "pi" / "data"),
                   "run_dir": str(tmp_path / "pi" / "run"),
                   "install_dir": str(tmp_path / "pi" / "opt"),
                   "mpv_args": ["--ao=pcm", f"--ao-pcm-file={speaker}",
                                "--ao-pcm-waveheader=no", "--ao-pcm-append=yes"]}}
    cfg_path = tmp_path / "pi-node.json"
    cfg_path.write_text(json.dumps(cfg))
    log = tmp_path / "pi-node.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hal.rpi.main", "--config", str(cfg_path),
                                 "--mock-gpio"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        stack.start()
        yield stack, speaker, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        stack.stop()


def test_an_esp32_node_and_a_pi_node_air_the_same_bulletin(
        boards: tuple[Stack, Path, Path]) -> None:
    stack, speaker, _ = boards
    esp, pi = stack.node_ids
    with wave.open(str(stack.tone)) as w:
        tone = w.readframes(w.getnframes())
    # Full volume on both, so what reaches each loudspeaker is the headend's audio unchanged.
    for node in (esp, pi):
        cid = stack.run(stack.headend.send([node], "volume", {"level": 100}, operator="test"))[0].id
        wait_until(lambda cid=cid: stack.command(cid).status == "done", 15, f"volume on {node}")
    cmd_ids = stack.play(title="Bản tin hai loại loa")
    records = wait_until(lambda: len(stack.asrun()) == 2 and stack.asrun(), 40,
                         "an as-run record from each board")

    # ESP32: the PCM that reached the simulated I2S DAC, between the relay's on and off.
    (rec,) = stack.fleet.recordings(esp)
    assert (rec.rate, rec.bits, rec.channels) == (16000, 16, 1)
    assert rec.pcm() == tone
    events = [e["event"] for e in stack.fleet.events(esp)]
    assert events.index("amp_on") < events.index("audio_open")
    assert events.index("audio_close") < events.index("amp_off")
    # Raspberry Pi: what mpv sent to the sound card (ao_pcm may pad after the last sample).
    heard = wait_until(lambda: speaker.exists() and len(speaker.read_bytes()) >= len(tone)
                       and speaker.read_bytes(), 10, "the Pi's speaker file")
    assert heard[:len(tone)] == tone
    assert not heard[len(tone):].strip(b"\0")

    by_node = {r.node_id: r for r in records}
    assert sorted(by_node) == sorted([esp, pi])
    for r in by_node.values():
        assert r.outcome == "aired" and r.title == "Bản tin hai loại loa"
        assert r.command_id in cmd_ids
        assert r.end_ms is not None and r.start_ms is not None
        assert abs(r.end_ms - r.start_ms - 3000) < 600
    # Each board says what it is in its telemetry.
    def boards_seen() -> dict[str, str]:
        with Session(stack.engine) as s:
            rows = {n: s.get(Node, n) for n in (esp, pi)}
            return {n: json.loads(row.telemetry).get("board") for n, row in rows.items()
                    if row is not None and row.telemetry}
    assert wait_until(lambda: len(boards_seen()) == 2 and boards_seen(), 20,
                      "telemetry from both") == {esp: "esp32", pi: "rpi"}

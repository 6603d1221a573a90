"""`loaxa node provision` and `loaxa node flash` (docs/hardware.md).

Provisioning adds the node to the commune file and the database, and writes the config the node
runs with; with a headend running, the new node logs in to its broker at once and gets a plan.
Flashing is checked as far as a PC can: the files staged for the board compile for the ESP32,
and the esptool/mpremote command lines install MicroPython, the firmware and the config.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.loaxa_stack import wait_until

from headend.cli.main import main
from headend.communes.files import load_commune
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import Node
from headend.core.tls import installed
from headend.nodes.broker import find_free_port
from hwsim.fleet import Fleet, SimNode

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = REPO / "schedules" / "tan-lang.toml"


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    schedule = tmp_path / "tan-lang.toml"
    shutil.copyfile(SCHEDULE, schedule)
    return home, schedule


def loaxa(home: Path, *args: str) -> int:
    return main(["--home", str(home), *args])


def provision(home: Path, schedule: Path, village: str, *extra: str) -> int:
    return loaxa(home, "node", "provision", "--commune", "tan-lang", "--village", village,
                 "--schedule", str(schedule), *extra)


def test_provision_adds_the_node_everywhere_it_must_be(site: tuple[Path, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    home, schedule = site
    # A commune whose quiet hours end later than the default
    schedule.write_text(schedule.read_text().replace('end = "05:00"', 'end = "05:30"', 1))
    before = schedule.read_text()
    from headend.core.home import Home

    Home.create(home)
    assert provision(home, schedule, "na-pan", "--broker", "10.0.0.5:1883",
                     "--media", "10.0.0.5:8080") == 0
    out = capsys.readouterr().out
    assert "na-pan-1" in out
    # The commune file: only the village's nodes line changed.
    after = schedule.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True)
               if a != b]
    assert changed == [('nodes = ["tl-napan-1"]', 'nodes = ["tl-napan-1", "na-pan-1"]')]
    village = {v.id: v for v in load_commune(schedule).villages}["na-pan"]
    assert village.nodes == ("tl-napan-1", "na-pan-1")
    # The database has the node with the key the config carries.
    engine = open_db(f"sqlite:///{home / 'loaxa.db'}")
    with Session(engine) as s:
        node = s.get(Node, "na-pan-1")
        assert node is not None and node.village_id == "na-pan"
        key = node.key
    engine.dispose()
    cfg_path = home / "nodes" / "na-pan-1.node.json"
    assert cfg_path.stat().st_mode & 0o777 == 0o600
    cfg = json.loads(cfg_path.read_text())
    assert cfg["id"] == "na-pan-1" and cfg["key"] == key and len(key) == 64
    assert cfg["broker"]["host"] == "10.0.0.5" and cfg["broker"]["port"] == 1883
    assert len(cfg["broker"]["password"]) >= 20
    assert cfg["media_hosts"] == ["10.0.0.5:8080"]
    assert cfg["profile"] == "esp32" and cfg["link"] == "4g" and cfg["apn"] == "v-internet"
    assert cfg["quiet"] == [21 * 60 + 45, 5 * 60 + 30, 7 * 60]  # until its first plan
    # A second node in the same village takes the next number; WiFi and the Pi profile.
    assert provision(home, schedule, "na-pan", "--broker", "10.0.0.5:1883", "--media",
                     "10.0.0.5:8080", "--link", "wifi", "--wifi", "Xa-TanLang:matkhau123") == 0
    cfg2 = json.loads((home / "nodes" / "na-pan-2.node.json").read_text())
    assert cfg2["key"] != key
    assert (cfg2["link"], cfg2["wifi_ssid"], cfg2["wifi_password"]) == (
        "wifi", "Xa-TanLang", "matkhau123")
    # A Raspberry Pi on 4G: the link in its "rpi" section, as hal/rpi reads it.
    assert provision(home, schedule, "ban-chu", "--broker", "10.0.0.5:1883", "--media",
                     "10.0.0.5:8080", "--profile", "rpi", "--apn", "m3-world") == 0
    cfg3 = json.loads((home / "nodes" / "ban-chu-1.node.json").read_text())
    assert cfg3["profile"] == "rpi" and cfg3["rpi"] == {"link": {"kind": "4g",
                                                                 "apn": "m3-world"}}


@pytest.mark.parametrize(("args", "message"), [
    (("--village", "khong-co"), "no village 'khong-co' in tan-lang; its villages: ban-chu"),
    (("--village", "na-pan", "--link", "wifi"), "--link wifi needs --wifi SSID:PASSWORD"),
    (("--village", "na-pan", "--id", "tl-banchu-1"), "'tl-banchu-1' is already in use"),
    (("--village", "na-pan", "--id", "Bad Id"), "bad node id 'Bad Id'"),
    (("--village", "na-pan", "--broker", "10.0.0.5"), "--broker: give HOST:PORT"),
])
def test_bad_provisioning_changes_nothing(site: tuple[Path, Path], args: tuple[str, ...],
                                          message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    home, schedule = site
    from headend.core.home import Home

    Home.create(home)
    before = schedule.read_text()
    rc = loaxa(home, "node", "provision", "--commune", "tan-lang", "--schedule", str(schedule),
               "--media", "10.0.0.5:8080", *(("--broker", "10.0.0.5:1883")
                                             if "--broker" not in args else ()), *args)
    assert rc == 2
    assert message in capsys.readouterr().err
    assert schedule.read_text() == before
    assert not list((home / "nodes").glob("*.node.json"))


def test_unknown_commune_file_is_a_clear_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from headend.core.home import Home

    Home.create(tmp_path / "home")
    assert loaxa(tmp_path / "home", "node", "provision", "--commune", "xa-khac",
                 "--village", "a") == 2
    assert "no schedule file known for commune 'xa-khac'" in capsys.readouterr().err


@pytest.mark.parametrize("tls", [False, True], ids=["loopback", "tls"])
def test_a_node_provisioned_while_the_headend_runs_logs_in_and_gets_its_plan(
        site: tuple[Path, Path], tmp_path: Path, tls: bool) -> None:
    home, schedule = site
    port = find_free_port()
    # --name: the headend serves nodes over TLS with a certificate for that name, as it
    # must off loopback; the node gets the CA to pin in its config.
    public = ["--name", "127.0.0.1", "--node-port", str(find_free_port())] if tls else []
    with open(tmp_path / "serve.log", "w") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "headend.cli.main", "--home", str(home), "serve", str(schedule),
             "--port", str(port), *public], stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True)
    fleet = None
    try:
        wait_until(lambda: (home / "running.json").exists(), 60, "the headend to start")
        running = json.loads((home / "running.json").read_text())
        # No --schedule: the file `loaxa serve` was given is remembered.
        assert loaxa(home, "node", "provision", "--commune", "tan-lang", "--village", "ban-chu",
                     *([] if tls else ["--broker", "127.0.0.1"])) == 0
        cfg = json.loads((home / "nodes" / "ban-chu-1.node.json").read_text())
        assert cfg["broker"]["host"] == "127.0.0.1"
        assert cfg["broker"]["port"] == running["node_port"] != running["broker_port"]
        if tls:
            assert cfg["media_hosts"] == [f"https://127.0.0.1:{port}"]
            ca = base64.b64decode(cfg["broker"]["ca"])
            assert ca == installed(Home(home)).ca_der()  # DER: what MicroPython reads
        else:
            assert cfg["media_hosts"] == [f"127.0.0.1:{port}"]
            assert "ca" not in cfg["broker"]
        fleet = Fleet(root=tmp_path / "sim", broker_port=cfg["broker"]["port"],
                      media_hosts=cfg["media_hosts"],
                      broker_ca=base64.b64decode(cfg["broker"]["ca"]) if tls else None,
                      nodes=[SimNode(cfg["id"], cfg["key"], cfg["broker"]["password"],
                                     "ban-chu")])
        fleet.start()
        engine = open_db(f"sqlite:///{home / 'loaxa.db'}")
        try:
            def online() -> bool:
                with Session(engine) as s:
                    return bool(s.scalar(select(Node.online).where(Node.id == "ban-chu-1")))
            wait_until(online, 30, "the new node to come online")
            # Its plan arrives (the publisher plans for every node of the commune file).
            wait_until(lambda: fleet.status()["ban-chu-1"]["plan"] is not None, 60,
                       "the new node's plan")
        finally:
            engine.dispose()
    finally:
        if fleet is not None:
            fleet.stop()
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(30)


def test_flash_stages_esp32_files_and_the_right_commands(
        site: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, schedule = site
    from headend.core.home import Home

    Home.create(home)
    assert provision(home, schedule, "na-pan", "--broker", "10.0.0.5:1883",
                     "--media", "10.0.0.5:8080") == 0
    image = tmp_path / "ESP32_GENERIC-SPIRAM.bin"
    image.write_bytes(b"\xe9" + bytes(1023))
    capsys.readouterr()
    cfg = home / "nodes" / "na-pan-1.node.json"
    assert loaxa(home, "node", "flash", "--port", "/dev/ttyUSB0", "--config", str(cfg),
                 "--micropython", str(image), "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 "
                             "erase-flash")
    assert lines[1].endswith(f"write-flash -z 0x1000 {image}")
    copy = lines[-1].split()
    assert copy[1:3] == ["connect", "/dev/ttyUSB0"] and copy[-1] == "reset"
    dests = {copy[i + 2] for i, w in enumerate(copy) if w == "cp"}
    assert ":config.json" in dests and ":main.py" in dests
    assert ":firmware/node.mpy" in dests and ":hal/base.mpy" in dests
    assert any(d.startswith(":hal/esp32/") for d in dests)
    # The config that goes on the board is the provisioned one.
    assert copy[copy.index(":config.json") - 1] == str(cfg)


def test_flash_refuses_what_it_cannot_install(site: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    home, schedule = site
    from headend.core.home import Home

    Home.create(home)
    assert provision(home, schedule, "na-pan", "--broker", "10.0.0.5:1883", "--media",
                     "10.0.0.5:8080", "--profile", "rpi") == 0
    capsys.readouterr()
    rpi = home / "nodes" / "na-pan-1.node.json"
    assert loaxa(home, "node", "flash", "--port", "/dev/ttyUSB0", "--config", str(rpi)) == 2
    assert "only ESP32 nodes are flashed" in capsys.readouterr().err
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert loaxa(home, "node", "flash", "--port", "/dev/ttyUSB0", "--config", str(bad)) == 2
    assert "not a node config file" in capsys.readouterr().err
    assert provision(home, schedule, "ban-chu", "--broker", "10.0.0.5:1883", "--media",
                     "10.0.0.5:8080") == 0
    capsys.readouterr()
    esp = home / "nodes" / "ban-chu-1.node.json"
    assert loaxa(home, "node", "flash", "--port", str(tmp_path / "ttyUSB9"),
                 "--config", str(esp)) == 2
    assert "no such serial port" in capsys.readouterr().err

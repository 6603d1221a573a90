"""Secrets on disk are their owner's only: the state directory 0700, the database (every node's
HMAC key), the headend's password, node configs, the broker's files and the simulator's host
files 0600, whatever the umask; what has been loosened since is named at start-up."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.diary_data import new_commune

from headend.communes.registry import headend_password
from headend.core.home import Home
from headend.nodes.broker import Broker
from hwsim.fleet import Fleet, SimNode


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: new files 0644, directories 0755
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_installation_keeps_its_secrets_private(tmp_path: Path, loose_umask: None) -> None:
    engine = new_commune(tmp_path)  # Home.create, the database, a commune's nodes
    engine.dispose()
    home = Home(tmp_path / "home")
    headend_password(home)
    nodes = {p.stem: "pw" for p in (home.nodes_dir).glob("*.json")}
    assert nodes
    Broker(home.broker_dir, 18830, headend_password="x").write_config(nodes)
    assert mode(home.root) == 0o700
    assert mode(home.db_path) == 0o600
    assert mode(home.secrets_path) == 0o600
    for d in ("broker", "nodes", "sim"):
        assert mode(home.root / d) == 0o700, d
    secret_files = [*home.nodes_dir.iterdir(), *home.broker_dir.iterdir()]
    for p in secret_files:
        if p.is_file():
            assert mode(p) == 0o600, p
    assert home.loose_permissions() == []


def test_loosened_files_are_named(tmp_path: Path, loose_umask: None) -> None:
    engine = new_commune(tmp_path)
    engine.dispose()
    home = Home(tmp_path / "home")
    home.db_path.chmod(0o644)
    home.root.chmod(0o755)
    node_file = next(home.nodes_dir.iterdir())
    node_file.chmod(0o640)
    loose = home.loose_permissions()
    assert loose == [f"{home.root} (0755)", f"{home.db_path} (0644)", f"{node_file} (0640)"]


def test_simulator_host_files_are_private(tmp_path: Path, loose_umask: None) -> None:
    fleet = Fleet(root=tmp_path / "sim", broker_port=1, media_hosts=[],
                  nodes=[SimNode("n1", "00" * 32, "secret-pw", "v1")])
    try:
        fleet.start()  # no broker here: the node keeps trying, its host runs
    finally:
        fleet.stop()
    hosts = list((tmp_path / "sim").glob("host-*.json"))
    assert hosts and all(mode(p) == 0o600 for p in hosts)
    assert mode(tmp_path / "sim") == 0o700

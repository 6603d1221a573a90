"""`loaxa node ota` end to end: the headend builds an image from the tree, signs its manifest for
the node, serves it from its media server and sends the command through the real broker; a
MicroPython node verifies and installs it and comes back on the new version. A manifest signed
with the wrong key, a tampered image and an older version are refused, the running image
untouched. (The trial, confirm and rollback on the node are in tests/firmware/fw_ota_cases.py.)"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.cli import node_cli, running
from support.loaxa_stack import Stack, wait_until

from firmware import protocol
from firmware.node import FW_VERSION
from headend.cli.main import main
from headend.core.models import Command, Node
from headend.nodes import ota


def node_row(stack: Stack, node_id: str) -> Node:
    with Session(stack.engine) as s:
        node = s.get(Node, node_id)
        assert node is not None
        return node


def telemetry(stack: Stack, node_id: str) -> dict[str, object]:
    raw = node_row(stack, node_id).telemetry
    return json.loads(raw) if raw else {}


def test_tree_image_says_its_version(tmp_path: Path) -> None:
    path = ota.build_tree_image(tmp_path / "a.tar.gz", "0.9.1")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(path.read_bytes()))) as tar:
        names = tar.getnames()
        node_py = tar.extractfile("firmware/node.py").read().decode()  # type: ignore[union-attr]
    assert "firmware/ota.py" in names and "hal/base.py" in names and "hal/sim/__init__.py" in names
    assert 'FW_VERSION = "0.9.1"' in node_py
    # Reproducible: the same tree gives the same bytes (and so the same signed hash).
    assert ota.build_tree_image(tmp_path / "b.tar.gz", "0.9.1").read_bytes() == path.read_bytes()
    image = ota.load_image(path, "sim", "0.9.1")
    args = ota.ota_args(image, "http://h:1/media/x", "11" * 32)
    signer = protocol.Signer(protocol.node_key("11" * 32))
    assert signer.verify(protocol.ota_manifest_bytes(args), args["sig"])
    with pytest.raises(ota.OtaError):
        ota.load_image(path, "sim", "latest")


def test_node_installs_a_signed_image_and_comes_back_on_it(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    running(stack)
    node = "n0001"
    wait_until(lambda: telemetry(stack, node).get("board") == "sim", 15, "first telemetry")
    before = node_row(stack, node).session
    _code, out = node_cli(stack, capsys, "ota", node, "--version", "0.2.0", "--wait", "5")
    assert "ota – n0001: xong" in out, out
    # The node verified the image, staged it and rebooted into it: its birth says 0.2.0.
    wait_until(lambda: stack.fleet.reboots(node) == 1, 15, "the reboot")
    wait_until(lambda: node_row(stack, node).session > before
               and node_row(stack, node).fw == "0.2.0", 30, "the node back on 0.2.0")
    [name] = [p.name for p in stack.home.media_dir.glob("fw-sim-0.2.0-*.tar.gz")]
    slot = stack.fleet.node_dir(node) / "ota" / "b.img"
    assert slot.read_bytes() == (stack.home.media_dir / name).read_bytes()
    wait_until(lambda: telemetry(stack, node).get("fw") == "0.2.0", 30, "telemetry on 0.2.0")
    assert (telemetry(stack, node).get("ota") or {}).get("slot") == "slot-b"
    with Session(stack.engine) as s:
        cmd = s.scalars(select(Command).where(Command.node_id == node)).one()
        assert (cmd.op, cmd.status, cmd.operator) == ("ota", "done", "KTV Hùng")


def test_refused_images_leave_the_node_as_it_was(
        stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    running(stack)
    node = "n0002"
    wait_until(lambda: telemetry(stack, node).get("board") == "sim", 15, "first telemetry")
    # Not newer than what runs: refused by the node.
    code, out = node_cli(stack, capsys, "ota", node, "--version", FW_VERSION)
    assert code == 1 and f"không thành công ({protocol.R_NOT_NEWER}" in out, out
    # Signed with another node's key (the headend's manifest for n0003 replayed to n0002).
    image = ota.load_image(ota.build_tree_image(tmp_path / "i.tar.gz", "0.3.0"), "sim", "0.3.0")
    name = ota.publish_image(image, stack.home.media_dir)
    other_key = node_row(stack, "n0003").key
    args = ota.ota_args(image, stack.media_url(name), other_key)
    [cmd] = stack.run(stack.headend.send([node], "ota", args))
    wait_until(lambda: stack.command(cmd.id).status == "failed", 15, "the refusal")
    assert stack.command(cmd.id).reason == protocol.R_SIGNATURE
    # Its own manifest, but the file on the server is not that image.
    args = ota.ota_args(image, stack.media_url(name), node_row(stack, node).key)
    (stack.home.media_dir / name).write_bytes(b"x" * image.size)
    [cmd] = stack.run(stack.headend.send([node], "ota", args))
    wait_until(lambda: stack.command(cmd.id).status == "failed", 15, "the refusal")
    assert stack.command(cmd.id).reason == protocol.R_BAD_HASH
    assert stack.fleet.reboots(node) == 0
    assert node_row(stack, node).fw == FW_VERSION
    assert not (stack.fleet.node_dir(node) / "flash" / "otaboot.json").exists() or json.loads(
        (stack.fleet.node_dir(node) / "flash" / "otaboot.json").read_text())["boot"] == "a"
    # An image for another board: the node refuses it (the manifest names the board).
    code, out = node_cli(stack, capsys, "ota", node, "--version", "0.4.0", "--board", "esp32",
                         "--image", str(tmp_path / "i.tar.gz"))
    assert code == 1 and f"không thành công ({protocol.R_WRONG_BOARD}" in out, out
    with pytest.raises(SystemExit):
        main(["--home", str(stack.home.root), "node", "ota", node, "--board", "pc"])

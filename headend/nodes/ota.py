"""Firmware updates for nodes (`loaxa node ota`): an image built from the tree (the simulator and
a Raspberry Pi run a .tar.gz of firmware/ and hal/) or given (an ESP32's MicroPython .bin), put in
the media directory the nodes already download from, its manifest {version, board, size, sha256}
signed with the node's own key, and sent as the "ota" command (docs/protocol.md, "OTA")."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from firmware import protocol
from headend.core.models import Node
from headend.core.paths import code_root
from headend.nodes.gateway import HeadendOffline, tool_session
from headend.nodes.operations import FINAL, follow_acks

BOARDS = ("sim", "rpi", "esp32")
TREE_BOARDS = ("sim", "rpi")  # boards whose image is the source tree
TREES = ("firmware", "hal")
_FW_VERSION = re.compile(r'^FW_VERSION = "([0-9.]+)"$', re.MULTILINE)
DOWNLOAD_WAIT_S = 180.0  # an ESP32 on 4G fetches 1.5 MB in about a minute


class OtaError(Exception):
    pass


@dataclass(frozen=True)
class Image:
    path: Path
    board: str
    version: str
    size: int
    sha256: str

    def manifest(self) -> dict[str, Any]:
        return {"version": self.version, "board": self.board, "size": self.size,
                "sha256": self.sha256}


def tree_version(root: Path | None = None) -> str:
    """FW_VERSION of the firmware in the tree (default: the installed firmware package)."""
    root = root or code_root()
    m = _FW_VERSION.search((root / "firmware" / "node.py").read_text())
    if m is None:
        raise OtaError("no FW_VERSION in firmware/node.py")
    return m.group(1)


def _check_version(version: str) -> None:
    if protocol.parse_version(version) is None:
        raise OtaError(f"version must be numbers with dots (1.2.3), not {version!r}")


def build_tree_image(out: Path, version: str, root: Path | None = None) -> Path:
    """A .tar.gz of firmware/ and hal/ (the .py files), as a Pi's or the simulator's slot holds
    it, with FW_VERSION in firmware/node.py set to version so the code says what the manifest
    does. Reproducible: sorted names, fixed times and owners."""
    root = root or code_root()
    _check_version(version)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for tree in TREES:
            for path in sorted((root / tree).rglob("*.py")):
                rel = path.relative_to(root).as_posix()
                data = path.read_bytes()
                if rel == "firmware/node.py":
                    text, n = _FW_VERSION.subn(f'FW_VERSION = "{version}"', data.decode())
                    if n != 1:
                        raise OtaError("no FW_VERSION in firmware/node.py")
                    data = text.encode()
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
    out.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return out


def load_image(path: Path, board: str, version: str) -> Image:
    if board not in BOARDS:
        raise OtaError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    _check_version(version)
    if not path.is_file():
        raise OtaError(f"no image file {path}")
    size = path.stat().st_size
    if not 0 < size <= protocol.OTA_MAX_SIZE:
        raise OtaError(f"image is {size} bytes; 1 to {protocol.OTA_MAX_SIZE} allowed")
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return Image(path, board, version, size, h.hexdigest())


def publish_image(image: Image, media_dir: Path) -> str:
    """Copy the image into the media directory (served at /media/<name>); returns the name."""
    ext = ".bin" if image.board == "esp32" else ".tar.gz"
    name = f"fw-{image.board}-{image.version}-{image.sha256[:12]}{ext}"
    dest = media_dir / name
    if not dest.exists():
        tmp = dest.with_suffix(".part")
        shutil.copyfile(image.path, tmp)
        tmp.replace(dest)
    return name


def ota_args(image: Image, url: str, node_key_hex: str) -> dict[str, Any]:
    """The "ota" command's args for one node: the url and the manifest signed with its key."""
    signer = protocol.Signer(protocol.node_key(node_key_hex))
    args: dict[str, Any] = protocol.sign_ota_manifest(signer, image.version, image.board,
                                                      image.size, image.sha256)
    args["url"] = url
    bad = protocol.args_error("ota", args)
    if bad:
        raise OtaError(f"bad ota argument {bad!r}")
    return args


def node_key_hex(engine: Engine, node_id: str) -> str:
    with Session(engine) as s:
        node = s.get(Node, node_id)
        if node is None:
            raise OtaError(f"unknown node {node_id!r}")
        return node.key


async def send_ota(engine: Engine, broker_port: int, password: str, node_id: str,
                   image: Image, url: str, operator: str,
                   on_ack: Callable[[dict[str, Any]], None],
                   back_within_s: float = 360.0) -> dict[str, Any]:
    """Send the signed ota command and report its acks; after "done" (image verified and
    staged, the node reboots) wait up to back_within_s for the node's telemetry to say the new
    version was confirmed or rolled back. Returns the final ack plus "ota": that telemetry
    field (None, or another version's, when the node did not report in time)."""
    key = await asyncio.to_thread(node_key_hex, engine, node_id)
    args = ota_args(image, url, key)
    title = f"Cập nhật phần mềm {image.version} ({image.board})"
    loop = asyncio.get_running_loop()
    try:
        async with tool_session(engine, broker_port, password, "ota") as headend:
            [cmd] = await asyncio.to_thread(headend.prepare, [node_id], "ota", args, 120_000,
                                            operator, title)
            final = await follow_acks(headend, cmd, (protocol.ACCEPTED, *FINAL),
                                      DOWNLOAD_WAIT_S, on_ack)
            if final is None:
                raise OtaError(f"{node_id} did not answer within {DOWNLOAD_WAIT_S:.0f} s "
                               "(offline? see `loaxa nodes`)")
    except HeadendOffline as e:
        raise OtaError(str(e)) from None
    if final.get("status") != protocol.DONE:
        return final
    # The node reboots into the image on trial and confirms it once healthy (its telemetry's
    # "ota" says so), or its board rolls back after the trial deadline.
    end = loop.time() + back_within_s
    state = None
    while loop.time() < end:
        state = await asyncio.to_thread(_ota_state, engine, node_id)
        if state and state.get("version") == image.version \
                and state.get("state") in ("confirmed", "rolled_back"):
            break
        await asyncio.sleep(0.5)
    return {**final, "ota": state}


def _ota_state(engine: Engine, node_id: str) -> dict[str, Any] | None:
    """The "ota" field of the node's last telemetry."""
    with Session(engine) as s:
        node = s.get(Node, node_id)
        raw = node.telemetry if node else None
    try:
        ota = json.loads(raw).get("ota") if raw else None
    except ValueError:
        return None
    return ota if isinstance(ota, dict) else None

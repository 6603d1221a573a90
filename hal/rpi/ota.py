"""A/B install directories for firmware updates on a Pi.

    <install_dir>/a/, b/     the firmware/ and hal/ trees of each slot
    <install_dir>/current    symlink to a or b: what the launcher starts
    <install_dir>/ota.json   {"next": slot} after finish(); {"trial": slot, "from": old,
                             "boots": n} while the new slot runs unconfirmed

The node (AbOta, board.ota) writes the image (a .tar.gz of firmware/ and hal/) into the slot
not running and records "next"; the launcher (hal/rpi/launcher.py) switches `current` on
its next start and rolls back when a trial boot ends without confirm()."""
import contextlib
import json
import logging
import os
import shutil
import tarfile
from typing import IO, Any

from hal import base
from hal.rpi.const import ENV_INSTALL_DIR, ENV_SLOT
from hal.rpi.storage import atomic_write, fsync_dir

log = logging.getLogger(__name__)

SLOTS = ("a", "b")
MAX_TRIAL_BOOTS = 1  # a trial slot that has started this often without confirm() is dropped
REQUIRED = ("firmware", "hal")  # top-level directories an image must hold


class AbSlots:
    """The install directory's slots and state file (shared by AbOta and the launcher)."""

    def __init__(self, root: str):
        self.root = root
        self.current = os.path.join(root, "current")
        self.state_path = os.path.join(root, "ota.json")

    def dir(self, slot: str) -> str:
        return os.path.join(self.root, slot)

    def active(self) -> str:
        """The slot `current` points at."""
        target = os.path.basename(os.readlink(self.current).rstrip("/"))
        if target not in SLOTS:
            raise ValueError(f"current -> {target!r} is not a slot")
        return target

    @staticmethod
    def other(slot: str) -> str:
        return "b" if slot == "a" else "a"

    def point_current(self, slot: str) -> None:
        """Switch `current` atomically (a new symlink renamed over the old)."""
        tmp = self.current + ".new"
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(slot, tmp)
        os.replace(tmp, self.current)
        fsync_dir(self.root)

    def state(self) -> dict[str, Any]:
        try:
            with open(self.state_path) as f:
                st = json.load(f)
                return st if isinstance(st, dict) else {}
        except (OSError, ValueError):
            return {}

    def save(self, st: dict[str, Any]) -> None:
        atomic_write(self.state_path, json.dumps(st).encode())


def safe_extract(archive: str, dest: str) -> None:
    """Unpack a .tar.gz into dest, refusing absolute paths, '..' members, links and device
    files (an image may only hold plain files and directories under REQUIRED)."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            name = m.name
            parts = name.replace("\\", "/").split("/")
            if name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
                raise ValueError(f"refused image member {name!r}")
            if parts[0] in ("", ".") and len(parts) > 1:
                parts = parts[1:]
            if parts[0] not in REQUIRED:
                raise ValueError("image member {!r} outside {}".format(name, "/".join(REQUIRED)))
        os.makedirs(dest)
        tar.extractall(dest, members=members, filter="data")


class AbOta(base.Ota):
    def __init__(self, root: str, slot: str | None = None):
        self.slots = AbSlots(root)
        self._slot = slot
        self._f: IO[bytes] | None = None
        self._size = 0
        self._got = 0

    @classmethod
    def from_env(cls, default_root: str = "/opt/loaxa") -> "AbOta":
        """As the launcher started us: LOAXA_INSTALL_DIR and LOAXA_SLOT."""
        return cls(os.environ.get(ENV_INSTALL_DIR, default_root), os.environ.get(ENV_SLOT))

    def running(self) -> str:
        return self._slot or self.slots.active()

    def _staging(self) -> str:
        return os.path.join(self.slots.root, f"{AbSlots.other(self.running())}.tar.gz.part")

    def begin(self, size: int) -> None:
        st = self.slots.state()
        if "next" in st:  # an earlier image not yet started: this one replaces it
            st.pop("next")
            self.slots.save(st)
        self._f = open(self._staging(), "wb")  # noqa: SIM115 - kept open across write() calls
        self._size, self._got = size, 0

    def write(self, data: bytes) -> None:
        if self._f is None:
            raise OSError("ota: begin() first")
        self._f.write(data)
        self._got += len(data)

    def finish(self) -> None:
        if self._f is None:
            raise OSError("ota: begin() first")
        f, self._f = self._f, None
        f.flush()
        os.fsync(f.fileno())
        f.close()
        staging = self._staging()
        try:
            if self._got != self._size:
                raise ValueError(f"ota: image is {self._got} bytes, expected {self._size}")
            target = AbSlots.other(self.running())
            new = self.slots.dir(target) + ".new"
            shutil.rmtree(new, ignore_errors=True)
            try:
                safe_extract(staging, new)
                for d in REQUIRED:
                    if not os.path.isdir(os.path.join(new, d)):
                        raise ValueError(f"ota: image has no {d}/")
            except (tarfile.TarError, OSError, ValueError):
                shutil.rmtree(new, ignore_errors=True)
                raise
            shutil.rmtree(self.slots.dir(target), ignore_errors=True)
            os.replace(new, self.slots.dir(target))
            fsync_dir(self.slots.root)
            self.slots.save({"next": target, "from": self.running()})
            log.info("ota: slot %s installed, boots next on trial", target)
        finally:
            with contextlib.suppress(OSError):
                os.remove(staging)

    def on_trial(self) -> bool:
        st = self.slots.state()
        return st.get("trial") == self.running()

    def confirm(self) -> None:
        st = self.slots.state()
        if st.get("trial") == self.running():
            self.slots.save({"confirmed": self.running()})
            log.info("ota: slot %s confirmed", self.running())

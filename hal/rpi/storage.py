"""Storage on a directory, safe against power cuts: write() goes to a temp file that is
flushed and fsynced, renamed over the old one, and the directory is fsynced."""
import contextlib
import os
from typing import IO, Any

from hal import base
from hal.sim import SlotCounter


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


class DurableSlotCounter(SlotCounter):
    """hal.sim's two-slot counter, fsynced on every set() (the SD card's page cache would
    otherwise lose it in a power cut)."""

    def __init__(self, path: str):
        super().__init__(path)
        fsync_dir(os.path.dirname(path) or ".")  # the file's creation

    def set(self, value: int) -> None:
        super().set(value)
        os.fsync(self._f.fileno())


class DirStorage(base.Storage):
    def __init__(self, directory: str):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, name: str) -> str:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"bad storage name {name!r}")
        return os.path.join(self.dir, name)

    def read(self, name: str) -> bytes | None:
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        atomic_write(self._path(name), bytes(data))

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._path(name))

    def open(self, name: str, mode: str) -> IO[Any]:
        return open(self._path(name), mode)

    def size(self, name: str) -> int | None:
        try:
            return os.stat(self._path(name)).st_size
        except FileNotFoundError:
            return None

    def rename(self, old: str, new: str) -> None:
        # What was written through open() reaches the card before it takes the new name
        # (the as-run journal and cache files are written that way): a power cut leaves the
        # old file or the whole new one.
        with open(self._path(old), "rb") as f:
            os.fsync(f.fileno())
        os.replace(self._path(old), self._path(new))
        fsync_dir(self.dir)

    def names(self) -> list[str]:
        return [n for n in os.listdir(self.dir) if not n.startswith(".") and
                not n.endswith(".tmp")]

    def counter(self, name: str) -> DurableSlotCounter:
        return DurableSlotCounter(self._path(name))

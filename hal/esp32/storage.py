# Files on the flash filesystem (littlefs).
# ruff: noqa: UP031, SIM105, RUF006, RUF012  (MicroPython: %-formatting, no contextlib)
import os

from hal import base


class FlashStorage(base.Storage):
    """Files on the flash filesystem (littlefs): write() goes to a temp file, then os.rename,
    which littlefs does atomically. The counter is base.FileCounter (one such write per update:
    commands are a few a day)."""

    def __init__(self, root=""):
        self.dir = root
        if root:
            try:
                os.mkdir(root)
            except OSError:
                pass

    def _path(self, name):
        return self.dir + "/" + name if self.dir else name

    def read(self, name):
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, data):
        path = self._path(name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)

    def remove(self, name):
        try:
            os.remove(self._path(name))
        except OSError:
            pass

    def open(self, name, mode):
        return open(self._path(name), mode)

    def size(self, name):
        try:
            return os.stat(self._path(name))[6]
        except OSError:
            return None

    def rename(self, old, new):
        os.rename(self._path(old), self._path(new))

    def names(self):
        skip = ("boot.py", "main.py", "config.json", "lib", "firmware", "hal")
        return [n for n in os.listdir(self.dir or "/") if not n.startswith(".")
                and n not in skip]

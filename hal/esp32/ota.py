# OTA into the ESP32's other app partition, with the bootloader's rollback.
# ruff: noqa: UP031, SIM105, RUF006, RUF012  (MicroPython: %-formatting, no contextlib)
from hal import base


class PartitionOta(base.Ota):
    """OTA into the next app partition (esp32.Partition), written in 4096-byte blocks from one
    buffer. A flag file names the partition booted on trial: until confirm() marks the app
    valid, the bootloader rolls back at the next reset."""

    BLOCK = 4096
    FLAG = "ota_trial"

    def __init__(self, hw, storage):
        self._P = hw.esp32.Partition
        self._storage = storage
        self._part = None  # type: object | None
        self._buf = None  # type: bytearray | None
        self._fill = 0
        self._block = 0
        self._size = 0

    def running(self):
        return self._P(self._P.RUNNING).info()[4]

    def begin(self, size):
        part = self._P(self._P.RUNNING).get_next_update()
        cap = part.ioctl(4, 0) * part.ioctl(5, 0)  # block count x block size
        if size > cap:
            raise OSError("image of %d bytes; the partition holds %d" % (size, cap))
        self._part = part
        if self._buf is None:
            self._buf = bytearray(self.BLOCK)
        self._fill = 0
        self._block = 0
        self._size = size

    def write(self, data):
        buf = self._buf
        if self._part is None or buf is None:
            raise OSError("ota not begun")
        i = 0
        n = len(data)
        while i < n:
            k = self.BLOCK - self._fill
            if k > n - i:
                k = n - i
            buf[self._fill:self._fill + k] = data[i:i + k]
            self._fill += k
            i += k
            if self._fill == self.BLOCK:
                self._flush()

    def _flush(self):
        buf = self._buf
        if buf is None or self._part is None:
            return
        for j in range(self._fill, self.BLOCK):
            buf[j] = 0xFF
        self._part.writeblocks(self._block, buf)  # type: ignore[attr-defined]
        self._block += 1
        self._fill = 0

    def finish(self):
        part = self._part
        if part is None:
            raise OSError("ota not begun")
        if self._fill:
            self._flush()
        part.set_boot()  # type: ignore[attr-defined]
        self._storage.write(self.FLAG, part.info()[4].encode())  # type: ignore[attr-defined]
        self._part = None
        self._buf = None  # 4 KB back to the heap

    def on_trial(self):
        flag = self._storage.read(self.FLAG)
        return flag is not None and flag.decode() == self.running()

    def confirm(self):
        self._P.mark_app_valid_cancel_rollback()
        self._storage.remove(self.FLAG)

# Audio out through the I2S DAC (MAX98357A or PCM5102), with the village's volume trim.
# ruff: noqa: UP031, SIM105, RUF006, RUF012  (MicroPython: %-formatting, no contextlib)
import asyncio
import gc

from hal import base
from hal.esp32.const import I2S_IBUF, VOLUME_BUF

RING_MS = 200  # audio queued in the I2S ring at most


def volume_shift(level):
    """Volume 0..100 as the I2S.shift of the samples: 100 is as prepared, each step down is
    -6 dB (halving); 0 mutes (None). The headend normalises loudness; this is the village's
    trim, and a shift costs nothing per sample in C."""
    if level <= 0:
        return None
    shift = 0
    gain = 100
    while level * 4 <= gain * 3 and shift > -7:  # below 3/4 of the step: one more halving
        gain //= 2
        shift -= 1
    return shift


class I2sAudioOut(base.AudioOut):
    """PCM to the DAC through machine.I2S (TX, Philips standard), paced by asyncio: the I2S
    object is polled through asyncio.StreamWriter, so write() returns once the DMA ring (ibuf
    bytes) has taken the chunk, and drain() waits out what is still in the ring. The I2S is
    set up at open() in the stream's format (rate, 16/32 bits, mono/stereo) and released at
    close(): its ring comes from the heap, which playback-free hours give back.
    Volume scales a copy of each chunk in one preallocated buffer (no allocation per chunk)."""

    def __init__(self, hw, clock, pins, ibuf=I2S_IBUF, i2s_id=0, trace=None):
        self._m = hw.machine
        self.clock = clock
        self._pins = pins
        self._ibuf = ibuf
        self._id = i2s_id
        self._trace = trace
        self._buf = bytearray(VOLUME_BUF)
        self._mv = memoryview(self._buf)
        self._i2s = None  # type: object | None
        self._w = None  # type: asyncio.StreamWriter | None
        self._bits = 16
        self._frame = 2
        self._bpms = 32.0  # bytes per ms of the open stream
        self._written = 0
        self._ring = ibuf
        self._t_first = None  # type: int | None
        self._t_last = 0
        self.volume = 70
        self._shift = volume_shift(70)  # type: int | None

    def open(self, rate, bits, channels, label=""):
        if bits not in (16, 32) or channels not in (1, 2) or rate <= 0:
            raise OSError("I2S takes 16 or 32-bit mono or stereo PCM, not %d-bit %d ch at %d Hz"
                          % (bits, channels, rate))
        self.close()
        m = self._m
        p = self._pins
        if self._trace:
            self._trace("audio", label)
        frame = bits // 8 * channels
        # The ring holds RING_MS of this stream (at most ibuf bytes): a close() without drain
        # (a relay's slot ends) drops at most that much, whatever the rate.
        ring = int(rate * frame * RING_MS / 1000)
        ring = ring if ring < self._ibuf else self._ibuf
        ring = ring - ring % frame if ring > 512 else 512  # tiny test formats: 512 bytes
        self._ring = ring
        self._i2s = i2s = m.I2S(self._id, sck=m.Pin(p["i2s_sck"]), ws=m.Pin(p["i2s_ws"]),
                                sd=m.Pin(p["i2s_sd"]), mode=m.I2S.TX, bits=bits,
                                format=m.I2S.MONO if channels == 1 else m.I2S.STEREO,
                                rate=rate, ibuf=ring)
        self._w = asyncio.StreamWriter(i2s, {})  # type: ignore[call-arg,arg-type]
        self._bits = bits
        self._frame = bits // 8 * channels
        self._bpms = rate * self._frame / 1000
        self._written = 0
        self._t_first = None

    async def write(self, buf):
        w = self._w
        if w is None:
            raise OSError("audio output is not open")
        if self._t_first is None:
            self._t_first = self.clock.ticks_ms()
        mv = self._mv
        size = len(self._buf)
        size -= size % self._frame
        n = len(buf)
        i = 0
        while i < n:
            k = n - i if n - i < size else size
            piece = mv[:k]
            if self._shift is None:
                for j in range(k):
                    self._buf[j] = 0
            else:
                piece[:] = buf if k == n else memoryview(buf)[i:i + k]  # no copy of buf
                if self._shift:
                    self._m.I2S.shift(buf=piece, bits=self._bits, shift=self._shift)
            w.write(piece)
            await w.drain()  # returns once the DMA ring has room for what is left
            i += k
        self._written += n
        self._t_last = self.clock.ticks_ms()

    async def drain(self):
        """Wait until what was written has left the DMA ring (been heard)."""
        if self._t_first is None:
            return
        ring_ms = int(self._ring / self._bpms) + 1
        due = self._t_first + int(self._written / self._bpms)  # if it never underran
        now = self.clock.ticks_ms()
        left = due - now
        if left > ring_ms:
            left = ring_ms
        if self._t_last + ring_ms - now < left:
            left = self._t_last + ring_ms - now  # underruns: the ring held at most ibuf
        if left > 0:
            await self.clock.sleep_ms(left)

    def close(self):
        i2s, self._i2s, self._w = self._i2s, None, None
        if i2s is not None:
            i2s.deinit()  # type: ignore[attr-defined]
            gc.collect()  # the ring goes back to the heap at once, in one piece

    def set_volume(self, level):
        self.volume = level
        self._shift = volume_shift(level)
        if self._trace:
            self._trace("volume", level)

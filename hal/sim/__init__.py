# Simulated hardware for hw-sim: runs under MicroPython (unix port) and CPython.
# Everything observable (audio received, amplifier switching) is written to files in the
# node's directory so tests can check what actually played, and when.
import asyncio
import json
import os
import time

from hal import base


def _sleep_ms(ms):
    if hasattr(asyncio, "sleep_ms"):
        return asyncio.sleep_ms(ms)  # type: ignore[attr-defined]
    return asyncio.sleep(ms / 1000)


def _makedirs(path):
    parts = path.split("/")
    cur = ""
    for p in parts:
        if not p:
            cur = "/" if not cur else cur
            continue
        cur = cur + p if cur.endswith("/") or not cur else cur + "/" + p
        try:
            os.mkdir(cur)
        except OSError:
            pass


def _real_ms():
    if hasattr(time, "time_ns"):
        return time.time_ns() // 1000000
    return int(time.time() * 1000)


class SimClock(base.Clock):
    """A controlled clock: simulated time runs `rate` times as fast as real time from
    sim_epoch_ms (at real_epoch_ms), shifted by offset_ms (a node whose clock is off).

    time_ms = sim_epoch + (real_now - real_epoch) * rate + offset. Both epochs default to real
    now, so SimClock() is real time. Several processes given the same epochs share one
    simulated time. sleep_ms(ms) sleeps ms simulated (ms / rate real)."""

    def __init__(self, offset_ms=0, rate=1, sim_epoch_ms=None, real_epoch_ms=None):
        now = _real_ms()
        self.offset_ms = offset_ms
        self.rate = rate
        self.real_epoch_ms = now if real_epoch_ms is None else real_epoch_ms
        self.sim_epoch_ms = self.real_epoch_ms if sim_epoch_ms is None else sim_epoch_ms
        self._t0 = self.time_ms()

    def time_ms(self):
        if self.rate == 1:
            return self.sim_epoch_ms + _real_ms() - self.real_epoch_ms + self.offset_ms
        return (self.sim_epoch_ms + int((_real_ms() - self.real_epoch_ms) * self.rate)
                + self.offset_ms)

    def ticks_ms(self):
        """Simulated milliseconds since construction (not wrapped: subtract to compare)."""
        return self.time_ms() - self._t0

    def sleep_ms(self, ms):
        if self.rate == 1:
            return _sleep_ms(ms)
        if ms <= 0:
            return _sleep_ms(0)
        return asyncio.sleep(ms / self.rate / 1000)


class EventLog:
    """Append-only JSON lines file: the simulator's record of what the hardware did."""

    def __init__(self, path, clock):
        self.path = path
        self.clock = clock

    def add(self, event, **fields):
        fields["event"] = event
        fields["at"] = self.clock.time_ms()
        with open(self.path, "a") as f:
            f.write(json.dumps(fields) + "\n")


class SimAudioOut(base.AudioOut):
    """Records each playback's PCM to audio/<n>.pcm and paces writes at the playback rate in
    SIMULATED time (the board clock), so a fast clock plays a long bulletin in little real time.
    Any rate/bits/channels is accepted (tests use tiny formats to keep a simulated week small)."""

    def __init__(self, node_dir, clock, log):
        self.dir = node_dir + "/audio"
        _makedirs(self.dir)
        self.clock = clock
        self.log = log
        self.volume = 70
        self._f = None
        # Continue the numbering after a (simulated) reboot: earlier recordings stay as they were.
        self._n = len([n for n in os.listdir(self.dir) if n.endswith(".pcm")])
        self._bytes_per_ms = 32.0
        self._t0 = clock.time_ms()
        self._written = 0

    def open(self, rate, bits, channels, label=""):
        if self._f:
            self.close()
        self._n += 1
        name = "%s/%d.pcm" % (self.dir, self._n)
        self._f = open(name, "wb")
        self._bytes_per_ms = rate * ((bits + 7) // 8) * channels / 1000
        self._t0 = self.clock.time_ms()
        self._written = 0
        self.log.add("audio_open", file=name, rate=rate, bits=bits, channels=channels,
                     volume=self.volume, label=label)

    async def write(self, buf):
        if self._f is None:
            raise OSError("audio output is not open")
        self._f.write(buf)
        self._written += len(buf)
        # Pace like a DAC would: return when the written audio is (almost) due.
        due = int(self._written / self._bytes_per_ms) - 100
        ahead = due - (self.clock.time_ms() - self._t0)
        if ahead > 0:
            await self.clock.sleep_ms(ahead)

    def close(self):
        if not self._f:
            return
        self._f.close()
        self._f = None
        self.log.add("audio_close", bytes=self._written)

    async def drain(self):
        left = int(self._written / self._bytes_per_ms) - (self.clock.time_ms() - self._t0)
        if left > 0:
            await self.clock.sleep_ms(left)

    def set_volume(self, level):
        self.volume = level
        self.log.add("volume", level=level)


class SimAmplifier(base.Amplifier):
    """The relay and its current sensor. With `broken` set the amplifier draws nothing while
    on (a blown fuse, a dead amplifier): the node reports amp_fault."""

    ON_MA = 850  # what a healthy amplifier draws while on

    def __init__(self, log):
        self.log = log
        self._on = False
        self.broken = False

    def on(self):
        if not self._on:
            self._on = True
            self.log.add("amp_on")

    def off(self):
        if self._on:
            self._on = False
            self.log.add("amp_off")

    def is_on(self):
        return self._on

    def current_ma(self):
        return self.ON_MA if self._on and not self.broken else 0


class SimLed(base.StatusLed):
    def __init__(self):
        self.pattern = "off"

    def set(self, pattern):
        self.pattern = pattern


class SimStorage(base.Storage):
    """Flash as a directory; write() goes through a temp file and rename, as on littlefs."""

    def __init__(self, node_dir):
        self.dir = node_dir + "/flash"
        _makedirs(self.dir)

    def read(self, name):
        try:
            with open(self.dir + "/" + name, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, data):
        path = self.dir + "/" + name
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)

    def remove(self, name):
        try:
            os.remove(self.dir + "/" + name)
        except OSError:
            pass

    def open(self, name, mode):
        return open(self.dir + "/" + name, mode)

    def size(self, name):
        try:
            return os.stat(self.dir + "/" + name)[6]
        except OSError:
            return None

    def rename(self, old, new):
        os.rename(self.dir + "/" + old, self.dir + "/" + new)

    def names(self):
        return [n for n in os.listdir(self.dir) if not n.startswith(".")]

    def counter(self, name):
        return SlotCounter(self.dir + "/" + name)


class SlotCounter:
    """A counter updated in place in one of two checksummed slots, chosen by parity.

    A torn write can only damage the slot being written; the other slot still holds the
    previous value. Reading takes the highest valid slot. An open file and one small write
    per update: the simulator hosts hundreds of nodes, and flash prefers few small writes."""

    SLOT = 32

    def __init__(self, path):
        try:
            self._f = open(path, "r+b")
        except OSError:
            self._f = open(path, "w+b")
        self.value = 0
        data = self._f.read(2 * self.SLOT)
        for i in (0, 1):
            v = self._parse(data[i * self.SLOT:(i + 1) * self.SLOT])
            if v is not None and v > self.value:
                self.value = v

    @staticmethod
    def _check(value):
        return (value * 2654435761 + 0x5BD1E995) & 0xFFFFFFFF

    def _parse(self, slot):
        try:
            v, c = slot.split()
            v = int(v)
            return v if int(c, 16) == self._check(v) else None
        except (ValueError, TypeError):
            return None

    def set(self, value):
        self._f.seek((value & 1) * self.SLOT)
        rec = b"%020d %08x" % (value, self._check(value))
        self._f.write(rec + b" " * (self.SLOT - 1 - len(rec)) + b"\n")
        self._f.flush()
        self.value = value


class SimLink(base.Link):
    """A link the simulator can cut: dropping it aborts open sockets through on_down callbacks."""

    kind = "sim"

    def __init__(self, up=True, dbm=-71):
        self._up = up
        self._event = asyncio.Event()
        if up:
            self._event.set()
        self._callbacks = []
        self.dbm = dbm

    async def up(self):
        while not self._up:
            self._event.clear()
            await self._event.wait()

    def is_up(self):
        return self._up

    def signal_dbm(self):
        return self.dbm if self._up else None

    def on_down(self, callback):
        self._callbacks.append(callback)

    def set_up(self, up):
        if up == self._up:
            return
        self._up = up
        if up:
            self._event.set()
        else:
            for cb in self._callbacks:
                try:
                    cb()
                except Exception:  # a failing callback must not keep the link "up"
                    pass


class SimBoard(base.Board):
    name = "sim"

    def __init__(self, node_dir, clock=None, link=None):
        _makedirs(node_dir)
        self.dir = node_dir
        self.clock = clock or SimClock()
        self.events = EventLog(node_dir + "/events.jsonl", self.clock)
        self.audio = SimAudioOut(node_dir, self.clock, self.events)
        self.sim_amp = SimAmplifier(self.events)
        self.amp = self.sim_amp
        self.led = SimLed()
        self.storage = SimStorage(node_dir)
        self.link = link or SimLink()
        self.reboots = 0
        self.temp_c = 38
        # Set by a simulator host that can restart the node in place (hw-sim/simnode.py)
        self.on_reboot = None

    def heap_free(self):
        try:
            import gc
            return gc.mem_free()  # type: ignore[attr-defined]
        except (ImportError, AttributeError):
            return None

    def temperature_c(self):
        return self.temp_c

    # Faults a test or the simulator's control port sets on a running node.
    def set_fault(self, amp_fault=None, signal_dbm=None, temp_c=None, clock_offset_ms=None,
                  log=True):
        """Change what the hardware senses; None leaves a value as it is."""
        if amp_fault is not None:
            self.sim_amp.broken = bool(amp_fault)
        if signal_dbm is not None:
            self.link.dbm = signal_dbm  # type: ignore[attr-defined]
        if temp_c is not None:
            self.temp_c = temp_c
        if clock_offset_ms is not None:
            self.clock.offset_ms = clock_offset_ms  # type: ignore[attr-defined]
        if log:
            self.events.add("fault", amp_fault=self.sim_amp.broken, temp_c=self.temp_c,
                            signal_dbm=self.link.signal_dbm(),
                            clock_offset_ms=getattr(self.clock, "offset_ms", 0))

    def faults(self):
        """The fault settings (set_fault's arguments), to carry over to the board of a
        rebooted node."""
        return {"amp_fault": self.sim_amp.broken, "signal_dbm": getattr(self.link, "dbm", None),
                "temp_c": self.temp_c}

    def reboot(self):
        # A reset drops the relay; then the host (if any) starts the firmware again.
        self.sim_amp.off()
        self.reboots += 1
        self.events.add("reboot")
        if self.on_reboot is not None:
            self.on_reboot()

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
    simulated time. sleep_ms(ms) sleeps ms simulated (ms / rate real).

    warp: [[sim_from_ms, sim_to_ms, rate], ...], stretches of simulated time that run at another
    rate: a simulated week runs its nights and idle hours fast and its broadcasts at `rate`."""

    def __init__(self, offset_ms=0, rate=1, sim_epoch_ms=None, real_epoch_ms=None, warp=None):
        now = _real_ms()
        self.offset_ms = offset_ms
        self.rate = rate
        self.real_epoch_ms = now if real_epoch_ms is None else real_epoch_ms
        self.sim_epoch_ms = self.real_epoch_ms if sim_epoch_ms is None else sim_epoch_ms
        self.warp = [list(w) for w in warp] if warp else []
        # (sim_start, real_start, rate) of each stretch, in order; real_start from the rates
        segs = [(self.sim_epoch_ms, self.real_epoch_ms, rate)]
        for a, b, r in sorted(self.warp, key=lambda w: w[0]):
            for sim, r2 in ((a, r), (b, rate)):
                s0, t0, r0 = segs[-1]
                if sim > s0:
                    segs.append((sim, t0 + (sim - s0) / r0, r2))
                elif sim == s0:
                    segs[-1] = (s0, t0, r2)
        self._segs = segs
        self._t0 = self.time_ms()

    def config(self):
        """What another process needs to share this clock (hw-sim node configs)."""
        cfg = {"sim_epoch_ms": self.sim_epoch_ms, "real_epoch_ms": self.real_epoch_ms,
               "rate": self.rate}
        if self.warp:
            cfg["warp"] = self.warp
        return cfg

    def _seg_at_real(self, real):
        segs = self._segs
        i = len(segs) - 1
        while i > 0 and segs[i][1] > real:
            i -= 1
        return segs[i]

    def time_ms(self):
        if not self.warp:
            if self.rate == 1:
                return self.sim_epoch_ms + _real_ms() - self.real_epoch_ms + self.offset_ms
            return (self.sim_epoch_ms + int((_real_ms() - self.real_epoch_ms) * self.rate)
                    + self.offset_ms)
        real = _real_ms()
        s0, t0, r = self._seg_at_real(real)
        return s0 + int((real - t0) * r) + self.offset_ms

    def real_ms_at(self, sim_ms):
        """The real time (ms since the epoch) at which this clock reads sim_ms."""
        sim_ms -= self.offset_ms
        segs = self._segs
        i = len(segs) - 1
        while i > 0 and segs[i][0] > sim_ms:
            i -= 1
        s0, t0, r = segs[i]
        return t0 + (sim_ms - s0) / r

    def ticks_ms(self):
        """Simulated milliseconds since construction (not wrapped: subtract to compare)."""
        return self.time_ms() - self._t0

    def sleep_ms(self, ms):
        if self.rate == 1 and not self.warp:
            return _sleep_ms(ms)
        if ms <= 0:
            return _sleep_ms(0)
        if not self.warp:
            return asyncio.sleep(ms / self.rate / 1000)
        real = self.real_ms_at(self.time_ms() + ms) - _real_ms()
        return asyncio.sleep(max(0, real) / 1000)


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

    def verifies(self):
        return True


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
    """A link the simulator can cut (set_up): dropping it aborts open sockets through the
    on_down callbacks."""

    kind = "sim"

    def __init__(self, up=True, dbm=-71):
        super().__init__(up)
        self.dbm = dbm

    def signal_dbm(self):
        return self.dbm if self._up else None


class SimWatchdog(base.Watchdog):
    """The hardware watchdog on real time (it is hardware: the simulator's fast clock does not
    speed it up). Not fed within timeout_ms, it resets the board (Board reboot with cause
    "watchdog"; hw-sim then restarts the node in place). A task checks it; a feed that comes
    too late (the event loop was blocked, so the task could not run either) bites instead, as
    the real one would have bitten during the block. A block that never ends hangs the
    simulator's process: unlike hardware it cannot pre-empt MicroPython."""

    def __init__(self, board):
        self.board = board
        self.timeout_ms = None
        self.fired = False
        self._last = 0
        self._task = None

    def start(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self._last = _real_ms()
        if self._task is None:
            self._task = asyncio.create_task(self._watch())

    def feed(self):
        if not self._bites():
            self._last = _real_ms()

    def _bites(self):
        if self.fired or self.board.off:
            return True
        if self.timeout_ms is None:
            return False
        late = _real_ms() - self._last
        if late <= self.timeout_ms:
            return False
        self.fired = True
        self.board.events.add("watchdog", silent_ms=late)
        self.board.reset("watchdog")
        return True

    async def _watch(self):
        while not self._bites():
            await _sleep_ms(max(5, (self.timeout_ms or 1000) // 8))

    def stop(self):
        """The board is off (the simulator only; a real watchdog cannot be stopped)."""
        t = self._task
        self._task = None
        if t is not None:
            try:
                t.cancel()
            except RuntimeError:  # (cancelling the running task itself)
                pass


def _other(slot):
    return "b" if slot == "a" else "a"


class SimOta(base.Ota):
    """Two slots, <node>/ota/a.img and b.img, each beside its manifest (a.json). Which slot
    runs, which boots next and whether the running one is on trial are kept in the flash
    (otaboot.json), so a reboot in hw-sim (a new SimBoard on the same directory) boots the new
    image on trial or, reset again before confirm(), goes back to the old one, as an ESP32's
    bootloader does. Slot "a" starts as the factory image: no manifest, the firmware's own
    version. The simulator keeps running the same code: the slot's manifest gives the version."""

    def __init__(self, node_dir, flash_dir, log):
        self.dir = node_dir + "/ota"
        _makedirs(self.dir)
        self._path = flash_dir + "/otaboot.json"
        self.log = log
        self._f = None
        self._target = None
        self._size = 0
        self._n = 0
        st = {"run": "a", "boot": "a", "trial": False}
        try:
            with open(self._path) as f:
                st = json.load(f)
        except (OSError, ValueError):
            pass
        self.state = st  # type: dict
        if st["boot"] != st["run"]:  # finish() switched the next boot: boot it, on trial
            self._save({"run": st["boot"], "boot": st["boot"], "trial": True})
            log.add("ota_boot", slot=st["boot"], version=self.version())
        elif st["trial"]:  # reset on trial before confirm(): back to the previous image
            failed = self.version()
            back = _other(st["run"])
            self._save({"run": back, "boot": back, "trial": False})
            log.add("ota_rollback", slot=back, failed=failed, version=self.version())

    def _save(self, st):
        with open(self._path + ".tmp", "w") as f:
            f.write(json.dumps(st))
        os.rename(self._path + ".tmp", self._path)
        self.state = st

    def _manifest(self, slot):
        try:
            with open("%s/%s.json" % (self.dir, slot)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def running(self):
        return "slot-%s" % self.state["run"]

    def version(self):
        m = self._manifest(self.state["run"])
        return m.get("version") if m else None

    def begin(self, size):
        self._target = _other(self.state["run"])
        if self._f is not None:
            self._f.close()
        try:
            os.remove("%s/%s.json" % (self.dir, self._target))
        except OSError:
            pass
        if self.state["boot"] != self.state["run"]:  # an earlier staged image is overwritten
            self._save({"run": self.state["run"], "boot": self.state["run"],
                        "trial": self.state["trial"]})
        self._f = open("%s/%s.img" % (self.dir, self._target), "wb")
        self._size = size
        self._n = 0

    def write(self, data):
        if self._f is None:
            raise OSError("ota: begin() first")
        self._f.write(data)
        self._n += len(data)

    def describe(self, manifest):
        with open("%s/%s.json" % (self.dir, self._target), "w") as f:
            f.write(json.dumps(manifest))

    def finish(self):
        if self._f is None:
            raise OSError("ota: begin() first")
        self._f.close()
        self._f = None
        if self._n != self._size:
            raise OSError("ota: %d bytes written, %d expected" % (self._n, self._size))
        self._save({"run": self.state["run"], "boot": self._target,
                    "trial": self.state["trial"]})
        m = self._manifest(self._target)
        self.log.add("ota_staged", slot=self._target, version=m.get("version") if m else None)

    def on_trial(self):
        return bool(self.state["trial"])

    def confirm(self):
        if self.state["trial"]:
            self._save({"run": self.state["run"], "boot": self.state["boot"], "trial": False})
            self.log.add("ota_confirm", slot=self.state["run"], version=self.version())


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
        self.off = False  # reset: this board object is gone (its node is restarted anew)
        # Why it started: written by the reset that ended the previous board on this dir
        self._cause_path = node_dir + "/reset_cause"
        self._cause = "power"
        try:
            with open(self._cause_path) as f:
                self._cause = f.read().strip() or "power"
            os.remove(self._cause_path)
        except OSError:
            pass
        self.sim_watchdog = SimWatchdog(self)
        self.watchdog = self.sim_watchdog
        self.ota = SimOta(node_dir, self.storage.dir, self.events)
        self.test_button = None  # the callback the firmware registered

    def on_test_button(self, callback):
        self.test_button = callback

    def press_test_button(self):
        """A technician presses the local test button."""
        self.events.add("test_button")
        if self.test_button is not None:
            self.test_button()

    def reset_cause(self):
        return self._cause

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
        self.reset("soft")

    def reset(self, cause):
        """A reset: the relay drops, the watchdog stops with the board, the next board on this
        directory learns the cause; then the host (if any) starts the firmware again."""
        if self.off:
            return
        self.off = True
        with open(self._cause_path, "w") as f:
            f.write(cause)
        self.sim_watchdog.stop()
        self.sim_amp.off()
        self.reboots += 1
        self.events.add("reboot", cause=cause)
        if self.on_reboot is not None:
            self.on_reboot()

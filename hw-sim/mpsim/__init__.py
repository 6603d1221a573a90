# hw-sim/mpsim: stand-ins for MicroPython's ESP32 modules (machine, network, esp32, ntptime),
# one set per simulated node, for hal/esp32 under the MicroPython unix port (which has no
# machine.I2S, network.WLAN or esp32.Partition). hw-sim/simnode.py makes a Node(...) for each
# node with profile "esp32" and hands it to hal.esp32.Esp32Board as its `hw`; nothing here is
# installed under the real module names, so nothing real is shadowed.
#
# What the hardware did goes to the node's directory exactly as hal/sim records it: the PCM
# that reached the I2S DAC in audio/N.pcm (one file per I2S set-up), and events.jsonl with
# audio_open/audio_close (from I2S init/deinit), amp_on/amp_off (from the relay pin), volume,
# wlan_connect, ntp, wdt_reset, reset, ota_rollback. So hwsim.fleet.Fleet.recordings() reads
# an esp32 node like any other.
# ruff: noqa: UP031, SIM115  (MicroPython: %-formatting, files held open by the hardware)
import io
import json
import os
import time

from hal.sim import EventLog, _makedirs

# machine.reset_cause() values (as on the ESP32 port)
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

MP_STREAM_POLL = 3
POLL_WR = 4
AMP_ON_MA = 850


def _ticks():
    return time.ticks_ms()  # type: ignore[attr-defined]


def _since(t):
    return time.ticks_diff(time.ticks_ms(), t)  # type: ignore[attr-defined]


class Node:
    """One simulated ESP32: its pins, DAC, radio, flash partitions and reset line. The host
    (simnode) sets the link (set_link) and faults (set_fault), and restarts the firmware when
    the board resets (on_reset(cause))."""

    def __init__(self, node_dir, clock, config, cause=PWRON_RESET, on_reset=None):
        _makedirs(node_dir)
        self.dir = node_dir
        self.clock = clock
        self.log = EventLog(node_dir + "/events.jsonl", clock)
        pins = config.get("pins") or {}
        self.amp_pin = pins.get("amp_relay", 32)
        self.amp_low = bool(config.get("amp_active_low", False))
        self.link_up = config.get("link_up", True)
        self.dbm = -67
        self.temp_c = 41
        self.amp_broken = False
        self.amp_on = False
        self.wdt_hold = False  # a hung firmware: feeds stop reaching the watchdog
        self.cause = cause
        self.on_reset = on_reset
        self.dead = False  # reset: this incarnation's hardware no longer answers
        self.label = ""
        self.volume = 70
        self.pin_values = {}  # type: dict
        self.wlan_connects = 0
        self.audio_dir = node_dir + "/audio"
        _makedirs(self.audio_dir)
        self.audio_n = len([n for n in os.listdir(self.audio_dir) if n.endswith(".pcm")])
        self.wdt = None  # type: object | None
        self.machine = Machine(self)
        self.network = Network(self)
        self.esp32 = Esp32(self)
        self.ntptime = NtpTime(self)

    # --- the host's controls

    def trace(self, kind, value):
        """hal.esp32's diagnostics hook: the label of the next I2S set-up, volume changes."""
        if kind == "audio":
            self.label = value
        elif kind == "volume":
            self.volume = value
            self.log.add("volume", level=value)

    def set_link(self, up):
        self.link_up = up

    def set_fault(self, amp_fault=None, signal_dbm=None, temp_c=None, clock_offset_ms=None,
                  wdt_hold=None, log=True):
        if amp_fault is not None:
            self.amp_broken = bool(amp_fault)
        if signal_dbm is not None:
            self.dbm = signal_dbm
        if temp_c is not None:
            self.temp_c = temp_c
        if clock_offset_ms is not None:
            self.clock.offset_ms = clock_offset_ms
        if wdt_hold is not None:
            self.wdt_hold = bool(wdt_hold)
        if log:
            self.log.add("fault", amp_fault=self.amp_broken, temp_c=self.temp_c,
                         signal_dbm=self.dbm, clock_offset_ms=self.clock.offset_ms,
                         wdt_hold=self.wdt_hold)

    def faults(self):
        return {"amp_fault": self.amp_broken, "signal_dbm": self.dbm, "temp_c": self.temp_c}

    def reset(self, cause):
        """The reset line: relay and DAC drop, the host boots the firmware again."""
        if self.dead:
            return
        self.dead = True
        if self.amp_on:
            self.amp_on = False
            self.log.add("amp_off")
        self.log.add("wdt_reset" if cause == WDT_RESET else "reset", cause=cause)
        if self.on_reset is not None:
            self.on_reset(cause)

    def pin_set(self, pin, v):
        self.pin_values[pin] = v
        if pin == self.amp_pin:
            on = (v == 0) if self.amp_low else (v == 1)
            if on != self.amp_on:
                self.amp_on = on
                self.log.add("amp_on" if on else "amp_off")


# --- machine -------------------------------------------------------------------------

class _Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2
    node = None  # type: Node | None

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self._handler = None
        if value is not None:
            self.value(value)

    def value(self, v=None):
        node = self.node
        if v is None:
            return node.pin_values.get(self.id, 1 if self.mode == self.IN else 0)
        if not node.dead:
            node.pin_set(self.id, 1 if v else 0)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3):
        self._handler = handler


class _I2S(io.IOBase):  # IOBase: asyncio polls it through ioctl
    """TX only. Records what the DAC receives and takes bytes at the playback rate on the
    node's (simulated) clock: write() accepts what fits in the ibuf ring and returns how
    much (asyncio stream mode); poll says writable when there is room."""

    TX = 2
    RX = 1
    MONO = 0
    STEREO = 1
    node = None  # type: Node | None

    def __init__(self, id, sck=None, ws=None, sd=None, mode=2, bits=16, format=0, rate=16000,
                 ibuf=6144):
        node = self.node
        if bits not in (16, 24, 32) or mode != self.TX:
            raise ValueError("invalid bits or mode")
        self.bits = bits
        self.rate = rate
        self.channels = 1 if format == self.MONO else 2
        self.frame = bits // 8 * self.channels
        self.ibuf = ibuf
        self.bpms = rate * self.frame / 1000
        node.audio_n += 1
        self.path = "%s/%d.pcm" % (node.audio_dir, node.audio_n)
        self._f = open(self.path, "wb")
        self.written = 0
        self.underrun_ms = 0
        self._t0 = None
        node.log.add("audio_open", file=self.path, rate=rate, bits=bits, channels=self.channels,
                     volume=node.volume, label=node.label, ibuf=ibuf)

    def _queued(self):
        """Bytes in the ring not yet played (an empty ring idles: underrun counted)."""
        if self._t0 is None:
            return 0
        played_ms = self.node.clock.time_ms() - self._t0
        due_ms = self.written / self.bpms
        if played_ms > due_ms:
            gap = int(played_ms - due_ms)
            if gap > 0:
                self.underrun_ms += gap
                self._t0 += gap
            return 0
        return int((due_ms - played_ms) * self.bpms)

    def write(self, buf):
        node = self.node
        if self._f is None or node.dead:
            raise OSError(5)  # EIO
        room = self.ibuf - self._queued()
        n = min(len(buf), room)
        n -= n % self.frame
        if n <= 0:
            return None
        self._f.write(buf[:n] if n < len(buf) else buf)
        if self._t0 is None:
            self._t0 = node.clock.time_ms()
        self.written += n
        return n

    def ioctl(self, req, arg):
        if req != MP_STREAM_POLL:
            return 0
        if self._f is None or (arg & POLL_WR and self.ibuf - self._queued() >= self.frame):
            return arg & POLL_WR
        time.sleep_ms(1)  # type: ignore[attr-defined]  # not a busy loop on the host
        return 0

    def deinit(self):
        if self._f is None:
            return
        self._queued()
        self._f.close()
        self._f = None
        self.node.log.add("audio_close", bytes=self.written, underrun_ms=self.underrun_ms)

    @staticmethod
    def shift(buf=None, bits=16, shift=0):
        """Samples shifted in place (arithmetic, like the C one): shift < 0 attenuates."""
        if bits != 16 or not shift:
            return
        n = len(buf) // 2
        for i in range(n):
            j = 2 * i
            v = buf[j] | (buf[j + 1] << 8)
            if v & 0x8000:
                v -= 0x10000
            v = v >> -shift if shift < 0 else v << shift
            v &= 0xFFFF
            buf[j] = v & 0xFF
            buf[j + 1] = v >> 8


class _ADC:
    ATTN_0DB = 0
    ATTN_11DB = 3
    node = None  # type: Node | None

    def __init__(self, pin, atten=None):
        self.pin = pin

    def atten(self, a):
        pass

    def read_uv(self):
        node = self.node
        ma = AMP_ON_MA if node.amp_on and not node.amp_broken else 0
        return ma * 1000  # with hal.esp32's defaults (zero 0 mV, 1 mA per mV)

    def read_u16(self):
        return self.read_uv() * 65535 // 3100000


class _UART(io.IOBase):
    """A modem line with nothing on it (the 4G link is tested against the fake modem
    elsewhere): writes are dropped, reads never return."""

    node = None  # type: Node | None

    def __init__(self, id, baudrate=115200, tx=None, rx=None, rxbuf=256, **kw):
        self.id = id

    def write(self, data):
        return len(data)

    def read(self, n=-1):
        return None

    def readinto(self, buf, n=-1):
        return None

    def any(self):
        return 0

    def ioctl(self, req, arg):
        time.sleep_ms(1)  # type: ignore[attr-defined]
        return 0


class _WDT:
    """Started once; a feed missing for timeout ms (real time, as on the board) resets the
    node. Fed while the node's wdt_hold fault is set does nothing (a hung loop)."""

    node = None  # type: Node | None

    def __init__(self, id=0, timeout=5000):
        import asyncio

        self.timeout = timeout
        self._fed = _ticks()
        node = self.node
        node.wdt = self
        node.log.add("wdt_start", timeout_ms=timeout)
        self._task = asyncio.create_task(self._watch())

    def feed(self):
        if not self.node.wdt_hold:
            self._fed = _ticks()

    async def _watch(self):
        import asyncio

        node = self.node
        while not node.dead:
            await asyncio.sleep_ms(min(100, self.timeout // 4))  # type: ignore[attr-defined]
            if _since(self._fed) > self.timeout:
                node.reset(WDT_RESET)
                return


class Machine:
    """The `machine` module of one node."""

    PWRON_RESET = PWRON_RESET
    HARD_RESET = HARD_RESET
    WDT_RESET = WDT_RESET
    DEEPSLEEP_RESET = DEEPSLEEP_RESET
    SOFT_RESET = SOFT_RESET

    def __init__(self, node):
        self._node = node

        class Pin(_Pin):
            pass

        class I2S(_I2S):
            pass

        class ADC(_ADC):
            pass

        class UART(_UART):
            pass

        class WDT(_WDT):
            pass

        for cls in (Pin, I2S, ADC, UART, WDT):
            cls.node = node
        self.Pin = Pin
        self.I2S = I2S
        self.ADC = ADC
        self.UART = UART
        self.WDT = WDT

    def reset(self):
        self._node.reset(SOFT_RESET)

    def reset_cause(self):
        return self._node.cause

    def freq(self):
        return 240000000


# --- network -------------------------------------------------------------------------

class _Iface:
    """Connected while active, asked to connect, and the simulator's link is up. Dropping the
    link drops the association: the firmware must connect() again, as on a real radio."""

    node = None  # type: Node | None

    def __init__(self, *a, **kw):
        self._active = False
        self._want = False
        self._was_up = False

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if not on:
            self._want = False
        return None

    def connect(self, *a, **kw):
        node = self.node
        self._want = True
        node.wlan_connects += 1
        node.log.add("net_connect", iface=self.__class__.__name__, up=node.link_up)

    def disconnect(self):
        self._want = False

    def isconnected(self):
        node = self.node
        up = self._active and self._want and node.link_up and not node.dead
        if self._was_up and not node.link_up:
            self._want = False  # association lost: reconnect needed
            up = False
        self._was_up = up
        return up

    def status(self, what=None):
        if what == "rssi":
            return self.node.dbm
        return 1010 if self.isconnected() else 1001

    def ifconfig(self, *a):
        return ("10.0.0.2", "255.255.255.0", "10.0.0.1", "10.0.0.1")


class _LAN(_Iface):
    def __init__(self, *a, **kw):
        super().__init__()
        self._want = True  # a cable needs no connect()

    def active(self, on=None):
        if on:
            self._want = True
        return super().active(on)


class Network:
    """The `network` module of one node."""

    STA_IF = 0
    AP_IF = 1
    PHY_LAN8720 = 1
    PHY_IP101 = 2
    PHY_RTL8201 = 3

    def __init__(self, node):
        class WLAN(_Iface):
            IF_STA = 0
            IF_AP = 1

        class LAN(_LAN):
            pass

        class PPP(_Iface):
            pass

        for cls in (WLAN, LAN, PPP):
            cls.node = node
        self.WLAN = WLAN
        self.LAN = LAN
        self.PPP = PPP


# --- esp32 ---------------------------------------------------------------------------

class _Partition:
    """Two app partitions as files (ota/ota_0.bin, ota/ota_1.bin) and the OTA data as
    ota/state.json: running, boot, valid. At each boot of the simulated node (Esp32 below)
    a new boot partition starts unverified; an unverified one is rolled back."""

    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    BLOCK = 4096
    SIZE = 1536 * 1024
    esp = None  # type: Esp32 | None

    def __init__(self, which, label=None):
        esp = self.esp
        if label is not None:
            self.label = label
        elif which == self.RUNNING:
            self.label = esp.state["running"]
        else:
            self.label = esp.state["boot"]

    def info(self):
        return (self.TYPE_APP, 16, 0x10000, self.SIZE, self.label, False)

    def get_next_update(self):
        return self.__class__(None, "ota_1" if self.label == "ota_0" else "ota_0")

    def ioctl(self, op, arg=0):
        if op == 4:
            return self.SIZE // self.BLOCK
        if op == 5:
            return self.BLOCK
        return 0

    def _path(self):
        return "%s/%s.bin" % (self.esp.dir, self.label)

    def writeblocks(self, block, buf, offset=0):
        path = self._path()
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        f.seek(block * self.BLOCK + offset)
        f.write(buf)
        f.close()

    def readblocks(self, block, buf, offset=0):
        try:
            with open(self._path(), "rb") as f:
                f.seek(block * self.BLOCK + offset)
                f.readinto(buf)
        except OSError:
            for i in range(len(buf)):
                buf[i] = 0xFF

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        esp = cls.esp
        if not esp.state["valid"]:
            esp.state["valid"] = True
            esp.save()
            esp.node.log.add("ota_valid", label=esp.state["running"])

    def set_boot(self):
        esp = self.esp
        esp.state["boot"] = self.label
        esp.save()
        esp.node.log.add("ota_set_boot", label=self.label)


class Esp32:
    """The `esp32` module of one node."""

    def __init__(self, node):
        self.node = node
        self.dir = node.dir + "/ota"
        _makedirs(self.dir)
        self.state = {"running": "ota_0", "boot": "ota_0", "valid": True, "previous": None}
        try:
            with open(self.dir + "/state.json") as f:
                self.state = json.load(f)
        except (OSError, ValueError):
            pass
        self._boot()

        class Partition(_Partition):
            pass

        Partition.esp = self
        self.Partition = Partition

    def _boot(self):
        """What the bootloader does at reset (with app rollback enabled)."""
        st = self.state
        if st["boot"] != st["running"]:
            st["previous"], st["running"], st["valid"] = st["running"], st["boot"], False
            self.node.log.add("ota_boot", label=st["running"], trial=True)
        elif not st["valid"] and st.get("previous"):
            st["running"] = st["boot"] = st["previous"]
            st["valid"] = True
            self.node.log.add("ota_rollback", label=st["running"])
        self.save()

    def save(self):
        with open(self.dir + "/state.json.tmp", "w") as f:
            f.write(json.dumps(self.state))
        os.rename(self.dir + "/state.json.tmp", self.dir + "/state.json")

    def mcu_temperature(self):
        return self.node.temp_c


class NtpTime:
    """`ntptime`: settime() puts the node's clock right (its offset to 0) when it has IP."""

    host = "pool.ntp.org"

    def __init__(self, node):
        self.node = node

    def settime(self):
        node = self.node
        if not node.link_up or node.dead:
            raise OSError(110)  # ETIMEDOUT
        off = node.clock.offset_ms
        node.clock.offset_ms = 0
        node.log.add("ntp", corrected_ms=-off)

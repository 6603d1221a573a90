# The node's hardware on an ESP32-WROVER under MicroPython: I2S DAC/amplifier (MAX98357A or
# PCM5102), amplifier relay and status LED on pins, optional amplifier current sense and fault
# pin, the hardware watchdog, WiFi / Ethernet (LAN8720) / 4G PPP links, NTP time, littlefs
# storage and OTA through esp32.Partition.
# The MicroPython modules it drives (machine, network, esp32, ntptime) come in one Hardware
# object: the real modules on the board; hw-sim (hw-sim/mpsim) hands each simulated node its
# own stand-ins with the same names, so this file is the code that runs on the board.
# ruff: noqa: UP031, SIM105, RUF006, RUF012  (MicroPython: %-formatting, no contextlib)
import asyncio
import gc
import os
import time

from hal import base
from hal.esp32.const import DEFAULT_PINS, I2S_IBUF, PIN_NAMES, VOLUME_BUF

NTP_EVERY_MS = 4 * 3600 * 1000  # real ms between NTP corrections while the link is up
LINK_POLL_MS = 500  # real ms: how often the link's state is looked at (no event to wait for)
LINK_RETRY_MS = 5000  # real ms between attempts to bring a link up
RING_MS = 200  # audio queued in the I2S ring at most
AMP_SETTLE_MS = 200  # after the relay closes, the current reading is not trusted this long
EPOCH_2000_MS = 946684800000  # ports whose time() counts from 2000-01-01


def _sleep_ms(ms):
    return asyncio.sleep_ms(ms)  # type: ignore[attr-defined]


def _ticks():
    return int(time.ticks_ms())  # type: ignore[attr-defined,call-overload]


def _since(t):
    """ms from ticks t until now (wrap-safe)."""
    return time.ticks_diff(time.ticks_ms(), t)  # type: ignore[attr-defined,arg-type]


class Hardware:
    """The MicroPython hardware modules the board drives (the real ones)."""

    def __init__(self):
        import esp32
        import machine
        import network
        import ntptime

        self.machine = machine
        self.network = network
        self.esp32 = esp32
        self.ntptime = ntptime


def pins_from(config):
    """The pin map: DEFAULT_PINS overridden by config["pins"]; a pin set to None is absent."""
    pins = dict(DEFAULT_PINS)
    pins.update(config.get("pins") or {})
    for k in pins:
        if k not in PIN_NAMES:
            raise ValueError("unknown pin name %s" % k)
    return pins


class Esp32Clock(base.Clock):
    """UTC from the RTC (set by NTP); ticks_ms never wraps (time.ticks_ms does, every ~12 days
    on the ESP32), so the firmware may subtract two readings."""

    def __init__(self):
        self._epoch = EPOCH_2000_MS if time.gmtime(0)[0] == 2000 else 0
        self._last = _ticks()
        self._acc = 0

    def time_ms(self):
        return time.time_ns() // 1000000 + self._epoch

    def ticks_ms(self):
        self._acc += _since(self._last)
        self._last = _ticks()
        return self._acc

    def sleep_ms(self, ms):
        return _sleep_ms(ms if ms > 0 else 0)


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


class PinAmplifier(base.Amplifier):
    """The relay on a pin (active high unless config "amp_active_low"), an optional ADC on
    the current sense (ACS712 or a shunt amplifier: mA = (mV - zero_mv) * ma_per_mv) and an
    optional fault pin (active low, the amplifier's protection output)."""

    def __init__(self, hw, pins, config):
        m = hw.machine
        self._low = bool(config.get("amp_active_low", False))
        self._relay = m.Pin(pins["amp_relay"], m.Pin.OUT, value=1 if self._low else 0)
        self._on = False
        self._since = 0
        self._adc = None
        if pins.get("amp_sense") is not None:
            self._adc = m.ADC(m.Pin(pins["amp_sense"]))
            self._adc.atten(m.ADC.ATTN_11DB)
        self._zero_mv = config.get("amp_zero_mv", 0)
        self._ma_per_mv = config.get("amp_ma_per_mv", 1.0)
        self._fault = None
        if pins.get("amp_fault") is not None:
            self._fault = m.Pin(pins["amp_fault"], m.Pin.IN, m.Pin.PULL_UP)

    def on(self):
        if not self._on:
            self._relay.value(0 if self._low else 1)
            self._on = True
            self._since = _ticks()

    def off(self):
        if self._on:
            self._relay.value(1 if self._low else 0)
            self._on = False

    def is_on(self):
        return self._on

    def current_ma(self):
        if self._adc is None:
            return None
        if self._on and _since(self._since) < AMP_SETTLE_MS:
            return None
        mv = self._adc.read_uv() // 1000
        ma = int((mv - self._zero_mv) * self._ma_per_mv)
        return ma if ma > 0 else 0

    def fault(self):
        if self._fault is None:
            return None
        return self._fault.value() == 0


class PinLed(base.StatusLed):
    """A status LED: on when connected, slow blink while connecting, fast blink while playing."""

    PERIODS = {"off": 0, "on": 0, "blink": 500, "play": 150}

    def __init__(self, hw, pin):
        m = hw.machine
        self._pin = m.Pin(pin, m.Pin.OUT, value=0) if pin is not None else None
        self.pattern = "off"
        self._task = None

    def set(self, pattern):
        if pattern == self.pattern or self._pin is None:
            self.pattern = pattern
            return
        self.pattern = pattern
        if self._task is not None:
            self._task.cancel()
            self._task = None
        period = self.PERIODS.get(pattern, 0)
        if period:
            self._task = asyncio.create_task(self._blink(period))
        else:
            self._pin.value(1 if pattern == "on" else 0)

    async def _blink(self, period):
        pin = self._pin
        v = 0
        while pin is not None:
            v ^= 1
            pin.value(v)
            await _sleep_ms(period)


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


class _PolledLink(base.Link):
    """A link whose state is polled (MicroPython gives no event for a lost connection): a
    task keeps it up, reports a drop to the on_down callbacks and sets the clock by NTP."""

    kind = "unknown"

    def __init__(self, hw):
        self._hw = hw
        self._callbacks = []  # type: list
        self._up = False
        self._event = asyncio.Event()
        self._task = None  # type: object | None
        self._ntp_at = None  # type: int | None
        self._ntp_every = NTP_EVERY_MS
        self.ntp_ok = 0

    def _connected(self):
        raise NotImplementedError

    async def _connect(self):
        raise NotImplementedError

    def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._keep())

    async def up(self):
        self.start()
        while not self._up:
            self._event.clear()
            await self._event.wait()

    def is_up(self):
        return self._up

    def on_down(self, callback):
        self._callbacks.append(callback)

    def _set(self, up):
        if up == self._up:
            return
        self._up = up
        if up:
            self._event.set()
            self._ntp_at = None  # set the clock at once
        else:
            for cb in self._callbacks:
                try:
                    cb()
                except Exception:  # a failing callback must not keep the link "up"
                    pass

    def _ntp(self):
        if self._ntp_at is not None and _since(self._ntp_at) < self._ntp_every:
            return
        self._ntp_at = _ticks()
        self._ntp_every = NTP_EVERY_MS
        try:
            self._hw.ntptime.settime()
            self.ntp_ok += 1
        except (OSError, OverflowError, IndexError):
            self._ntp_every = 60000  # no answer: try again in a minute

    async def _keep(self):
        while True:
            if self._connected():
                self._set(True)
                self._ntp()
                await _sleep_ms(LINK_POLL_MS)
                continue
            self._set(False)
            try:
                await self._connect()
            except (OSError, RuntimeError) as e:
                print("link %s: %r" % (self.kind, e))
            if not self._connected():
                await _sleep_ms(LINK_RETRY_MS)


class WlanLink(_PolledLink):
    """WiFi station; reconnects on its own after a drop."""

    kind = "wifi"

    def __init__(self, hw, ssid, password):
        super().__init__(hw)
        self._wlan = hw.network.WLAN(hw.network.WLAN.IF_STA)
        self._ssid = ssid
        self._password = password

    def _connected(self):
        return self._wlan.isconnected()

    async def _connect(self):
        w = self._wlan
        w.active(True)
        try:
            w.disconnect()
        except OSError:
            pass
        w.connect(self._ssid, self._password)
        for _ in range(40):  # 20 s
            if w.isconnected():
                return
            await _sleep_ms(500)

    def signal_dbm(self):
        if not self._up:
            return None
        try:
            return self._wlan.status("rssi")
        except (OSError, ValueError):
            return None


class LanLink(_PolledLink):
    """Ethernet through an RMII PHY (LAN8720 by default)."""

    kind = "ethernet"

    def __init__(self, hw, pins, config):
        super().__init__(hw)
        net = hw.network
        m = hw.machine
        phy = getattr(net, "PHY_" + config.get("lan_phy", "LAN8720"))
        kw = {"mdc": m.Pin(pins["eth_mdc"]), "mdio": m.Pin(pins["eth_mdio"]), "phy_type": phy,
              "phy_addr": config.get("lan_phy_addr", 0)}
        if pins.get("eth_power") is not None:
            kw["power"] = m.Pin(pins["eth_power"])
        self._lan = net.LAN(**kw)

    def _connected(self):
        return self._lan.isconnected()

    async def _connect(self):
        self._lan.active(True)
        for _ in range(20):
            if self._lan.isconnected():
                return
            await _sleep_ms(500)


class UartPort:
    """The modem's UART in the shape firmware/modem.py wants: write(bytes), and `await read()`
    returning the bytes there are (at least one), through asyncio's stream polling."""

    def __init__(self, uart):
        self.uart = uart
        self._r = asyncio.StreamReader(uart)  # type: ignore[call-arg]

    def write(self, data):
        self.uart.write(data)

    async def read(self):
        while True:
            data = await self._r.read(256)
            if data:
                return data


class PppLink(_PolledLink):
    """4G through the modem: AT set-up and dial (firmware.modem), then network.PPP on the UART.
    info() is the modem's status for telemetry."""

    kind = "4g"

    def __init__(self, hw, pins, config):
        super().__init__(hw)
        from firmware.modem import Modem

        m = hw.machine
        self._uart = m.UART(config.get("modem_uart", 2), baudrate=config.get("modem_baud", 115200),
                            tx=pins["modem_tx"], rx=pins["modem_rx"], rxbuf=1024)
        self._power = None
        if pins.get("modem_power") is not None:
            self._power = m.Pin(pins["modem_power"], m.Pin.OUT, value=1)
        self.modem = Modem(UartPort(self._uart), apn=config.get("apn", "v-internet"),
                           pin=config.get("sim_pin"))
        self._ppp = None  # type: object | None

    def _connected(self):
        p = self._ppp
        return p is not None and p.isconnected()  # type: ignore[attr-defined]

    async def _connect(self):
        if self._ppp is not None:  # PPP dropped: hand the port back to AT commands
            try:
                self._ppp.active(False)  # type: ignore[attr-defined]
            except OSError:
                pass
            self._ppp = None
            self.modem.ppp_closed()
        await self.modem.start()
        await self.modem.dial()
        ppp = self._hw.network.PPP(self._uart)
        self._ppp = ppp
        ppp.active(True)
        ppp.connect()
        for _ in range(60):
            if ppp.isconnected():
                return
            await _sleep_ms(500)

    def signal_dbm(self):
        return self.modem.dbm()

    def info(self):
        return self.modem.status()


class Esp32Watchdog(base.Watchdog):
    def __init__(self, hw):
        self._m = hw.machine
        self._wdt = None  # type: object | None

    def start(self, timeout_ms):
        if self._wdt is None:
            self._wdt = self._m.WDT(timeout=timeout_ms)

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()  # type: ignore[attr-defined]


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


class Esp32Board(base.Board):
    name = "esp32"

    def __init__(self, config, hw=None, clock=None, storage_root="", trace=None):
        """config: the node's config.json (pins, link, ...). hw: the hardware modules (the real
        ones by default). clock/storage_root: hw-sim gives its controlled clock and the node's
        flash directory. trace(kind, value): optional diagnostics hook (audio label, volume)."""
        hw = hw or Hardware()
        self.hw = hw
        self.pins = pins = pins_from(config)
        self.clock = clock or Esp32Clock()
        self.audio = I2sAudioOut(hw, self.clock, pins, config.get("i2s_ibuf", I2S_IBUF),
                                 config.get("i2s_id", 0), trace)
        self.amp = PinAmplifier(hw, pins, config)
        self.led = PinLed(hw, pins.get("led"))
        self.storage = FlashStorage(storage_root)
        self.link = self._make_link(hw, pins, config)
        self.watchdog = Esp32Watchdog(hw)
        self.ota = PartitionOta(hw, self.storage)
        self._button = None
        self._pressed = None  # type: object | None

    @staticmethod
    def _make_link(hw, pins, config):
        kind = config.get("link", "wifi")
        if kind == "wifi":
            return WlanLink(hw, config.get("wifi_ssid", ""), config.get("wifi_password", ""))
        if kind == "ethernet":
            return LanLink(hw, pins, config)
        if kind == "4g":
            return PppLink(hw, pins, config)
        raise ValueError("unknown link %s" % kind)

    def heap_free(self):
        gc.collect()
        return gc.mem_free()  # type: ignore[attr-defined]

    def temperature_c(self):
        f = getattr(self.hw.esp32, "mcu_temperature", None)
        if f is None:
            return None
        try:
            return int(f())
        except (OSError, ValueError):
            return None

    def on_test_button(self, callback):
        pin = self.pins.get("test_button")
        if pin is None:
            return
        m = self.hw.machine
        self._pressed = flag = asyncio.ThreadSafeFlag()  # type: ignore[attr-defined]
        self._button = b = m.Pin(pin, m.Pin.IN, m.Pin.PULL_UP)
        b.irq(lambda p: flag.set(), m.Pin.IRQ_FALLING)

        async def wait_presses():
            while True:
                await flag.wait()
                callback()
                await _sleep_ms(1000)  # contact bounce and impatient thumbs

        asyncio.create_task(wait_presses())

    def reset_cause(self):
        m = self.hw.machine
        c = m.reset_cause()
        if c == m.WDT_RESET:
            return "watchdog"
        if c == m.SOFT_RESET:
            return "soft"
        if c in (m.PWRON_RESET, m.HARD_RESET):
            return "power"
        if c == m.DEEPSLEEP_RESET:
            return "power"
        return "crash"

    def reboot(self):
        self.amp.off()
        self.hw.machine.reset()

# The pins: the amplifier relay (with its optional current sense and fault input) and the
# status LED.
# ruff: noqa: UP031, SIM105, RUF006, RUF012  (MicroPython: %-formatting, no contextlib)
import asyncio

from hal import base
from hal.esp32.system import since, sleep_ms, ticks

AMP_SETTLE_MS = 200  # after the relay closes, the current reading is not trusted this long


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
            self._since = ticks()

    def off(self):
        if self._on:
            self._relay.value(1 if self._low else 0)
            self._on = False

    def is_on(self):
        return self._on

    def current_ma(self):
        if self._adc is None:
            return None
        if self._on and since(self._since) < AMP_SETTLE_MS:
            return None
        mv = self._adc.read_uv() // 1000
        ma = int((mv - self._zero_mv) * self._ma_per_mv)
        return ma if ma > 0 else 0

    def verifies(self):
        return self._adc is not None

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
            await sleep_ms(period)

# The ESP32's clock, watchdog and the MicroPython hardware modules, and the time helpers the
# other hal/esp32 modules share.
# ruff: noqa: UP031, SIM105, RUF006, RUF012  (MicroPython: %-formatting, no contextlib)
import asyncio
import time

from hal import base

EPOCH_2000_MS = 946684800000  # ports whose time() counts from 2000-01-01


def sleep_ms(ms):
    return asyncio.sleep_ms(ms)  # type: ignore[attr-defined]


def ticks():
    return int(time.ticks_ms())  # type: ignore[attr-defined,call-overload]


def since(t):
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


class Esp32Clock(base.Clock):
    """UTC from the RTC (set by NTP); ticks_ms never wraps (time.ticks_ms does, every ~12 days
    on the ESP32), so the firmware may subtract two readings."""

    def __init__(self):
        self._epoch = EPOCH_2000_MS if time.gmtime(0)[0] == 2000 else 0
        self._last = ticks()
        self._acc = 0

    def time_ms(self):
        return time.time_ns() // 1000000 + self._epoch

    def ticks_ms(self):
        self._acc += since(self._last)
        self._last = ticks()
        return self._acc

    def sleep_ms(self, ms):
        return sleep_ms(ms if ms > 0 else 0)


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

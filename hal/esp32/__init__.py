# The node's hardware on an ESP32-WROVER under MicroPython: I2S DAC/amplifier (MAX98357A or
# PCM5102), amplifier relay and status LED on pins, optional amplifier current sense and fault
# pin, the hardware watchdog, WiFi / Ethernet (LAN8720) / 4G PPP links, NTP time, littlefs
# storage and OTA through esp32.Partition. Wiring only; one module per job.
# The MicroPython modules it drives (machine, network, esp32, ntptime) come in one Hardware
# object: the real modules on the board; hw-sim (hw-sim/mpsim) hands each simulated node its
# own stand-ins with the same names, so this package is the code that runs on the board.
# Importing it loads every module (hw-sim loads the board's code before it measures heap).
# ruff: noqa: UP031, RUF006  (MicroPython: %-formatting)
import asyncio
import gc

from hal import base
from hal.esp32.audio import I2sAudioOut
from hal.esp32.const import I2S_IBUF, pins_from
from hal.esp32.gpio import PinAmplifier, PinLed
from hal.esp32.link import make_link
from hal.esp32.ota import PartitionOta
from hal.esp32.storage import FlashStorage
from hal.esp32.system import Esp32Clock, Esp32Watchdog, Hardware, sleep_ms


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
        self.link = make_link(hw, pins, config)
        self.watchdog = Esp32Watchdog(hw)
        self.ota = PartitionOta(hw, self.storage)
        self._button = None
        self._pressed = None  # type: object | None

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
                await sleep_ms(1000)  # contact bounce and impatient thumbs

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

"""Relay, status LED, amplifier fault input and the local "test" button, through gpiozero.
pin_factory None means gpiozero's default (lgpio on a Pi); tests pass a MockFactory."""
import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from gpiozero import LED, Button, DigitalInputDevice, DigitalOutputDevice

from hal import base

log = logging.getLogger(__name__)

# LED patterns: (on_s, off_s) for blinking ones
_BLINK = {"blink": (0.5, 0.5), "play": (0.1, 0.1)}


class RelayAmplifier(base.Amplifier):
    def __init__(self, pin: int, active_high: bool = True, fault_pin: int | None = None,
                 pin_factory: Any = None):
        self.relay = DigitalOutputDevice(pin, active_high=active_high, initial_value=False,
                                         pin_factory=pin_factory)
        self.fault_input = None if fault_pin is None else DigitalInputDevice(
            fault_pin, pull_up=False, pin_factory=pin_factory)

    def on(self) -> None:
        self.relay.on()

    def off(self) -> None:
        self.relay.off()

    def is_on(self) -> bool:
        return bool(self.relay.value)

    def fault(self) -> bool | None:
        return None if self.fault_input is None else bool(self.fault_input.is_active)

    def close(self) -> None:
        self.relay.off()
        self.relay.close()


class GpioLed(base.StatusLed):
    def __init__(self, pin: int, pin_factory: Any = None):
        self.led = LED(pin, pin_factory=pin_factory)
        self.pattern = "off"

    def set(self, pattern: str) -> None:
        if pattern == self.pattern:
            return  # (re-starting a blink would restart its thread)
        self.pattern = pattern
        if pattern in _BLINK:
            on_s, off_s = _BLINK[pattern]
            self.led.blink(on_s, off_s)
        elif pattern == "on":
            self.led.on()
        else:
            self.led.off()


class TestButton:
    """A push button to GND (internal pull-up). Presses arrive on gpiozero's thread and are
    handed to the asyncio loop; a callback may be a plain function or return a coroutine."""

    def __init__(self, pin: int, bounce_s: float = 0.05, pin_factory: Any = None):
        self.button = Button(pin, pull_up=True, bounce_time=bounce_s, pin_factory=pin_factory)
        self.button.when_pressed = self._pressed
        self.callbacks: list[Callable[[], Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.presses = 0
        self._tasks: set[asyncio.Future[Any]] = set()

    def add(self, callback: Callable[[], Any]) -> None:
        self.callbacks.append(callback)
        with contextlib.suppress(RuntimeError):  # else the board's main binds the loop
            self.loop = asyncio.get_running_loop()

    def _pressed(self) -> None:
        self.presses += 1
        if self.loop is None:
            log.warning("test button pressed before the node runs")
            return
        self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        for cb in self.callbacks:
            try:
                r = cb()
                if asyncio.iscoroutine(r):
                    task = asyncio.ensure_future(r)
                    self._tasks.add(task)  # (a task nobody holds may be collected)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("test button callback")

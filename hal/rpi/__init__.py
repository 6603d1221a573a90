"""The Raspberry Pi board (CPython on Raspberry Pi OS): gpiozero for the relay, LED and test
button, mpv on ALSA for audio, a directory for storage, systemd for the watchdog, A/B
install directories for OTA. Wiring only; one module per job."""
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from hal import base
from hal.rpi.audio import MpvAudioOut
from hal.rpi.const import ENV_RESET_CAUSE, EXIT_REBOOT, EXIT_SYSTEM_REBOOT, rpi_config
from hal.rpi.gpio import GpioLed, RelayAmplifier, TestButton
from hal.rpi.link import make_link
from hal.rpi.ota import AbOta
from hal.rpi.storage import DirStorage
from hal.rpi.system import RpiClock, SystemdWatchdog, read_temperature

log = logging.getLogger(__name__)


class RpiBoard(base.Board):
    name = "rpi"

    def __init__(self, config: dict[str, Any], pin_factory: Any = None,
                 clock: base.Clock | None = None, link: base.Link | None = None):
        """config: the node config (its "rpi" section over hal.rpi.const.DEFAULTS).
        pin_factory: gpiozero's (None: the Pi's own; tests: MockFactory). clock, link:
        stand-ins for tests."""
        rc = self.rpi = rpi_config(config)
        self.clock = clock or RpiClock()
        self.mpv_audio = MpvAudioOut(rc["mpv"], rc["alsa_device"],
                                     os.path.join(rc["run_dir"], "mpv.sock"), rc["mpv_args"])
        self.audio = self.mpv_audio
        self.relay = RelayAmplifier(rc["relay_pin"], rc["relay_active_high"],
                                    rc["amp_fault_pin"], pin_factory)
        self.amp = self.relay
        self.gpio_led = GpioLed(rc["led_pin"], pin_factory)
        self.led = self.gpio_led
        self.button = TestButton(rc["button_pin"], rc["button_bounce_s"], pin_factory)
        self.storage = DirStorage(rc["data_dir"])
        self.link = link or make_link(rc["link"])
        self.watchdog = SystemdWatchdog(rc["hw_watchdog"])
        self.ota = AbOta.from_env(rc["install_dir"]) if os.path.islink(
            os.path.join(rc["install_dir"], "current")) else None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the test button's presses are handed to (gpiozero calls from a thread)."""
        self.button.loop = loop

    def on_test_button(self, callback: Callable[[], Any]) -> None:
        self.button.add(callback)

    def temperature_c(self) -> int | None:
        return read_temperature(self.rpi["thermal_zone"])

    def heap_free(self) -> None:
        return None

    def reset_cause(self) -> str | None:
        return os.environ.get(ENV_RESET_CAUSE)

    def shutdown(self) -> None:
        """Leave the hardware safe: audio stopped, relay open, LED off."""
        self.audio.close()
        self.relay.off()
        self.gpio_led.set("off")

    def reboot(self) -> None:
        """Exit the node process with a status the launcher knows: EXIT_REBOOT (systemd
        restarts the unit) or, with "reboot": "system", EXIT_SYSTEM_REBOOT (the launcher runs
        `systemctl reboot`; the unit's user needs polkit's permission for it). Does not
        return; the firmware has stored what must survive."""
        self.shutdown()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_SYSTEM_REBOOT if self.rpi["reboot"] == "system" else EXIT_REBOOT)

"""Names and defaults for the Raspberry Pi board. The node config's "rpi" section overrides
any of DEFAULTS (see docs/hardware.md, "Raspberry Pi set-up")."""
from typing import Any

# Exit statuses the node process uses towards the launcher (hal/rpi/launcher.py).
EXIT_REBOOT = 75  # board.reboot(): start me again (systemd restarts the unit)
EXIT_SYSTEM_REBOOT = 76  # board.reboot() with "reboot": "system": reboot the whole Pi

# Environment the launcher passes to the node process.
ENV_SLOT = "LOAXA_SLOT"  # "a" or "b": the install directory the node runs from
ENV_RESET_CAUSE = "LOAXA_RESET_CAUSE"  # why the node last started (base.Board.reset_cause)
ENV_INSTALL_DIR = "LOAXA_INSTALL_DIR"

DEFAULTS: dict[str, Any] = {
    # BCM GPIO numbers (physical header pins in docs/hardware.md)
    "relay_pin": 17,
    "relay_active_high": True,  # most opto-isolated relay boards are active low: set False
    "led_pin": 27,
    "button_pin": 22,  # to GND, internal pull-up
    "button_bounce_s": 0.05,
    "amp_fault_pin": None,  # an amplifier's protection output, high = fault (optional)
    # Audio: mpv as a supervised subprocess on ALSA
    "mpv": "/usr/bin/mpv",
    "alsa_device": "default",  # an ALSA PCM ("plughw:CARD=Headphones,DEV=0"); "" = mpv's own
    "mpv_args": [],  # extra mpv options, after ours (tests: --ao=pcm --ao-pcm-file=...)
    # Files
    "data_dir": "/var/lib/loaxa",  # Storage: plan, cache, as-run, counters
    "run_dir": "/run/loaxa",  # mpv's IPC socket
    "install_dir": "/opt/loaxa",  # A/B slots: a/, b/, current -> a|b, ota.json
    # System
    "reboot": "exit",  # "exit": restart the node process; "system": reboot the Pi
    "hw_watchdog": None,  # "/dev/watchdog" to feed the kernel watchdog as well as systemd's
    "thermal_zone": "/sys/class/thermal/thermal_zone0/temp",
    # The IP link: {"kind": "net"} (Ethernet/WiFi, the OS brings it up) or
    # {"kind": "4g", "port": "/dev/ttyUSB2", "data_port": "/dev/ttyUSB3", "apn": "v-internet"}
    "link": {"kind": "net"},
}


def rpi_config(config: dict[str, Any]) -> dict[str, Any]:
    """The node config's "rpi" section over DEFAULTS."""
    out = dict(DEFAULTS)
    out.update(config.get("rpi") or {})
    return out

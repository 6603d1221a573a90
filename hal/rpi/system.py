"""Clock, systemd notification and watchdog, temperature: the Pi's operating-system side."""
import asyncio
import logging
import os
import socket
import time

from hal import base

log = logging.getLogger(__name__)


class RpiClock(base.Clock):
    """Wall clock from the OS (NTP keeps it right: systemd-timesyncd), monotonic ticks."""

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def ticks_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    async def sleep_ms(self, ms: int) -> None:
        await asyncio.sleep(max(0, ms) / 1000)


def sd_notify(state: str) -> bool:
    """Send a state ("READY=1", "WATCHDOG=1", ...) to systemd's NOTIFY_SOCKET, as
    sd_notify(3) does, without libsystemd. False when not run by systemd (no socket)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError as e:
        log.warning("sd_notify %s: %s", state, e)
        return False


class SystemdWatchdog(base.Watchdog):
    """systemd's watchdog (WatchdogSec= in the unit; NotifyAccess=all since the node is the
    launcher's child): feed() sends WATCHDOG=1. start() asks systemd for timeout_ms, and
    opens the kernel's /dev/watchdog too when configured (it cannot be stopped: a node that
    stops feeding resets the Pi, not just the process)."""

    def __init__(self, hw_device: str | None = None):
        self.hw_device = hw_device
        self._hw: int | None = None
        self.started = False

    def start(self, timeout_ms: int) -> None:
        self.started = True
        sd_notify(f"WATCHDOG_USEC={timeout_ms * 1000}")
        if self.hw_device:
            try:
                self._hw = os.open(self.hw_device, os.O_WRONLY)
            except OSError as e:
                log.warning("hardware watchdog %s: %s", self.hw_device, e)
        self.feed()

    def feed(self) -> None:
        if not self.started:
            return
        sd_notify("WATCHDOG=1")
        if self._hw is not None:
            os.write(self._hw, b"1")


def read_temperature(path: str) -> int | None:
    """The SoC's temperature (millidegrees in sysfs), whole degrees, or None."""
    try:
        with open(path) as f:
            return round(int(f.read().strip()) / 1000)
    except (OSError, ValueError):
        return None


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""

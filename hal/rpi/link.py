"""IP links: Ethernet/WiFi brought up by the OS (we watch the default route), and 4G: the
modem driver (firmware/modem.py over pyserial) plus pppd as a supervised subprocess."""
import asyncio
import logging
import socket
import subprocess
from typing import Any, Protocol

from hal import base

log = logging.getLogger(__name__)

POLL_S = 2.0  # how often a link looks at the route table / pppd


def default_route(route_file: str = "/proc/net/route") -> str | None:
    """The interface carrying the IPv4 default route, or None."""
    try:
        with open(route_file) as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) > 3 and parts[1] == "00000000" and int(parts[3], 16) & 1:
                    return parts[0]
    except (OSError, StopIteration, ValueError):
        pass
    return None


def can_resolve(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except OSError:
        return False


class _Watched(base.Link):
    """A link whose state a background task polls into base.Link.set_up (which runs the
    on_down callbacks on up -> down). is_up() and up() look at the system themselves."""

    def __init__(self) -> None:
        super().__init__()
        self._task: asyncio.Task[None] | None = None

    def _check(self) -> bool:
        raise NotImplementedError

    def is_up(self) -> bool:
        return self._check()

    def _callback_failed(self) -> None:
        log.exception("on_down callback")

    def _watch(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._watch_loop())

    async def _watch_loop(self) -> None:
        while True:
            up = self._check()
            if self._up and not up:
                log.warning("%s link down", self.kind)
            self.set_up(up)
            await asyncio.sleep(POLL_S)

    async def up(self) -> None:
        self._watch()
        while not self._check():
            await asyncio.sleep(POLL_S / 4)
        self.set_up(True)


class NetLink(_Watched):
    """Ethernet or WiFi configured by the OS (NetworkManager / dhcpcd): up while there is a
    default route (and, if check_host is set, that name resolves)."""

    def __init__(self, check_host: str | None = None, route_file: str = "/proc/net/route"):
        super().__init__()
        self.check_host = check_host
        self.route_file = route_file
        self.kind = "net"

    def _check(self) -> bool:
        iface = default_route(self.route_file)
        if iface is None:
            return False
        self.kind = "wifi" if iface.startswith(("wl", "wlan")) else "eth"
        return self.check_host is None or can_resolve(self.check_host)

    def info(self) -> dict[str, Any] | None:
        return {"iface": default_route(self.route_file)}


class ModemDriver(Protocol):
    """What PppLink needs of the modem driver (firmware/modem.py via hal/rpi/serial_port.py)."""

    async def start(self) -> Any: ...
    async def dial(self) -> Any: ...
    async def poll(self) -> Any: ...
    def status(self) -> dict[str, Any]: ...
    def dbm(self) -> int | None: ...


def ppp_argv(data_port: str, baud: int = 115200, pppd: str = "/usr/sbin/pppd") -> list[str]:
    """pppd on the modem's data port: dials *99# itself (the APN is already set through the AT
    port by the driver), takes the default route and the operator's DNS, stays in the
    foreground so we supervise it, and drops the link after 3 missed LCP echoes."""
    return [pppd, data_port, str(baud), "nodetach", "noauth", "noipdefault", "defaultroute",
            "replacedefaultroute", "usepeerdns", "lcp-echo-interval", "10",
            "lcp-echo-failure", "3", "connect", "/usr/sbin/chat -v -t 30 '' AT OK ATD*99# CONNECT"]


class PppLink(_Watched):
    """4G: the modem driver checks SIM and registration and sets the APN on the AT port;
    pppd runs on the data port as a child process, restarted when it exits. Up while pppd
    runs and ppp0 holds the default route. info() is the modem's status for telemetry.

    A thin wrapper: pppd cannot run in CI, so tests cover the supervision with a stand-in
    command (argv) and route file."""

    kind = "4g"

    def __init__(self, modem: ModemDriver, argv: list[str], iface: str = "ppp0",
                 route_file: str = "/proc/net/route"):
        super().__init__()
        self.modem = modem
        self.argv = argv
        self.iface = iface
        self.route_file = route_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.ppp_starts = 0
        self._supervisor: asyncio.Task[None] | None = None

    def _check(self) -> bool:
        return (self.proc is not None and self.proc.poll() is None
                and default_route(self.route_file) == self.iface)

    async def up(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.ensure_future(self._supervise())
        await super().up()

    async def _supervise(self) -> None:
        backoff = 2.0
        while True:
            try:
                await self.modem.start()  # SIM, registration, APN (raises when not ready)
                self.ppp_starts += 1
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
                while self.proc.poll() is None:
                    await asyncio.sleep(POLL_S)
                    await self.modem.poll()
                log.warning("pppd exited with status %s", self.proc.returncode)
                backoff = 2.0
            except asyncio.CancelledError:
                self.stop()
                raise
            except Exception as e:  # a modem that does not answer: try again later
                log.warning("4G link: %s", e)
                backoff = min(backoff * 2, 120.0)
            await asyncio.sleep(backoff)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def signal_dbm(self) -> int | None:
        return self.modem.dbm()

    def info(self) -> dict[str, Any] | None:
        st = dict(self.modem.status())
        st["ppp"] = self._check()
        return st


def make_link(cfg: dict[str, Any]) -> base.Link:
    """The link the "rpi" config's "link" section names."""
    kind = cfg.get("kind", "net")
    if kind == "net":
        return NetLink(cfg.get("check_host"), cfg.get("route_file", "/proc/net/route"))
    if kind == "4g":
        # firmware/modem.py (AT commands) over pyserial (hal/rpi/serial_port.py) on the AT
        # port; pppd dials on the data port (SIM7600/EC25: ttyUSB2 and ttyUSB3).
        from firmware.modem import Modem
        from hal.rpi.serial_port import SerialPort
        modem = Modem(SerialPort(cfg.get("port", "/dev/ttyUSB2"), cfg.get("baud", 115200)),
                      apn=cfg.get("apn", "v-internet"), pin=cfg.get("sim_pin"))
        argv = cfg.get("pppd_argv") or ppp_argv(cfg.get("data_port", "/dev/ttyUSB3"),
                                                cfg.get("baud", 115200))
        return PppLink(modem, argv)
    raise ValueError(f"unknown link kind {kind!r}")

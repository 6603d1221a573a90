# IP links: WiFi, Ethernet (LAN8720) and 4G (the modem's AT set-up, then network.PPP), each
# kept up by a polling task that also sets the clock by NTP. The up/down plumbing is
# hal/base.py's Link.
# ruff: noqa: UP031, SIM105, RUF006, RUF012  (MicroPython: %-formatting, no contextlib)
import asyncio

from hal import base
from hal.esp32.serial_port import UartPort
from hal.esp32.system import since, sleep_ms, ticks

NTP_EVERY_MS = 4 * 3600 * 1000  # real ms between NTP corrections while the link is up
LINK_POLL_MS = 500  # real ms: how often the link's state is looked at (no event to wait for)
LINK_RETRY_MS = 5000  # real ms between attempts to bring a link up


class _PolledLink(base.Link):
    """A link whose state is polled (MicroPython gives no event for a lost connection): a
    task keeps it up, reports its state to base.Link.set_up and sets the clock by NTP."""

    kind = "unknown"

    def __init__(self, hw):
        super().__init__()
        self._hw = hw
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

    def up(self):
        self.start()
        return base.Link.up(self)  # (its coroutine itself: no second one on the heap)

    def _ntp(self):
        if self._ntp_at is not None and since(self._ntp_at) < self._ntp_every:
            return
        self._ntp_at = ticks()
        self._ntp_every = NTP_EVERY_MS
        try:
            self._hw.ntptime.settime()
            self.ntp_ok += 1
        except (OSError, OverflowError, IndexError):
            self._ntp_every = 60000  # no answer: try again in a minute

    async def _keep(self):
        while True:
            if self._connected():
                if self.set_up(True):
                    self._ntp_at = None  # set the clock at once
                self._ntp()
                await sleep_ms(LINK_POLL_MS)
                continue
            self.set_up(False)
            try:
                await self._connect()
            except (OSError, RuntimeError) as e:
                print("link %s: %r" % (self.kind, e))
            if not self._connected():
                await sleep_ms(LINK_RETRY_MS)


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
            await sleep_ms(500)

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
            await sleep_ms(500)


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
            await sleep_ms(500)

    def signal_dbm(self):
        return self.modem.dbm()

    def info(self):
        return self.modem.status()


def make_link(hw, pins, config):
    """The link config "link" names: "wifi" (the default), "ethernet" or "4g"."""
    kind = config.get("link", "wifi")
    if kind == "wifi":
        return WlanLink(hw, config.get("wifi_ssid", ""), config.get("wifi_password", ""))
    if kind == "ethernet":
        return LanLink(hw, pins, config)
    if kind == "4g":
        return PppLink(hw, pins, config)
    raise ValueError("unknown link %s" % kind)

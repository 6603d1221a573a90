# The 4G modem (SIMCom SIM7600, Quectel EC25) over AT commands: SIM, registration, signal,
# operator, APN and the PPP dial. Runs unchanged under MicroPython and CPython 3.11.
# The port is anything with write(bytes) and `async read()` returning the bytes available (at
# least one); read() may block for ever, so every wait here has its own deadline.
# After dial() returns the port belongs to PPP (network.PPP on the ESP32, pppd on the Pi).
# ruff: noqa: UP031  (%-formatting is the MicroPython firmware's idiom)
import errno

from firmware.mqtt import sleep_ms, ticks_diff, ticks_ms, wait_ms

if False:  # type comments only; MicroPython has no typing module
    from typing import Any  # noqa: F401

MAX_LINE = 256  # longest line kept; longer runs without a line end are noise and skipped
# Final results of ATD besides CONNECT and ERROR. Only while dialling: otherwise a NO CARRIER is a
# late word about an earlier call and must not end some other command.
_DIAL_FAILS = ("NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER")

# <stat> of +CREG/+CEREG (3GPP TS 27.007)
REG_NAMES = {0: "none", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}
_REGISTERED = (1, 5)
# Which of two stats (CS +CREG, EPS +CEREG) says more: registered, then still trying, then no.
_REG_RANK = {1: 5, 5: 5, 2: 4, 3: 3, 4: 2, 0: 1}


class ModemError(Exception):
    """start()/dial() failed. reason is a stable code (telemetry, tests, the link's retry logic):
    no_response, no_sim, sim_locked, sim_puk, pin_rejected, sim_error, searching, denied,
    not_registered, reset, error, no_carrier, not_ready, port. detail is for people."""

    def __init__(self, reason, detail=""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self):
        return "%s: %s" % (self.reason, self.detail) if self.detail else self.reason


def csq_to_dbm(rssi):
    """+CSQ <rssi> 0..31 to dBm (0 is -113 dBm or less, 31 is -51 or more); 99 is unknown."""
    if rssi is None or rssi < 0 or rssi > 31:
        return None
    return -113 + 2 * rssi


def _fields(line):
    """'+CSQ: 20,99' -> ['20', '99']; quotes kept so callers can tell strings from numbers."""
    i = line.find(":")
    rest = line[i + 1:] if i >= 0 else ""
    return [f.strip() for f in rest.split(",")]


def _int(s):
    try:
        return int(s)
    except ValueError:
        return None


def parse_csq(line):
    """'+CSQ: <rssi>,<ber>' -> rssi (int) or None."""
    f = _fields(line)
    return _int(f[0]) if f else None


def parse_reg(line):
    """A +CREG/+CEREG/+CGREG line -> (is_urc, stat). The answer to AT+CREG? is
    '<n>,<stat>[,<lac>,<ci>...]'; the unsolicited code is '<stat>' (n=1) or
    '<stat>,"<lac>","<ci>"...' (n=2): one field, or a quoted second field, means a URC."""
    f = _fields(line)
    if len(f) == 1 or (len(f) > 1 and f[1].startswith('"')):
        return True, _int(f[0])
    if len(f) < 2:
        return False, None
    return False, _int(f[1])


def parse_cops(line):
    """'+COPS: 0,0,"Viettel",7' -> 'Viettel'; '+COPS: 0' (no operator) -> None."""
    f = _fields(line)
    if len(f) < 3:
        return None
    name = f[2].strip('"').strip()
    return name or None


def parse_cpin(line):
    """'+CPIN: READY' -> 'ready'; 'SIM PIN' -> 'pin'; 'SIM PUK' -> 'puk'; else the code."""
    code = line[line.find(":") + 1:].strip().upper()
    # NOT INSERTED / NOT READY: what some firmwares send as a URC when the SIM goes or boots
    names = {"READY": "ready", "SIM PIN": "pin", "SIM PUK": "puk", "NOT INSERTED": "absent",
             "NOT READY": "not_ready"}
    return names.get(code, code.lower() or None)


def sim_error(text):
    """A +CME ERROR text (CMEE=2) or number (CMEE=1) about the SIM -> a sim state, or None."""
    t = text.strip().lower()
    if "not inserted" in t or t == "10":
        return "absent"
    if "puk" in t or t == "12":
        return "puk"
    if "pin required" in t or t == "11":
        return "pin"
    if "busy" in t or t == "14":
        return "busy"
    if "failure" in t or t == "13" or "wrong" in t or t == "15":
        return "error"
    return None


def printable(raw):
    """Only the printable ASCII of raw: AT is ASCII; line noise is not, and decoding non-UTF-8
    must not raise."""
    return bytes(c for c in raw if 32 <= c < 127)


class Modem:
    def __init__(self, port, apn="v-internet", pin=None, timeout_ms=5000, sync_ms=1000,
                 sync_tries=5, reg_timeout_ms=60000, reg_poll_ms=2000, dial_timeout_ms=30000,
                 guard_ms=1000):
        self._port = port
        self.apn = apn
        self.pin = pin
        self.timeout_ms = timeout_ms  # one command's answer
        self.sync_ms = sync_ms  # one bare "AT" while finding the modem
        self.sync_tries = sync_tries
        self.reg_timeout_ms = reg_timeout_ms  # start() waits this long for the network
        self.reg_poll_ms = reg_poll_ms
        self.dial_timeout_ms = dial_timeout_ms
        self.guard_ms = guard_ms  # silence around "+++" (the modem's escape guard time)
        self.state = "off"
        self.sim = None  # type: Any
        self.creg = None  # type: Any  # CS <stat>
        self.cereg = None  # type: Any  # EPS (LTE) <stat>
        self.rssi = None  # type: Any
        self.operator = None  # type: Any
        self.error = None  # type: Any
        self.resets = 0  # RDY seen: the modem rebooted under us
        self.timeouts = 0
        self.noise = 0  # lines or runs thrown away as garbage
        self._buf = bytearray()
        self._skipping = False  # inside an over-long run: drop up to the next line end
        self._inited = False  # echo off, verbose errors, registration URCs on
        self._reset_seen = False
        self._escape = False  # the modem may still be in data mode after PPP

    # -- what telemetry sees

    def dbm(self):
        return csq_to_dbm(self.rssi)

    def reg_stat(self):
        """The more telling of CS and EPS registration (LTE-only networks leave CREG at 0)."""
        a, b = self.cereg, self.creg
        if a is None:
            return b
        if b is None:
            return a
        return a if _REG_RANK.get(a, 0) >= _REG_RANK.get(b, 0) else b

    def registered(self):
        return self.reg_stat() in _REGISTERED

    def status(self):
        stat = self.reg_stat()
        return {"state": self.state, "sim": self.sim,
                "reg": REG_NAMES.get(stat, "stat%d" % stat) if stat is not None else None,
                "dbm": self.dbm(), "operator": self.operator, "apn": self.apn,
                "error": self.error}

    # -- bring-up

    async def start(self):
        """Find the modem, check the SIM, read signal and registration, set the APN and wait
        (up to reg_timeout_ms) for the network. Returns status(); raises ModemError."""
        try:
            try:
                return await self._start()
            except ModemError as e:
                if e.reason != "reset":
                    raise
            # The modem rebooted during the sequence (RDY): once more from the top.
            return await self._start()
        except ModemError as e:
            self._fail(e)
            raise

    async def _start(self):
        self.error = None
        await self._init()
        await self._check_sim()
        await self._query()
        await self._set_apn()
        t0 = ticks_ms()
        while not self.registered():
            stat = self.reg_stat()
            if stat == 3:
                raise ModemError("denied", "the network refused registration")
            if ticks_diff(ticks_ms(), t0) >= self.reg_timeout_ms:
                if stat == 2:
                    raise ModemError("searching", "not registered after %d ms"
                                     % self.reg_timeout_ms)
                raise ModemError("not_registered", "registration stat %s" % stat)
            self.state = "searching"
            await sleep_ms(self.reg_poll_ms)
            await self._query()
        self.state = "ready"
        return self.status()

    async def poll(self):
        """Refresh signal, registration and operator for telemetry. Never raises a ModemError:
        problems land in status()["state"/"error"], and a rebooted modem is set up again."""
        if self.state == "dialled":
            return self.status()  # the port is PPP's now; keep the last known values
        for attempt in (0, 1):
            try:
                if not self._inited:  # first poll, or the modem rebooted or stopped answering
                    await self._init()
                    await self._check_sim()
                    await self._set_apn()
                elif self.sim != "ready":
                    await self._check_sim()
                await self._query()
                self.error = None
                self._set_reg_state()
                break
            except ModemError as e:
                if e.reason == "reset" and attempt == 0:
                    continue
                self._fail(e)
                break
        return self.status()

    async def dial(self):
        """ATD*99# and wait for CONNECT; afterwards the port carries PPP. Raises ModemError."""
        if self.state != "ready" or not self._inited:
            raise ModemError("not_ready", "state %s" % self.state)
        try:
            final = await self._cmd("ATD*99#", timeout_ms=self.dial_timeout_ms, connect=True)
        except ModemError as e:
            self._fail(e)
            raise
        self.state = "dialled"
        self.error = None
        # Bytes after CONNECT are PPP's; PPP resends what it loses, so drop rather than hand over.
        self._buf = bytearray()
        self._skipping = False
        return final

    def ppp_closed(self):
        """PPP has let go of the port: the next poll()/start() finds the modem with AT again."""
        self._inited = False
        self._buf = bytearray()
        self._skipping = False
        if self.state == "dialled":
            self.state = "off"
            self._escape = True

    # -- steps

    def _fail(self, e):
        self.error = str(e)
        if e.reason in ("no_response", "reset", "port"):
            self.state = "no_response" if e.reason != "reset" else "reset"
            self._inited = False
        elif e.reason in ("no_sim", "sim_locked", "searching", "denied", "not_registered"):
            self.state = e.reason
        elif e.reason == "no_carrier":
            pass  # still registered and in command mode: dial() may simply be tried again
        elif e.reason in ("sim_puk", "pin_rejected", "sim_error"):
            self.state = "sim_locked" if e.reason != "sim_error" else "sim_error"
        else:
            self.state = "error"

    def _set_reg_state(self):
        if self.sim != "ready":
            return
        stat = self.reg_stat()
        if stat in _REGISTERED:
            self.state = "ready"
        elif stat == 3:
            self.state = "denied"
        elif stat == 2:
            self.state = "searching"
        else:
            self.state = "not_registered"

    async def _init(self):
        """Find the modem and set it up the way the parser expects. Also after a reboot."""
        self._inited = False
        await self._sync()
        await self._drain()
        await self._cmd("ATE0")  # no echo: less to read, less to confuse
        await self._cmd("AT+CMEE=2")  # errors as text ("+CME ERROR: SIM not inserted")
        for c in ("AT+CREG=1", "AT+CEREG=1"):  # registration changes as URCs
            try:
                await self._cmd(c)
            except ModemError as e:
                if e.reason != "error":  # a 3G-only module has no +CEREG: fine
                    raise
        self._inited = True

    async def _sync(self):
        # A bare AT until OK: gets past autobaud, boot noise, a half-sent command, stale
        # answers to a command that timed out. A reboot (RDY) here is expected, not a failure.
        for n in range(self.sync_tries):
            if n == 1 and self._escape:
                # No answer after PPP: still in data mode. "+++" between two guard silences
                # (the unanswered AT was the first) gets back to commands.
                self._port.write(b"+++")
                await sleep_ms(self.guard_ms)
            try:
                await self._cmd("AT", timeout_ms=self.sync_ms, on_reset=False)
            except ModemError as e:
                if e.reason not in ("no_response", "error"):
                    raise
                continue
            if self._escape:
                self._escape = False
                try:
                    await self._cmd("ATH")  # end the data call that PPP left behind
                except ModemError as e:
                    if e.reason != "error":
                        raise
            return
        raise ModemError("no_response", "no OK to AT after %d tries" % self.sync_tries)

    async def _drain(self):
        # Let late answers to a timed-out command (or to the repeated AT) arrive and go now,
        # so they cannot pass for the answer to the next command. URCs among them still count.
        quiet = min(100, self.sync_ms)
        for _ in range(20):  # bounded: a babbling modem must not hold us here
            try:
                line = await self._line(quiet, "drain")
            except ModemError as e:
                if e.reason != "no_response":
                    raise
                return  # silence is what we wanted
            if not line.startswith("AT") and line != "OK":
                self._urc(line)

    async def _check_sim(self):
        for _ in range(5):
            try:
                lines = await self._cmd("AT+CPIN?", "+CPIN:")
                self.sim = parse_cpin(lines[0]) if lines else None
            except ModemError as e:
                if e.reason != "error":
                    raise
                sim = sim_error(e.detail.replace("+CME ERROR:", ""))
                self.sim = sim or "error"
                if sim == "busy":  # just after boot the SIM is still being read
                    await sleep_ms(min(500, self.timeout_ms))
                    continue
                if sim == "absent":
                    raise ModemError("no_sim", "SIM not inserted") from None
                if sim is None:
                    raise
            if self.sim == "ready":
                return
            if self.sim == "pin":
                if self.pin is None:
                    raise ModemError("sim_locked", "SIM PIN required and no pin configured")
                try:
                    await self._cmd('AT+CPIN="%s"' % self.pin)
                except ModemError as e:
                    if e.reason == "error":
                        raise ModemError("pin_rejected", e.detail) from None
                    raise
                continue  # read the state again
            if self.sim == "puk":
                raise ModemError("sim_puk", "SIM PUK required")
            if self.sim == "not_ready" or self.sim == "busy":
                await sleep_ms(min(500, self.timeout_ms))
                continue
            raise ModemError("sim_error", "SIM state %s" % self.sim)
        raise ModemError("sim_error", "SIM not ready (%s)" % self.sim)

    async def _set_apn(self):
        await self._cmd('AT+CGDCONT=1,"IP","%s"' % self.apn)

    async def _query(self):
        lines = await self._cmd("AT+CSQ", "+CSQ:")
        self.rssi = parse_csq(lines[0]) if lines else None
        self.creg = await self._reg("AT+CREG?", "+CREG:")
        self.cereg = await self._reg("AT+CEREG?", "+CEREG:")
        if self.registered():
            lines = await self._cmd("AT+COPS?", "+COPS:")
            self.operator = parse_cops(lines[0]) if lines else None
        else:
            self.operator = None

    async def _reg(self, cmd, prefix):
        try:
            lines = await self._cmd(cmd, prefix)
        except ModemError as e:
            if e.reason != "error":
                raise
            return None  # not supported by this module
        for line in lines:
            urc, stat = parse_reg(line)
            if not urc:
                return stat
        return None

    # -- the AT exchange

    async def _cmd(self, cmd, prefix=None, timeout_ms=None, connect=False, on_reset=True):
        """Send one command; return its information lines that start with prefix.
        Anything else that arrives meanwhile is an unsolicited code (or noise) and is handled
        as such. Raises ModemError: no_response (nothing final within the timeout), error
        (ERROR, +CME ERROR, NO CARRIER...; detail is the line) or reset (the modem sent RDY)."""
        tmo = self.timeout_ms if timeout_ms is None else timeout_ms
        self._reset_seen = False
        self._port.write(cmd.encode() + b"\r")
        t0 = ticks_ms()
        out = []  # type: list
        while True:
            try:
                line = await self._line(tmo - ticks_diff(ticks_ms(), t0), cmd)
            except ModemError as e:
                if e.reason == "no_response":
                    self.timeouts += 1
                    self._inited = False  # set up again (and resync) before the next query
                raise
            if line == "OK":
                return out
            if line == "ERROR" or line.startswith("+CME ERROR") or line.startswith("+CMS ERROR"):
                raise ModemError("error", line)
            if connect:
                if line.startswith("CONNECT"):
                    return line
                if line in _DIAL_FAILS:
                    raise ModemError("no_carrier", line)
            if prefix is not None and line.startswith(prefix):
                if prefix in ("+CREG:", "+CEREG:") and parse_reg(line)[0]:
                    self._urc(line)  # same prefix, but the unsolicited form
                elif len(out) < 4:  # bounded: none of ours has more lines
                    out.append(line)
                continue
            if line.startswith("AT"):
                continue  # our own echo (echo is back on after a reboot)
            self._urc(line)
            if self._reset_seen and on_reset:
                raise ModemError("reset", "modem rebooted during %s" % cmd)

    def _urc(self, line):
        """An unsolicited result code: keep what telemetry needs, ignore the rest (RING, +CMTI,
        SMS DONE, PB DONE...)."""
        if line == "RDY" or line == "START" or line == "*ATREADY: 1":
            # Rebooted: echo is on again, verbose errors and URCs are off, the SIM may want
            # its PIN again. Set up again before the next query.
            self.resets += 1
            self._inited = False
            self._reset_seen = True
            self.sim = None
        elif line.startswith("+CREG:"):
            urc, stat = parse_reg(line)
            if urc:
                self.creg = stat
                self._set_reg_state()
        elif line.startswith("+CEREG:"):
            urc, stat = parse_reg(line)
            if urc:
                self.cereg = stat
                self._set_reg_state()
        elif line.startswith("+CPIN:"):
            self.sim = parse_cpin(line)

    async def _line(self, left_ms, cmd):
        """The next non-empty line (printable ASCII, at most MAX_LINE), within left_ms."""
        t0 = ticks_ms()
        while True:
            buf = self._buf
            i = buf.find(b"\r")
            j = buf.find(b"\n")
            if i < 0 or (0 <= j < i):
                i = j
            if i >= 0:
                raw = bytes(buf[:i])
                self._buf = buf[i + 1:]
                if self._skipping or i > MAX_LINE:  # (the tail of) an over-long run
                    self._skipping = False
                    self.noise += 1
                    continue
                text = printable(raw)
                if len(text) < len(raw):
                    self.noise += 1
                line = text.decode().strip()
                if line:
                    return line
                continue
            if len(buf) > MAX_LINE:
                # No line end in MAX_LINE bytes: noise (or a baud-rate mismatch). Drop it.
                self._buf = bytearray()
                self._skipping = True
                self.noise += 1
            left = left_ms - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                raise ModemError("no_response", "no answer to %s" % cmd)
            try:
                data = await wait_ms(self._port.read(), left)
            except OSError as e:
                if e.args and e.args[0] == errno.ETIMEDOUT:
                    raise ModemError("no_response", "no answer to %s" % cmd) from None
                raise ModemError("port", "%s: %r" % (cmd, e)) from None
            if data:
                self._buf.extend(data)

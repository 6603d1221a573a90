"""A fake 4G modem on a pty that speaks AT like a SIMCom SIM7600, for the modem driver's tests.

The test opens ``fake.device`` with pyserial (the real serial path); a thread owns the pty's
master side and answers. Echo is on until ATE0, errors are plain ERROR until AT+CMEE=1/2, as on
the real module. What a test can change while it runs (plain attributes, or the methods below):

- ``sim``: "ready", "absent", "pin" (needs ``pin``), "puk"
- ``creg`` / ``cereg`` (or ``set_reg``): registration <stat>; ``csq``; ``operator``
- ``silent``: swallow everything (a hung or unpowered modem)
- ``garbage``: bytes sent once, before the next answer (line noise, non-UTF-8, partial lines)
- ``dribble``: answers go out a few bytes at a time (lines split across reads)
- ``inject(cmd, before=..., within=...)``: URCs around the next answer to cmd
- ``reset_on``: the next command starting with this is dropped and the modem reboots: silent
  for ``boot_ms``, then ``RDY`` (and the boot URCs), echo back on, settings back to defaults
- ``slow(cmd, ms)``: the next answer to cmd comes ms late (and the modem hears nothing meanwhile)
- ``connect``: ATD*99# answers CONNECT (else NO CARRIER); after CONNECT the line is "PPP"
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty

REGISTERED = (1, 5)


class FakeModem:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no line discipline between the two ends
        os.set_blocking(self.master, False)
        self.device = os.ttyname(self.slave)
        self._wlock = threading.Lock()
        self._lock = threading.Lock()
        # settings a test may change
        self.sim = "ready"
        self.pin = "1234"
        self.creg = 1
        self.cereg = 1
        self.csq = 20
        self.operator = "Viettel"
        self.silent = False
        self.garbage = b""
        self.dribble = False
        self.reset_on: str | None = None
        self.boot_ms = 50
        self.connect = True
        self._before: dict[str, list[str]] = {}
        self._within: dict[str, list[str]] = {}
        self._slow: dict[str, int] = {}
        # what the modem has seen and its own state
        self.received: list[str] = []
        self.boots = 0
        self.apn: str | None = None
        self.ppp = False
        self.ppp_bytes = b""
        self._power_on()
        self._inbuf = b""
        self._booting_until = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-modem", daemon=True)
        self._thread.start()

    def _power_on(self) -> None:
        self.echo = True
        self.cmee = 0
        self.creg_n = 0
        self.cereg_n = 0
        self.pin_entered = False

    # -- what tests call

    def set_reg(self, stat: int, urc: bool = True) -> None:
        """Change both registrations; tell the driver by URC where it asked for them."""
        with self._lock:
            self.creg = self.cereg = stat
            out = []
            if urc and self.creg_n:
                out.append(f"+CREG: {stat}")
            if urc and self.cereg_n:
                out.append(f"+CEREG: {stat}")
        for u in out:
            self.send_line(u)

    def inject(self, cmd: str, before: list[str] | None = None,
               within: list[str] | None = None) -> None:
        """URCs to send just before, or in the middle of, the next answer to cmd."""
        with self._lock:
            if before:
                self._before[cmd.upper()] = list(before)
            if within:
                self._within[cmd.upper()] = list(within)

    def slow(self, cmd: str, ms: int) -> None:
        with self._lock:
            self._slow[cmd.upper()] = ms

    def send_line(self, text: str) -> None:
        self._write(b"\r\n" + text.encode() + b"\r\n")

    def commands(self) -> list[str]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the modem

    def _write(self, data: bytes) -> None:
        with self._wlock:
            if self.dribble:
                for i in range(0, len(data), 3):
                    self._write_all(data[i:i + 3])
                    time.sleep(0.001)
            else:
                self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        while data:
            try:
                n = os.write(self.master, data)
            except BlockingIOError:
                time.sleep(0.001)  # the pty is full: the driver is not reading yet
                continue
            data = data[n:]

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._booting_until and time.monotonic() >= self._booting_until:
                self._boot()
            r, _, _ = select.select([self.master], [], [], 0.01)
            if not r:
                continue
            try:
                data = os.read(self.master, 1024)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return  # the pty went away
            self._feed(data)

    def _boot(self) -> None:
        self._booting_until = 0.0
        with self._lock:
            self.boots += 1
            self._power_on()
            self._inbuf = b""
        # what a SIM7600 says as it comes up
        self.send_line("RDY")
        if self.sim == "ready":
            self.send_line("+CPIN: READY")
            self.send_line("SMS DONE")
            self.send_line("PB DONE")
        elif self.sim == "pin":
            self.send_line("+CPIN: SIM PIN")

    def _feed(self, data: bytes) -> None:
        if self.ppp:
            self.ppp_bytes = (self.ppp_bytes + data)[-4096:]
            if data.endswith(b"+++"):  # the escape (guard times are not checked)
                self.ppp = False
                self.send_line("OK")
            return
        self._inbuf += data
        while b"\r" in self._inbuf:
            raw, self._inbuf = self._inbuf.split(b"\r", 1)
            line = raw.replace(b"\n", b"").decode("latin-1").strip()
            if not line:
                continue
            with self._lock:
                self.received.append(line)
            if self.silent or self._booting_until:
                continue
            if self.reset_on is not None and line.upper().startswith(self.reset_on.upper()):
                self.reset_on = None
                self._booting_until = time.monotonic() + self.boot_ms / 1000
                continue
            if not line.upper().startswith("AT"):
                continue  # a real modem ignores what is not a command
            if self.echo:
                self._write(raw.replace(b"\n", b"") + b"\r")
            self._answer(line)

    def _answer(self, line: str) -> None:
        cmd = line.upper()
        key = cmd
        info, final = self._execute(line, cmd)
        with self._lock:
            before = self._before.pop(key, [])
            within = self._within.pop(key, [])
            delay = self._slow.pop(key, 0)
        if delay:
            time.sleep(delay / 1000)  # busy: this thread reads nothing meanwhile
        out = b""
        if self.garbage:
            out += self.garbage
            self.garbage = b""
        for u in before:
            out += b"\r\n" + u.encode() + b"\r\n"
        for i, text in enumerate(info):
            out += b"\r\n" + text.encode() + b"\r\n"
            if i == 0:
                for u in within:
                    out += b"\r\n" + u.encode() + b"\r\n"
        if not info:
            for u in within:
                out += b"\r\n" + u.encode() + b"\r\n"
        out += b"\r\n" + final.encode() + b"\r\n"
        self._write(out)
        if final.startswith("CONNECT"):
            self.ppp = True
            self._write(b"~\xff}#\xc0!}!}!} }4}\"}&} } } } }%}&\x12\x34\x56\x78~")  # an LCP frame
        if cmd.startswith('AT+CPIN="') and final == "OK" and self.sim == "pin":
            self.send_line("+CPIN: READY")
            self.send_line("SMS DONE")

    def _error(self, text: str, code: int) -> str:
        if self.cmee == 2:
            return "+CME ERROR: " + text
        if self.cmee == 1:
            return f"+CME ERROR: {code}"
        return "ERROR"

    def _sim_ready(self) -> bool:
        return self.sim == "ready" or (self.sim == "pin" and self.pin_entered)

    def _execute(self, line: str, cmd: str) -> tuple[list[str], str]:
        """(information lines, final result) for one command."""
        if cmd == "AT":
            return [], "OK"
        if cmd in ("ATE0", "ATE1"):
            self.echo = cmd == "ATE1"
            return [], "OK"
        if cmd.startswith("AT+CMEE="):
            self.cmee = int(cmd[8:] or 0)
            return [], "OK"
        if cmd.startswith("AT+CREG="):
            self.creg_n = int(cmd[8:] or 0)
            return [], "OK"
        if cmd.startswith("AT+CEREG="):
            self.cereg_n = int(cmd[9:] or 0)
            return [], "OK"
        if cmd == "AT+CPIN?":
            if self.sim == "absent":
                return [], self._error("SIM not inserted", 10)
            if self.sim == "puk":
                return ["+CPIN: SIM PUK"], "OK"
            if self.sim == "pin" and not self.pin_entered:
                return ["+CPIN: SIM PIN"], "OK"
            return ["+CPIN: READY"], "OK"
        if cmd.startswith('AT+CPIN="'):
            if self.sim != "pin" or self.pin_entered:
                return [], self._error("operation not allowed", 3)
            if line[9:].rstrip('"') != self.pin:
                return [], self._error("incorrect password", 16)
            self.pin_entered = True
            return [], "OK"
        if cmd == "AT+CSQ":
            return [f"+CSQ: {self.csq},99"], "OK"
        if cmd == "AT+CREG?":
            return [f"+CREG: {self.creg_n},{self.creg}"], "OK"
        if cmd == "AT+CEREG?":
            return [f"+CEREG: {self.cereg_n},{self.cereg}"], "OK"
        if cmd == "AT+COPS?":
            if self._sim_ready() and (self.creg in REGISTERED or self.cereg in REGISTERED):
                return [f'+COPS: 0,0,"{self.operator}",7'], "OK"
            return ["+COPS: 0"], "OK"
        if cmd.startswith('AT+CGDCONT=1,"IP","'):
            self.apn = line[len('AT+CGDCONT=1,"IP","'):].rstrip('"')
            return [], "OK"
        if cmd == "ATH":
            return [], "OK"
        if cmd == "ATD*99#":
            registered = self.creg in REGISTERED or self.cereg in REGISTERED
            if self.connect and self._sim_ready() and registered:
                return [], "CONNECT 150000000"
            return [], "NO CARRIER"
        return [], "ERROR"

# firmware/modem.py under both interpreters: the line parsers, and the driver against a small
# scripted modem in memory (the pty + pyserial tests are tests/hal/test_modem.py, CPython only).
# Plain asserts; runs under MicroPython and CPython.
import fwtest

from firmware.modem import (
    MAX_LINE,
    Modem,
    ModemError,
    csq_to_dbm,
    parse_cops,
    parse_cpin,
    parse_csq,
    parse_reg,
    printable,
    sim_error,
)
from firmware.mqtt import sleep_ms

FAST = {"timeout_ms": 300, "sync_ms": 100, "sync_tries": 3, "reg_timeout_ms": 400,
        "reg_poll_ms": 30, "dial_timeout_ms": 500, "guard_ms": 50}


class ScriptedModem:
    """The port: answers each command at once from `answers` (info lines, final), echo on
    until ATE0. `extra` bytes go out before the next answer; `reboot_on` drops that command
    and sends RDY instead."""

    def __init__(self):
        self.out = bytearray()
        self.echo = True
        self.csq = 20
        self.stat = 1
        self.sim = "READY"
        self.extra = b""
        self.reboot_on = None
        self.silent = False
        self.seen = []
        self._cmd = b""

    def write(self, data):
        self._cmd += data
        while b"\r" in self._cmd:
            i = self._cmd.find(b"\r")
            line = self._cmd[:i].decode()
            self._cmd = self._cmd[i + 1:]
            self.seen.append(line)
            self._answer(line)

    async def read(self):
        while not self.out:
            await sleep_ms(2)
        data = bytes(self.out[:64])  # small reads: lines arrive in pieces
        self.out = self.out[64:]
        return data

    def _say(self, text):
        self.out.extend(b"\r\n" + text.encode() + b"\r\n")

    def _answer(self, line):
        if self.silent:
            return
        if self.reboot_on is not None and line == self.reboot_on:
            self.reboot_on = None
            self.echo = True
            self._say("RDY")
            self._say("+CPIN: READY")
            self._say("SMS DONE")
            return
        if self.echo:
            self.out.extend(line.encode() + b"\r")
        self.out.extend(self.extra)
        self.extra = b""
        info = []
        final = "OK"
        if line == "ATE0":
            self.echo = False
        elif line == "AT+CPIN?":
            if self.sim == "ABSENT":
                final = "+CME ERROR: SIM not inserted"
            else:
                info = ["+CPIN: " + self.sim]
        elif line == "AT+CSQ":
            info = ["+CSQ: %d,99" % self.csq]
        elif line == "AT+CREG?":
            info = ["+CREG: 1,%d" % self.stat]
        elif line == "AT+CEREG?":
            info = ["+CEREG: 1,%d" % self.stat]
        elif line == "AT+COPS?":
            info = ['+COPS: 0,0,"MobiFone",7']
        elif line == "ATD*99#":
            final = "CONNECT 150000000"
        for text in info:
            self._say(text)
        self._say(final)


def test_parsers():
    assert csq_to_dbm(0) == -113 and csq_to_dbm(31) == -51 and csq_to_dbm(99) is None
    assert parse_csq("+CSQ: 17,99") == 17
    assert parse_reg("+CREG: 0,5") == (False, 5)
    assert parse_reg("+CEREG: 3") == (True, 3)
    assert parse_reg('+CEREG: 1,"1A2B","01A2B3C4",7') == (True, 1)
    assert parse_cops('+COPS: 0,0,"Viettel",7') == "Viettel"
    assert parse_cops("+COPS: 0") is None
    assert parse_cpin("+CPIN: READY") == "ready" and parse_cpin("+CPIN: SIM PIN") == "pin"
    assert sim_error("SIM not inserted") == "absent" and sim_error(" 10") == "absent"
    assert printable(b"\xff\x00OK\xc3\xa9") == b"OK"


def test_start_poll_dial_with_echo_noise_and_urcs():
    async def main():
        port = ScriptedModem()
        port.extra = b"\xff\xfe\x00junk\r\n\r\nRING\r\n+CMTI: \"SM\",1\r\n"
        m = Modem(port, apn="m-wap", **FAST)
        st = await m.start()
        assert st["state"] == "ready", st
        assert (st["sim"], st["reg"], st["dbm"], st["operator"]) == (
            "ready", "home", -73, "MobiFone"), st
        assert 'AT+CGDCONT=1,"IP","m-wap"' in port.seen
        port.csq = 31
        port.extra = b"x" * (3 * MAX_LINE) + b"\r\n+CEREG: 5\r\n"  # noise, then a URC
        st = await m.poll()
        assert st["dbm"] == -51 and st["state"] == "ready", st
        assert len(m._buf) <= MAX_LINE
        assert (await m.dial()).startswith("CONNECT")
        assert m.status()["state"] == "dialled"

    fwtest.run(main())


def test_no_sim_timeout_and_reboot():
    async def main():
        port = ScriptedModem()
        port.sim = "ABSENT"
        m = Modem(port, **FAST)
        try:
            await m.start()
            raise AssertionError("started without a SIM")
        except ModemError as e:
            assert e.reason == "no_sim", e.args
        assert m.status()["state"] == "no_sim"
        port.sim = "READY"
        port.silent = True
        try:
            await m.start()
            raise AssertionError("started a silent modem")
        except ModemError as e:
            assert e.reason == "no_response", e.args
        port.silent = False
        port.reboot_on = "AT+CREG?"
        st = await m.start()
        assert st["state"] == "ready" and st["dbm"] == -73, st
        assert m.resets == 1
        assert port.echo is False  # ATE0 again after the reboot

    fwtest.run(main())

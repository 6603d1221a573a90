"""The 4G modem driver (firmware/modem.py) against a fake SIM7600 on a pty, through pyserial and
hal/rpi/serial_port.py: the same serial path a Raspberry Pi node uses.

Timeouts are short here (a few hundred ms) so that the failure cases stay fast; nothing asserts
on how long anything took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from support.fake_modem import FakeModem

from firmware.modem import MAX_LINE, Modem, ModemError, csq_to_dbm, parse_reg
from hal.rpi.serial_port import SerialPort

# Short on purpose (the fake answers in a millisecond or two); generous enough for a loaded CI box.
FAST: dict[str, Any] = {
    "timeout_ms": 400,
    "sync_ms": 150,
    "sync_tries": 3,
    "reg_timeout_ms": 600,
    "reg_poll_ms": 50,
    "dial_timeout_ms": 1000,
    "guard_ms": 100,
}


@pytest.fixture
def fake() -> Iterator[FakeModem]:
    f = FakeModem()
    try:
        yield f
    finally:
        f.close()


Scenario = Callable[[Modem], Awaitable[None]]


def run(fake: FakeModem, scenario: Scenario, **kw: Any) -> Modem:
    """Open the fake's pty with pyserial, run scenario(modem) on a fresh loop, close the port."""
    opts = dict(FAST)
    opts.update(kw)
    port = SerialPort(fake.device)
    modem = Modem(port, **opts)

    async def main() -> None:
        await asyncio.wait_for(scenario(modem), 10)

    try:
        asyncio.run(main())
    finally:
        port.close()
    return modem


def test_dbm_conversion_and_registration_lines() -> None:
    assert csq_to_dbm(0) == -113
    assert csq_to_dbm(20) == -73
    assert csq_to_dbm(31) == -51
    assert csq_to_dbm(99) is None
    # answers to AT+CREG? (<n>,<stat>...) against URCs (<stat> or <stat>,"<lac>",...)
    assert parse_reg("+CREG: 0,1") == (False, 1)
    assert parse_reg("+CEREG: 2,5,\"00C3\",\"0A1B2C3D\",7") == (False, 5)
    assert parse_reg("+CREG: 5") == (True, 5)
    assert parse_reg('+CREG: 1,"00C3","A1B2"') == (True, 1)


def test_normal_start_up(fake: FakeModem) -> None:
    fake.csq = 18
    fake.operator = "Viettel"
    got: dict[str, Any] = {}

    async def scenario(m: Modem) -> None:
        got["start"] = await m.start()

    m = run(fake, scenario, apn="v-internet")
    st = got["start"]
    assert st == m.status()
    assert st["state"] == "ready"
    assert st["sim"] == "ready"
    assert st["reg"] == "home"
    assert st["dbm"] == -113 + 2 * 18 == m.dbm()
    assert st["operator"] == "Viettel"
    assert st["apn"] == "v-internet"
    assert st["error"] is None
    # the modem was really set up: echo off, the APN in its PDP context
    assert fake.echo is False
    assert fake.apn == "v-internet"


def test_roaming_unknown_signal_and_other_operator(fake: FakeModem) -> None:
    fake.csq = 99
    fake.set_reg(5)
    fake.operator = "VNPT-Vinaphone"

    async def scenario(m: Modem) -> None:
        await m.start()

    st = run(fake, scenario, apn="m3-world").status()
    assert (st["state"], st["reg"], st["dbm"], st["operator"]) == (
        "ready", "roaming", None, "VNPT-Vinaphone")
    assert fake.apn == "m3-world"


def test_no_sim(fake: FakeModem) -> None:
    fake.sim = "absent"
    errors: list[ModemError] = []

    async def scenario(m: Modem) -> None:
        with pytest.raises(ModemError) as ei:
            await m.start()
        errors.append(ei.value)
        # poll() keeps reporting it rather than raising
        await m.poll()

    st = run(fake, scenario).status()
    assert errors[0].reason == "no_sim"
    assert st["state"] == "no_sim"
    assert st["sim"] == "absent"
    assert "SIM not inserted" in (st["error"] or "")


def test_sim_pin_entered_when_configured(fake: FakeModem) -> None:
    fake.sim = "pin"
    fake.pin = "4321"

    async def scenario(m: Modem) -> None:
        await m.start()

    st = run(fake, scenario, pin="4321").status()
    assert st["state"] == "ready" and st["sim"] == "ready"
    assert fake.pin_entered


def test_sim_pin_missing_or_wrong(fake: FakeModem) -> None:
    fake.sim = "pin"
    fake.pin = "4321"
    reasons: list[str] = []

    async def no_pin(m: Modem) -> None:
        with pytest.raises(ModemError) as ei:
            await m.start()
        reasons.append(ei.value.reason)

    st = run(fake, no_pin).status()
    assert st["state"] == "sim_locked" and st["sim"] == "pin"

    st = run(fake, no_pin, pin="0000").status()
    assert reasons == ["sim_locked", "pin_rejected"]
    assert st["state"] == "sim_locked"
    assert "incorrect password" in (st["error"] or "")
    assert not fake.pin_entered


def test_searching_then_denied(fake: FakeModem) -> None:
    fake.set_reg(2)
    seen: list[str] = []

    async def scenario(m: Modem) -> None:
        task = asyncio.ensure_future(m.start())
        # While start() waits for the network it reports "searching"...
        while m.status()["state"] != "searching":
            await asyncio.sleep(0.01)
        seen.append(m.status()["reg"])
        # ...then the network refuses the SIM.
        fake.set_reg(3)
        with pytest.raises(ModemError) as ei:
            await task
        seen.append(ei.value.reason)

    st = run(fake, scenario, reg_timeout_ms=5000).status()
    assert seen == ["searching", "denied"]
    assert st["state"] == "denied" and st["reg"] == "denied"
    assert st["operator"] is None
    assert st["sim"] == "ready" and st["dbm"] == -73


def test_searching_until_the_deadline_then_registered_later(fake: FakeModem) -> None:
    fake.set_reg(2)
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        with pytest.raises(ModemError) as ei:
            await m.start()
        seen.append((ei.value.reason, m.status()["state"]))
        fake.set_reg(1)
        seen.append((await m.poll())["state"])

    st = run(fake, scenario).status()
    assert seen == [("searching", "searching"), "ready"]
    assert st["reg"] == "home" and st["operator"] == "Viettel"


def test_not_searching(fake: FakeModem) -> None:
    fake.set_reg(0)

    async def scenario(m: Modem) -> None:
        with pytest.raises(ModemError) as ei:
            await m.start()
        assert ei.value.reason == "not_registered"

    assert run(fake, scenario).status()["reg"] == "none"


def test_silent_modem_times_out_and_driver_recovers(fake: FakeModem) -> None:
    fake.silent = True
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        with pytest.raises(ModemError) as ei:
            await m.start()
        seen.append(ei.value.reason)
        seen.append(dict(m.status()))
        fake.silent = False
        seen.append(await m.start())

    run(fake, scenario)
    assert seen[0] == "no_response"
    assert seen[1]["state"] == "no_response"
    assert "AT" in seen[1]["error"]
    assert seen[2]["state"] == "ready" and seen[2]["error"] is None


def test_timeout_mid_session_then_poll_recovers(fake: FakeModem) -> None:
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        await m.start()
        fake.silent = True
        seen.append(dict(await m.poll()))  # must not raise: telemetry keeps going
        fake.silent = False
        fake.csq = 25
        seen.append(dict(await m.poll()))

    m = run(fake, scenario)
    assert seen[0]["state"] == "no_response" and "no answer" in seen[0]["error"]
    assert seen[1]["state"] == "ready" and seen[1]["error"] is None
    assert seen[1]["dbm"] == -63
    assert m.timeouts >= 1


def test_garbage_bytes_are_ignored(fake: FakeModem) -> None:
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        # non-UTF-8 and control bytes, a partial line, a line of noise
        fake.garbage = b"\xff\xfe\x00\x80\x13\xc3(\r\n\xa0\xa1junk\r\n+CS"
        await m.start()
        seen.append(m.status())
        # a run of noise longer than any line the driver keeps, then a real answer
        fake.garbage = bytes(range(128, 256)) * 4 + b"\x00" * 100
        fake.csq = 10
        seen.append(dict(await m.poll()))
        # and answers that come a few bytes per read
        fake.dribble = True
        fake.csq = 31
        seen.append(dict(await m.poll()))

    m = run(fake, scenario)
    assert seen[0]["state"] == "ready" and seen[0]["dbm"] == -73
    assert seen[1]["state"] == "ready" and seen[1]["dbm"] == -93
    assert seen[2]["state"] == "ready" and seen[2]["dbm"] == -51
    assert seen[2]["operator"] == "Viettel"
    assert m.noise >= 2
    assert len(m._buf) <= MAX_LINE  # nothing piles up


def test_noise_without_line_ends_stays_bounded(fake: FakeModem) -> None:
    sizes: list[int] = []

    async def scenario(m: Modem) -> None:
        await m.start()
        read = m._port.read

        async def measured() -> bytes:
            sizes.append(len(m._buf))  # what the driver holds while it waits for more
            data: bytes = await read()
            return data

        m._port.read = measured
        # 8 KB of printable noise and no line end (a baud-rate mismatch looks like this),
        # then the real answer
        fake.garbage = b"x" * 8192
        fake.csq = 7
        sizes.clear()
        seen.append(dict(await m.poll()))

    seen: list[Any] = []
    m = run(fake, scenario)
    assert seen[0]["state"] == "ready" and seen[0]["dbm"] == -99
    assert len(sizes) > 8192 // 256  # it did read all of it...
    assert max(sizes) <= 2 * MAX_LINE  # ...without holding it
    assert m.noise >= 1


def test_late_answers_do_not_answer_the_next_command(fake: FakeModem) -> None:
    # AT+CSQ is answered after the driver gave up on it; the modem then answers the queued
    # sync ATs. None of that may pass for the answers of the commands that follow.
    fake.csq = 16
    polls: list[Any] = []

    async def scenario(m: Modem) -> None:
        await m.start()
        fake.slow("AT+CSQ", 700)
        for _ in range(5):
            polls.append(dict(await m.poll()))
            if polls[-1]["state"] == "ready":
                break

    run(fake, scenario)
    assert polls[-1]["state"] == "ready"
    for st in polls:
        if st["error"] is None:
            assert (st["dbm"], st["reg"], st["operator"]) == (-81, "home", "Viettel"), polls


def test_urcs_interleaved_are_not_taken_for_answers(fake: FakeModem) -> None:
    fake.csq = 21
    # URCs before and inside the answers of every step of start()
    fake.inject("AT+CPIN?", before=["RING"], within=["+CMTI: \"SM\",3"])
    fake.inject("AT+CSQ", before=["+CPIN: READY", "SMS DONE"], within=["PB DONE", "RING"])
    fake.inject("AT+CREG?", before=["+CREG: 1"], within=["+CREG: 1"])
    fake.inject("AT+CEREG?", before=["+CEREG: 1"], within=['+CEREG: 1,"00C3","0A1B2C3D",7'])
    fake.inject("AT+COPS?", before=["+CSQ: 5,99"], within=["+CMTI: \"ME\",1"])
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        seen.append(dict(await m.start()))
        # A registration URC updates what telemetry sees: roaming now (arriving in the middle
        # of the operator query, after the registration queries of this poll).
        fake.inject("AT+COPS?", within=["+CEREG: 5"])
        seen.append(dict(await m.poll()))

    run(fake, scenario)
    st = seen[0]
    assert st["state"] == "ready" and st["sim"] == "ready" and st["reg"] == "home"
    assert st["dbm"] == -113 + 42  # the +CSQ: 21, not the stray +CSQ: 5 before COPS
    assert st["operator"] == "Viettel"
    assert seen[1]["reg"] == "roaming" and seen[1]["state"] == "ready"


def test_registration_lost_by_urc(fake: FakeModem) -> None:
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        await m.start()
        fake.inject("AT+CSQ", within=["+CEREG: 2", "+CREG: 2"])
        fake.csq = 5
        # the fake itself still answers CREG?/CEREG? with 1; the URC is the news mid-command
        fake.creg = fake.cereg = 2
        seen.append(dict(await m.poll()))

    run(fake, scenario)
    assert seen[0]["state"] == "searching" and seen[0]["reg"] == "searching"
    assert seen[0]["operator"] is None and seen[0]["dbm"] == -103


def test_modem_resets_during_start(fake: FakeModem) -> None:
    fake.reset_on = "AT+CSQ"
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        seen.append(dict(await m.start()))

    m = run(fake, scenario)
    st = seen[0]
    assert st["state"] == "ready" and st["dbm"] == -73 and st["operator"] == "Viettel"
    assert m.resets == 1 and fake.boots == 1
    # set up again after the reboot: echo off, verbose errors, registration URCs, APN
    assert fake.echo is False and fake.cmee == 2 and fake.cereg_n == 1
    assert fake.apn == "v-internet"
    assert fake.commands().count("ATE0") == 2


def test_modem_resets_during_poll_with_pin(fake: FakeModem) -> None:
    fake.sim = "pin"
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        await m.start()
        fake.reset_on = "AT+CREG?"  # reboots: echo on, PIN needed again
        fake.apn = None  # and (on some firmwares) the PDP context forgotten
        fake.csq = 12
        seen.append(dict(await m.poll()))

    m = run(fake, scenario, pin="1234")
    assert fake.apn == "v-internet"  # set again after the reboot
    assert seen[0]["state"] == "ready" and seen[0]["sim"] == "ready"
    assert seen[0]["dbm"] == -89 and seen[0]["reg"] == "home"
    assert m.resets == 1
    assert fake.pin_entered and fake.echo is False


def test_modem_goes_silent_then_boots(fake: FakeModem) -> None:
    # Longer boot than a command's timeout: the poll that hits it reports no_response, the
    # next one finds the modem up again.
    fake.boot_ms = 700
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        await m.start()
        fake.reset_on = "AT+CSQ"
        seen.append(dict(await m.poll()))
        while fake.boots == 0:
            await asyncio.sleep(0.02)
        fake.csq = 14
        seen.append(dict(await m.poll()))

    m = run(fake, scenario)
    assert seen[0]["state"] == "no_response"
    assert seen[1]["state"] == "ready" and seen[1]["dbm"] == -85 and seen[1]["error"] is None
    assert m.resets == 1  # the RDY was seen (after the timeout) and counted
    assert fake.echo is False and fake.cereg_n == 1


def test_plain_error_and_cme_error(fake: FakeModem) -> None:
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        await m.start()
        for cmd in ("AT+NOSUCH", 'AT+CPIN="1111"'):  # ERROR; +CME ERROR: operation not allowed
            try:
                await m._cmd(cmd)
            except ModemError as e:
                seen.append((e.reason, e.detail))
        seen.append(dict(await m.poll()))  # and the session goes on

    run(fake, scenario)
    assert seen[0] == ("error", "ERROR")
    assert seen[1] == ("error", "+CME ERROR: operation not allowed")
    assert seen[2]["state"] == "ready"


def test_dial_connect(fake: FakeModem) -> None:
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        with pytest.raises(ModemError) as ei:
            await m.dial()  # not started
        seen.append(ei.value.reason)
        await m.start()
        seen.append(await m.dial())
        seen.append(dict(await m.poll()))  # no AT on a line that carries PPP

    m = run(fake, scenario)
    assert seen[0] == "not_ready"
    assert seen[1].startswith("CONNECT")
    assert seen[2]["state"] == "dialled" and seen[2]["operator"] == "Viettel"
    assert m.status()["state"] == "dialled"
    assert fake.ppp
    assert fake.ppp_bytes == b""  # the driver wrote nothing after CONNECT
    assert fake.commands()[-1] == "ATD*99#"


def test_back_to_commands_after_ppp(fake: FakeModem) -> None:
    seen: list[Any] = []

    async def scenario(m: Modem) -> None:
        await m.start()
        await m.dial()
        # PPP (network.PPP / pppd) let go of the line, but the modem is still in data mode
        m.ppp_closed()
        fake.csq = 9
        seen.append(dict(await m.poll()))
        seen.append(await m.dial())  # and it can dial again

    run(fake, scenario)
    assert seen[0]["state"] == "ready" and seen[0]["dbm"] == -95 and seen[0]["error"] is None
    assert seen[1].startswith("CONNECT")
    assert fake.ppp_bytes.startswith(b"AT\r+++")  # one AT went into the data call first
    assert "ATH" in fake.commands()


def test_dial_no_carrier(fake: FakeModem) -> None:
    fake.connect = False

    async def scenario(m: Modem) -> None:
        await m.start()
        with pytest.raises(ModemError) as ei:
            await m.dial()
        assert ei.value.reason == "no_carrier"

    st = run(fake, scenario).status()
    assert st["state"] == "ready" and "NO CARRIER" in (st["error"] or "")

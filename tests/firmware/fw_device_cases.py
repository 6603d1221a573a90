# The device's life over hal.sim with the real broker, under MicroPython and CPython: the
# watchdog resets a node whose long-lived loop hangs or whose event loop is blocked; K quick
# reboots start safe mode (no plan, no playback, OTA still works, telemetry says so) and a
# stable run clears the count; the local test button plays the test tone into the diary.
import fwdevice
import fwsim
import fwtest
from fwdevice import SEC, Host, Observer, image, ota_args
from fwsim import MIN

from firmware import protocol
from firmware.mqtt import sleep_ms, ticks_diff, ticks_ms
from firmware.node import FW_VERSION

WDT = {"wdt_ms": 400, "beat_slack_ms": 300, "stable_ms": 60000}


def _run(body, device, timeout_ms=40000, rate=1):
    async def main():
        srv = await fwsim.Server().start()
        host = Host("dev", srv.port, device, rate=rate)
        obs = await Observer(host.id).start()
        try:
            await body(srv, host, obs)
        finally:
            await obs.clear_plan()
            host.close()
            await obs.close()
            srv.close()
    fwtest.run(main(), timeout_ms)


async def _watchdog_reset(host, obs, why):
    assert await fwtest.until(lambda: host.boots == 2, 10000), "no reset"
    assert host.board.reset_cause() == "watchdog"
    (bite,) = host.events("watchdog")
    assert bite["silent_ms"] > WDT["wdt_ms"]
    assert [e["cause"] for e in host.events("reboot")] == ["watchdog"]
    assert await fwtest.until(lambda: (obs.telemetry() or {}).get("reset") == "watchdog",
                              10000), obs.telemetry()
    t = obs.telemetry()
    assert (t["reset"], t["reset_why"], t["safe_mode"]) == ("watchdog", why, False)


def test_watchdog_resets_a_node_whose_loop_hangs():
    async def body(srv, host, obs):
        async def hung_health():  # beats once, then waits on something that never comes
            host.node.beat("health", 100)
            await fwtest.asyncio.Event().wait()

        def break_it(dev):
            if host.boots == 1:
                dev.node._health_loop = hung_health
        host.before_run = break_it
        host.boot()
        await fwdevice.reported(host, obs)
        assert host.board.reset_cause() == "power"
        await _watchdog_reset(host, obs, "health")
        # The restarted node is healthy: its watchdog keeps being fed.
        await sleep_ms(3 * WDT["wdt_ms"])
        assert host.boots == 2 and len(host.events("watchdog")) == 1
    _run(body, WDT)


def test_watchdog_resets_a_node_whose_event_loop_is_blocked():
    async def body(srv, host, obs):
        host.boot()
        await fwdevice.reported(host, obs)

        async def busy():  # a synchronous loop: no other task runs meanwhile
            t0 = ticks_ms()
            while ticks_diff(ticks_ms(), t0) < 3 * WDT["wdt_ms"]:
                pass
        fwtest.asyncio.create_task(busy())
        await _watchdog_reset(host, obs, "event loop blocked")
    _run(body, WDT)


def test_quick_reboots_start_safe_mode_until_a_stable_run():
    async def body(srv, host, obs):
        # The OTA image is made first, while the test's 320K heap is fresh: made after five
        # boots, its 3000-byte buffer once failed with a MemoryError in a full run.
        data = image(3000)
        now = host.clock.time_ms()
        srv.routes["/live"] = ("live", 7, 3600)
        items = [fwsim.item("relay", now - MIN, now + 1200, src=[srv.url("/live")])]
        await obs.publish_plan(fwsim.plan_bytes(now, now, items, node=host.id))
        host.boot()
        for _ in range(3):  # three boots that end within seconds (power cuts)
            await sleep_ms(300)
            await host.power_cut()
        # The fourth starts in safe mode: network, telemetry and OTA only.
        assert host.node.safe_mode == "3 quick reboots (last: power)"
        opened = len(host.events("audio_open"))  # (the relay aired in the boots before)
        assert host.node.plan is not None  # kept in flash, not followed
        await fwdevice.reported(host, obs)
        t = obs.telemetry()
        assert (t["safe_mode"], t["safe_why"]) == (True, "3 quick reboots (last: power)")
        cid = await obs.send("test_tone", {"seconds": 1}, host.clock.time_ms())
        fin = await obs.final(cid)
        assert (fin["status"], fin["reason"]) == ("rejected", protocol.R_SAFE_MODE)
        host.board.press_test_button()
        await sleep_ms(1500)
        assert len(host.events("audio_open")) == opened and not host.board.amp.is_on()
        assert "plan" not in host.node.beats and host.node.on_air is None
        # A new plan is not taken in safe mode (nor acked): it waits, retained, on the broker.
        await sleep_ms(max(0, now + 1300 - host.clock.time_ms()))  # the old relay has ended
        items2 = [fwsim.item("relay2", now - MIN, now + 60 * MIN, src=[srv.url("/live")])]
        await obs.publish_plan(fwsim.plan_bytes(now + 1, now, items2, node=host.id))
        await sleep_ms(500)
        assert host.node.plan["ver"] == now and host.node.on_air is None
        assert not [a for a in obs.of(protocol.ACK) if a["id"] == "plan-%d" % (now + 1)]
        # OTA still works; the new image starts counting afresh (not in safe mode).
        srv.routes["/fw.img"] = data
        cid = await obs.send("ota", ota_args(srv, "/fw.img", data, "0.2.0"),
                             host.clock.time_ms())
        fin = await obs.final(cid)
        assert fin["status"] == "done", fin
        assert await fwtest.until(lambda: host.boots == 5, 5000), host.boots
        # (What the boots were, should this fail again: it once did in a full CI run only.)
        assert host.node.safe_mode is None and host.node.fw == "0.2.0", (
            host.node.safe_mode, host.node.fw, host.boot_file(), host.events("reboot"),
            host.events("ota_staged"), host.events("ota_boot"))
        assert await fwtest.until(lambda: not host.board.ota.on_trial(), 8000), "not confirmed"
        # ... and follows its plan again: the new plan is taken, its relay on air joined.
        assert await fwtest.until(lambda: host.node.on_air == "relay2", 8000), host.node.plan
        assert await fwtest.until(lambda: len(host.events("audio_open")) > opened, 8000)
        # A stable run clears the count; then quick reboots start counting from zero.
        assert host.boot_file()["quick"] == 1
        assert await fwtest.until(lambda: host.boot_file()["quick"] == 0, 4000)
        await host.power_cut()
        assert host.node.safe_mode is None
        assert host.boot_file()["quick"] == 1
    _run(body, {"boot_loop_k": 3, "stable_ms": 2000, "trial_ms": 8000})


def test_local_test_button_plays_the_tone_into_the_diary():
    async def body(srv, host, obs):
        host.boot()
        await fwdevice.reported(host, obs)
        host.board.press_test_button()
        host.board.press_test_button()  # a second press while it plays changes nothing
        ok = await fwtest.until(lambda: [r for r in obs.of(protocol.ASRUN)
                                         if r["trigger"] == "local test"], 15000)
        assert ok, obs.of(protocol.ASRUN)
        (rec,) = [r for r in obs.of(protocol.ASRUN) if r["trigger"] == "local test"]
        assert (rec["kind"], rec["outcome"], rec["cmd"]) == ("test", "aired", None)
        assert rec["title"] == "Thử loa: âm thử %d Hz" % protocol.TONE_HZ_DEFAULT
        assert rec["end"] - rec["start"] >= protocol.TONE_SECONDS_DEFAULT * SEC - 200
        (opened,) = host.events("audio_open")
        assert opened["label"].startswith("local-") and opened["rate"] == 16000
        on = host.events("amp_on")
        off = host.events("amp_off")
        assert len(on) == 1 and len(off) == 1, (on, off)
        assert on[0]["at"] <= opened["at"] - 250  # the pre-roll
        assert host.node.fw == FW_VERSION
    _run(body, {}, rate=10)

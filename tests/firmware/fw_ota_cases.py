# OTA over hal.sim with the real broker and a local HTTP server, under MicroPython and CPython:
# a good image is adopted (runs the new slot, reports the new version, confirms, stays after
# another reboot); refused images (bad signature, wrong hash or size, wrong board, not newer,
# download failure) leave the running image as it was; an image that never reports healthy is
# rolled back after the trial deadline.
import fwdevice
import fwsim
import fwtest
from fwdevice import SEC, Host, Observer, image, ota_args

from firmware import protocol
from firmware.node import FW_VERSION

TRIAL = {"trial_ms": 2500, "wdt_ms": 2000, "stable_ms": 60000}


def _run(body, timeout_ms=40000, **device):
    async def main():
        srv = await fwsim.Server().start()
        dev = dict(TRIAL)
        for k in device:
            dev[k] = device[k]
        host = Host("ota", srv.port, dev)
        obs = await Observer(host.id).start()
        try:
            host.boot()
            await fwdevice.reported(host, obs)
            await body(srv, host, obs)
        finally:
            host.close()
            await obs.close()
            srv.close()
    fwtest.run(main(), timeout_ms)


def test_good_image_is_adopted_and_kept():
    async def body(srv, host, obs):
        data = image(3000)
        srv.routes["/fw/0.2.0.img"] = data
        assert host.node.fw == FW_VERSION and host.board.ota.running() == "slot-a"
        cid = await obs.send("ota", ota_args(srv, "/fw/0.2.0.img", data, "0.2.0"),
                             host.clock.time_ms())
        fin = await obs.final(cid)
        assert (fin["status"], fin.get("version"), fin.get("reboot")) == ("done", "0.2.0", True)
        assert await fwtest.until(lambda: host.boots == 2, 5000)
        # The new slot boots on trial, holds the image, and the node says the new version.
        assert host.board.ota.running() == "slot-b" and host.node.fw == "0.2.0"
        with open(host.dir + "/ota/b.img", "rb") as f:
            assert fwsim.sha(f.read(4000)) == fwsim.sha(data)
        await fwdevice.reported(host, obs, "0.2.0")
        assert await fwtest.until(lambda: not host.board.ota.on_trial(), 5000), "not confirmed"
        assert await fwtest.until(
            lambda: (obs.telemetry() or {}).get("ota", {}).get("state") == "confirmed", 5000)
        t = obs.telemetry()
        assert t["fw"] == "0.2.0" and t["ota"]["slot"] == "slot-b" and not t["ota"]["trial"]
        births = [m for m in obs.of(protocol.STATE) if m["online"]]
        assert births[-1]["fw"] == "0.2.0"
        assert [e["version"] for e in host.events("ota_confirm")] == ["0.2.0"]
        # Another reboot stays on the confirmed image.
        n = len(obs.of(protocol.TELEMETRY))
        host.board.reboot()
        assert await fwtest.until(lambda: host.boots == 3, 5000)
        assert host.board.ota.running() == "slot-b" and not host.board.ota.on_trial()
        await fwdevice.reported(host, obs, "0.2.0", after=n)
        assert host.events("ota_rollback") == []
    _run(body)


def test_refused_images_leave_the_running_image():
    async def body(srv, host, obs):
        data = image(3000)
        srv.routes["/fw/good.img"] = data
        srv.routes["/fw/other.img"] = image(3000, b"tampered")
        srv.routes["/fw/short.img"] = data[:2500]
        now = host.clock.time_ms
        forged = protocol.Signer(protocol.node_key("22" * 32))
        cases = [
            (ota_args(srv, "/fw/good.img", data, "0.3.0", signer=forged),
             protocol.R_SIGNATURE),
            (ota_args(srv, "/fw/other.img", data, "0.3.0"), protocol.R_BAD_HASH),
            (ota_args(srv, "/fw/short.img", data, "0.3.0"), protocol.R_BAD_SIZE),
            (ota_args(srv, "/fw/good.img", data, "0.3.0", board="esp32"),
             protocol.R_WRONG_BOARD),
            (ota_args(srv, "/fw/good.img", data, FW_VERSION), protocol.R_NOT_NEWER),
            (ota_args(srv, "/fw/good.img", data, "0.0.9"), protocol.R_NOT_NEWER),
            (ota_args(srv, "/fw/missing.img", data, "0.3.0"), protocol.R_DOWNLOAD),
        ]
        for args, reason in cases:
            cid = await obs.send("ota", args, now())
            fin = await obs.final(cid)
            assert (fin["status"], fin.get("reason")) == ("failed", reason), (reason, fin)
        # A manifest altered after signing (a bigger version) fails its signature too.
        args = ota_args(srv, "/fw/good.img", data, "0.3.0")
        args["version"] = "9.0.0"
        fin = await obs.final(await obs.send("ota", args, now()))
        assert fin.get("reason") == protocol.R_SIGNATURE
        # Nothing forged was even downloaded; nothing switched; no reboot.
        assert srv.hits.get("/fw/good.img", 0) == 0
        assert host.boots == 1 and host.board.reboots == 0
        st = host.board.ota.state
        assert (st["run"], st["boot"], st["trial"]) == ("a", "a", False)
        assert host.node.fw == FW_VERSION and host.events("ota_staged") == []
        # A url off the allow-list is refused before anything runs.
        bad = ota_args(srv, "/fw/good.img", data, "0.3.0")
        bad["url"] = "http://10.9.9.9:80/x.img"
        fin = await obs.final(await obs.send("ota", bad, now()))
        assert (fin["status"], fin["reason"]) == ("rejected", protocol.R_HOST)
        await host.node._send_telemetry()
        assert await fwtest.until(
            lambda: (obs.telemetry() or {}).get("ota", {}).get("reason") == protocol.R_HOST
            or (obs.telemetry() or {}).get("ota", {}).get("state") == "failed", 3000)
        t = obs.telemetry()
        assert t["fw"] == FW_VERSION and t["ota"]["slot"] == "slot-a"
    _run(body)


def test_image_that_never_reports_healthy_is_rolled_back():
    async def body(srv, host, obs):
        data = image(3000)
        srv.routes["/fw/0.2.0.img"] = data
        host.link_up = False  # the new image never reaches the broker
        cid = await obs.send("ota", ota_args(srv, "/fw/0.2.0.img", data, "0.2.0"),
                             host.clock.time_ms())
        assert (await obs.final(cid))["status"] == "done"
        assert await fwtest.until(lambda: host.boots == 2, 5000)
        assert host.node.fw == "0.2.0" and host.board.ota.on_trial()
        host.link_up = True  # what boots after the rollback has its link again
        # Past the trial deadline the node reboots; the board goes back to the old slot.
        assert await fwtest.until(lambda: host.boots == 3, 3 * TRIAL["trial_ms"]), host.boots
        assert host.board.ota.running() == "slot-a" and not host.board.ota.on_trial()
        assert host.node.fw == FW_VERSION
        (rb,) = host.events("ota_rollback")
        assert (rb["failed"], rb["slot"]) == ("0.2.0", "a")
        assert host.events("ota_confirm") == []
        assert await fwtest.until(
            lambda: (obs.telemetry() or {}).get("ota", {}).get("state") == "rolled_back", 8000)
        assert obs.telemetry()["fw"] == FW_VERSION
        ota = obs.telemetry()["ota"]
        assert (ota["state"], ota["version"], ota["reason"]) == ("rolled_back", "0.2.0",
                                                                 "not_healthy")
        assert obs.telemetry()["reset"] == "soft"
    _run(body, 40000)


def test_manifest_checks_are_the_headends():
    # The manifest bytes the headend signs: canonical, typed "ota", nothing else.
    m = protocol.sign_ota_manifest(fwdevice.SIGNER, "1.2.3", "esp32", 5, "ab" * 32)
    assert protocol.ota_manifest_bytes(m) == (
        b'{"board":"esp32","sha256":"' + b"ab" * 32 + b'","size":5,"t":"ota","version":"1.2.3"}')
    args = dict(m)
    args["url"] = "http://h:1/x"
    assert protocol.args_error("ota", args) is None
    for k, v in (("version", "1.x"), ("size", 0), ("sha256", "AB" * 32), ("sig", "z"),
                 ("board", ""), ("extra", 1)):
        bad = dict(args)
        bad[k] = v
        assert protocol.args_error("ota", bad) == k, (k, protocol.args_error("ota", bad))
    assert protocol.parse_version("0.10.0") > protocol.parse_version("0.9.9")
    assert SEC == 1000

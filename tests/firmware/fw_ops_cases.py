# Node health ops over hal.sim, offline (no broker): test_tone (a locally generated sine with
# the usual pre-roll and post-roll, in the diary), amp by hand, reboot, the full report, and the
# amplifier fault / temperature / signal in telemetry. Runs under MicroPython and CPython.
import json

import fwsim
import fwtest

from firmware import protocol
from firmware.node import AMP_POSTROLL_MS, AMP_PREROLL_MS, Node

SEC = 1000


def make_node(srv, rate=5, epoch=None, **extra):
    node = fwsim.make_node(srv.port, epoch or fwsim.day_noon_utc(), rate, **extra)
    node.acks = []  # (id, status, reason, extra)
    node.rejected = []  # (id, reason, detail)
    node.sent = []  # (leaf, message) published

    async def ack(cid, status, reason=None, detail=None, extra=None):
        node.acks.append((cid, status, reason, extra or {}))

    def reject(err):
        node.rejected.append((err.cmd_id, err.reason, err.detail))

    async def publish(leaf, msg, qos=1):
        node.sent.append((leaf, msg))
        return True

    node._ack = ack
    node._reject = reject
    node._publish = publish
    return node


def run_node(body, rate=5, epoch=None, timeout_ms=30000, **extra):
    async def main():
        srv = await fwsim.Server().start()
        node = make_node(srv, rate, epoch, **extra)
        node.start_plan()
        try:
            await body(srv, node)
        finally:
            srv.close()

    fwtest.run(main(), timeout_ms)


def statuses(node, cid):
    return [a[1] for a in node.acks if a[0] == cid]


def final(node, cid):
    for a in node.acks:
        if a[0] == cid and a[1] in (protocol.DONE, protocol.FAILED):
            return a
    return None


async def finished(node, cid, timeout_ms=15000):
    ok = await fwtest.until(lambda: final(node, cid) is not None, timeout_ms, 5)
    assert ok, (cid, node.acks, node.rejected)
    return final(node, cid)


def telemetry_sent(node):
    return [m for leaf, m in node.sent if leaf == protocol.TELEMETRY]


def tone_stats(path):
    """(bytes, rising edges, highest positive top byte) of a 16-bit little-endian PCM file,
    read 1 KB at a time (the MicroPython test heap is small). The sign bit is the top bit of
    every odd byte; a sine has one negative -> non-negative transition per period."""
    size = edges = peak = 0
    neg = False
    with open(path, "rb") as f:
        while True:
            buf = f.read(1024)
            if not buf:
                break
            size += len(buf)
            for i in range(1, len(buf), 2):
                b = buf[i]
                now_neg = b >= 128
                if neg and not now_neg:
                    edges += 1
                if not now_neg and b > peak:
                    peak = b
                neg = now_neg
    return size, edges, peak


def test_args_of_the_new_ops():
    err = protocol.args_error
    assert err("test_tone", {}) is None
    assert err("test_tone", {"seconds": 60, "hz": 200}) is None
    assert err("test_tone", {"seconds": 1, "hz": 4000}) is None
    assert err("test_tone", {"seconds": 0}) == "seconds"
    assert err("test_tone", {"seconds": 61}) == "seconds"
    assert err("test_tone", {"seconds": True}) == "seconds"
    assert err("test_tone", {"seconds": "5"}) == "seconds"
    assert err("test_tone", {"hz": 199}) == "hz"
    assert err("test_tone", {"hz": 4001}) == "hz"
    assert err("test_tone", {"hz": 1000, "volume": 3}) == "volume"
    assert err("amp", {"on": True}) is None and err("amp", {"on": False}) is None
    assert err("amp", {}) == "on" and err("amp", {"on": 1}) == "on"
    assert err("amp", {"on": True, "x": 1}) == "x"
    assert err("reboot", {}) is None and err("reboot", {"now": True}) == "now"
    for op in ("test_tone", "amp", "reboot"):
        assert op in protocol.OPS


def test_test_tone_plays_a_sine_with_pre_and_post_roll():
    async def body(srv, node):
        cid = fwsim.command(node, "test_tone", {"seconds": 1, "hz": 440}, 1)
        done = await finished(node, cid)
        assert done[1] == protocol.DONE and done[3]["outcome"] == "aired", done
        assert statuses(node, cid) == ["accepted", "started", "done"]
        opens = [e for e in fwsim.events(node) if e["event"] == "audio_open"]
        assert len(opens) == 1 and opens[0]["label"] == cid
        assert (opens[0]["rate"], opens[0]["bits"], opens[0]["channels"]) == (16000, 16, 1)
        [rec] = fwsim.recordings(node)
        size, edges, peak = tone_stats(rec["file"])
        assert size == 32000, size  # one second of 16 kHz 16-bit mono
        assert 439 <= edges <= 441, edges
        assert peak >= 0x3F, peak  # peaks near -6 dBFS
        ev = [(e["event"], e["at"]) for e in fwsim.events(node)
              if e["event"] in ("amp_on", "amp_off", "audio_open", "audio_close")]
        assert [e[0] for e in ev] == ["amp_on", "audio_open", "audio_close", "amp_off"], ev
        assert ev[1][1] - ev[0][1] >= AMP_PREROLL_MS - 20, ev
        assert ev[3][1] - ev[2][1] >= AMP_POSTROLL_MS - 20, ev
        [r] = fwsim.records(node)
        assert r["cmd"] == cid and r["trigger"] == "manual" and r["kind"] == "test", r
        assert r["title"] == "Thử loa: âm thử 440 Hz" and r["outcome"] == "aired", r
        assert 900 <= r["end"] - r["start"] <= 1300, r
        assert node.playing is None and not node.board.amp.is_on()

    run_node(body)


def test_test_tone_defaults_and_bad_args():
    async def body(srv, node):
        bad = [({"seconds": 0}, "seconds"), ({"seconds": 61}, "seconds"),
               ({"hz": 100}, "hz"), ({"hz": 5000}, "hz"), ({"hz": "1000"}, "hz"),
               ({"seconds": 2, "url": "x"}, "url")]
        for i, (args, field) in enumerate(bad):
            fwsim.command(node, "test_tone", args, i + 1)
            assert node.rejected[-1] == ("c%d" % (i + 1), "bad_args", field), node.rejected
        assert fwsim.recordings(node) == [] and not node.board.amp.is_on()
        cid = fwsim.command(node, "test_tone", {}, 10)  # 5 s at 1000 Hz
        await fwtest.until(lambda: "started" in statuses(node, cid), 5000, 5)
        fwsim.command(node, "stop", {}, 11)
        done = await finished(node, cid)
        assert done[1] == protocol.FAILED and done[3]["outcome"] == "partial", done
        r = fwsim.records(node)[-1]
        assert r["title"] == "Thử loa: âm thử 1000 Hz" and r["reason"] == "stopped", r
        assert r["media"] == "tone:1000Hz"

    run_node(body)


def test_test_tone_refused_in_quiet_hours_and_during_an_emergency():
    night = fwsim.day_noon_utc() + 11 * 3600 * SEC  # 23:00 at UTC+7

    async def body(srv, node):
        fwsim.command(node, "test_tone", {"seconds": 1}, 1)
        assert node.rejected == [("c1", "quiet_hours", "")], node.rejected
        assert node.seq.value == 1 and fwsim.recordings(node) == []

    run_node(body, epoch=night)

    async def body2(srv, node):
        srv.routes["/em.wav"] = fwsim.wav_file(10)
        em = fwsim.command(node, "emergency", {"url": srv.url("/em.wav")}, 1)
        await fwtest.until(lambda: node.emergency is not None, 2000, 5)
        fwsim.command(node, "test_tone", {"seconds": 1}, 2)
        fwsim.command(node, "reboot", {}, 3)
        assert node.rejected == [("c2", "busy_emergency", em), ("c3", "busy_emergency", em)]
        assert node.board.reboots == 0

    run_node(body2, rate=50)


def test_quiet_hours_before_the_first_plan_are_the_configured_ones():
    night = fwsim.day_noon_utc() + 11 * 3600 * SEC  # 23:00 at UTC+7
    late = [23 * 60 + 30, 5 * 60, 420]  # the commune's: 23:30 to 05:00

    async def body(srv, node):
        assert node.quiet == late
        fwsim.command(node, "test_tone", {"seconds": 1}, 1)
        assert (await finished(node, "c1"))[1] == protocol.DONE, node.acks
        assert node.rejected == [] and len(fwsim.recordings(node)) == 1

    run_node(body, rate=20, epoch=night, quiet=late)

    async def bad(srv, node):  # a config value the node cannot use: the default
        assert node.quiet == [1305, 300, 420]
        fwsim.command(node, "test_tone", {"seconds": 1}, 1)
        assert node.rejected == [("c1", "quiet_hours", "")], node.rejected

    for wrong in ([23 * 60, 1440, 420], "23:30-05:00", [1, 2]):
        run_node(bad, epoch=night, quiet=wrong)


def test_test_tone_pre_empts_a_play():
    async def body(srv, node):
        srv.routes["/long.wav"] = fwsim.wav_file(30)
        play = fwsim.command(node, "play", {"url": srv.url("/long.wav")}, 1)
        await fwtest.until(lambda: "started" in statuses(node, play), 5000, 5)
        tone = fwsim.command(node, "test_tone", {"seconds": 1, "hz": 1000}, 2)
        assert (await finished(node, tone))[1] == protocol.DONE
        # The cut play's record is written after the tone has started (flash writes wait for
        # the next item): on a loaded machine it can come after the tone's done.
        await fwtest.until(lambda: len(fwsim.records(node)) >= 2, 5000, 5)
        r = {x["cmd"]: x for x in fwsim.records(node)}
        assert (r[play]["outcome"], r[play]["reason"]) == ("partial", "pre-empted by command")
        assert r[tone]["outcome"] == "aired"
        amp = [e["event"] for e in fwsim.events(node) if e["event"].startswith("amp")]
        assert amp == ["amp_on", "amp_off"], amp  # handed over: no gap between them

    run_node(body, rate=2)  # 30 s of play last 15 s real: the tone cuts in even when loaded


def test_amp_by_hand():
    async def body(srv, node):
        on = fwsim.command(node, "amp", {"on": True}, 1)
        done = await finished(node, on)
        assert done[1] == protocol.DONE and done[3]["amp"] is True, done
        assert done[3]["amp_ma"] == 850 and done[3]["amp_fault"] is False, done
        assert node.board.amp.is_on()
        off = fwsim.command(node, "amp", {"on": False}, 2)
        done = await finished(node, off)
        assert done[3]["amp"] is False and done[3]["amp_ma"] == 0, done
        for i, args in enumerate(({}, {"on": 1}, {"on": True, "x": 1})):
            fwsim.command(node, "amp", args, 3 + i)
        assert [r[1] for r in node.rejected] == ["bad_args"] * 3, node.rejected
        # not off while something is on air
        tone = fwsim.command(node, "test_tone", {"seconds": 2}, 10)
        await fwtest.until(lambda: "started" in statuses(node, tone), 5000, 5)
        fwsim.command(node, "amp", {"on": False}, 11)
        assert node.rejected[-1] == ("c11", "on_air", tone), node.rejected
        assert node.board.amp.is_on()
        assert (await finished(node, tone))[1] == protocol.DONE

    run_node(body)


def test_amp_fault_temperature_and_signal_in_telemetry():
    async def body(srv, node):
        board = node.board
        tel = node.telemetry()
        assert tel["amp_fault"] is False and tel["amp_ma"] == 0 and tel["temp_c"] == 38
        assert tel["signal_dbm"] == -71 and tel["link"] == "sim"
        # The headend judges silence by the node's own period (2 of them: offline).
        assert tel["telemetry_s"] == 300 and tel["board"] == "sim"
        at0 = tel["at"]
        board.set_fault(amp_fault=True, temp_c=71, signal_dbm=-109, clock_offset_ms=3600 * SEC)
        tel = node.telemetry()
        assert tel["temp_c"] == 71 and tel["signal_dbm"] == -109
        assert tel["at"] - at0 >= 3600 * SEC
        assert tel["amp_fault"] is False  # the amplifier is off: nothing to judge yet
        # The amplifier goes on and draws nothing: telemetry says so at once
        on = fwsim.command(node, "amp", {"on": True}, 1)
        done = await finished(node, on)
        assert done[3]["amp_fault"] is True and done[3]["amp_ma"] == 0, done
        await fwtest.until(lambda: telemetry_sent(node), 2000, 5)
        [t] = telemetry_sent(node)
        assert t["amp_fault"] is True and t["amp"] is True and t["amp_ma"] == 0, t
        # switched off the verdict stands; it clears when the amplifier next draws current
        await finished(node, fwsim.command(node, "amp", {"on": False}, 2))
        board.set_fault(amp_fault=False)
        assert node.telemetry()["amp_fault"] is True
        assert len(telemetry_sent(node)) == 1
        tone = fwsim.command(node, "test_tone", {"seconds": 1}, 3)
        await finished(node, tone)
        sent = telemetry_sent(node)
        assert len(sent) == 2 and sent[1]["amp_fault"] is False and sent[1]["amp_ma"] == 850

    run_node(body)


def test_a_tone_on_a_silent_amplifier_says_so_when_it_starts():
    async def body(srv, node):
        node.board.set_fault(amp_fault=True)  # on, it draws nothing: the fuse has blown
        cid = fwsim.command(node, "test_tone", {"seconds": 1}, 1)
        done = await finished(node, cid)
        [started] = [a for a in node.acks if a[0] == cid and a[1] == protocol.STARTED]
        # The headend's emergency page counts a village only when it is heard.
        assert started[2] == protocol.R_AMP_FAULT, started
        assert (done[1], done[2]) == (protocol.FAILED, protocol.R_AMP_FAULT), done
        [r] = fwsim.records(node)
        assert (r["outcome"], r["reason"]) == ("failed", protocol.R_AMP_FAULT), r

    run_node(body)


def test_full_report():
    async def body(srv, node):
        st = node.board.storage
        for i in range(30):
            st.write("m-%064x" % i, b"x" * 10)
        node.pending = [{"rid": 5000 + i} for i in range(60)]  # as if the headend were away
        cid = fwsim.command(node, "report", {}, 1)
        await finished(node, cid)
        [msg] = telemetry_sent(node)
        assert msg["full"] is True and msg["node"] == fwsim.NODE and "amp_fault" in msg
        assert len(msg["cache"]) == protocol.REPORT_MAX_CACHE and msg["cache_n"] == 30
        assert msg["cache"][0] == "%064x" % 0
        rids = [r["rid"] for r in node.pending]
        assert msg["pending_rids"] == rids[:protocol.REPORT_MAX_RIDS]
        cfg = msg["config"]
        assert cfg["media_hosts"] == node.config["media_hosts"] and cfg["quiet"] == node.quiet
        assert cfg["broker"]["port"] == 1 and cfg["cache_bytes"] == 200000
        raw = protocol.encode(msg)
        assert b'"key"' not in raw and b"password" not in raw and fwsim.KEY.encode() not in raw
        assert len(raw) < protocol.MAX_PAYLOAD, len(raw)
        assert "full" not in node.telemetry()  # the periodic telemetry stays short

    run_node(body)


def test_reboot_stops_cleanly_flushes_and_resets():
    async def body(srv, node):
        fwsim.command(node, "reboot", {"in": 5}, 1)
        assert node.rejected == [("c1", "bad_args", "in")]
        hooked = []
        node.board.on_reboot = lambda: hooked.append(node.clock.time_ms())
        tone = fwsim.command(node, "test_tone", {"seconds": 10}, 2)
        await fwtest.until(lambda: "started" in statuses(node, tone), 5000, 5)
        cid = fwsim.command(node, "reboot", {}, 3)
        ok = await fwtest.until(lambda: node.board.reboots == 1, 5000, 5)
        assert ok and hooked, (node.acks, node.board.reboots)
        assert statuses(node, cid) == ["accepted", "done"]
        assert final(node, tone)[3]["outcome"] == "partial"
        ev = [e["event"] for e in fwsim.events(node)]
        assert ev[-1] == "reboot" and ev[-2] == "amp_off", ev
        # what must survive is in flash: a node booting from it has the record and the seq
        stored = json.loads(node.board.storage.read("asrun.json"))
        assert stored[-1]["cmd"] == tone and stored[-1]["reason"] == "stopped by reboot"
        again = Node(node.board, node.config)
        assert again.seq.value == 3 and again.session_no == node.session_no
        assert [r["rid"] for r in again.pending] == [r["rid"] for r in node.pending]

    run_node(body)


def test_periodic_telemetry_is_short_until_something_changes():
    async def body(srv, node):
        node.sent = []
        await node._send_telemetry(short_ok=True)  # the first is whole
        await node._send_telemetry(short_ok=True)  # nothing happened: the moving readings
        node.board.set_fault(temp_c=52, signal_dbm=-90)  # readings move: still short
        await node._send_telemetry(short_ok=True)
        node.volume = 40  # something happened: whole again
        await node._send_telemetry(short_ok=True)
        await node._send_telemetry()  # on connect, an amplifier fault: always whole
        msgs = [m for leaf, m in node.sent if leaf == protocol.TELEMETRY]
        assert [bool(m.get("part")) for m in msgs] == [False, True, True, False, False], msgs
        short = msgs[2]
        assert short["temp_c"] == 52 and short["signal_dbm"] == -90 and "volume" not in short
        assert short["node"] == node.id and short["at"] > 0
        assert msgs[3]["volume"] == 40
        # The short message is what keeps a day's traffic small.
        assert len(json.dumps(short)) * 3 < len(json.dumps(msgs[0])), (short, msgs[0])
        # An hour on, the whole message goes even if nothing changed.
        node._told_at -= 3600 * SEC + 1
        await node._send_telemetry(short_ok=True)
        assert "part" not in node.sent[-1][1]

    run_node(body)

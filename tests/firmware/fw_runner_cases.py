# A node over hal.sim following its plan on a fast SimClock, with media and live streams from a
# local HTTP server: items start on time, joined late they are time-anchored, relays fail over
# primary -> backup -> fallback, an emergency pre-empts a relay which then resumes, quiet hours.
# Runs under MicroPython and CPython.
import asyncio
import gc
import random

import fwsim
import fwtest
from fwsim import MIN, item

from firmware import protocol
from firmware.node import Node
from hal.sim import SimBoard, SimClock

SEC = 1000
TOL = 2500  # simulated ms: at rate 50 one real millisecond is 50 simulated


def near(a, b, tol=TOL):
    return a is not None and abs(a - b) <= tol


def run_node(body, epoch=None, rate=50, **extra):
    async def main():
        srv = await fwsim.Server().start()
        node = fwsim.make_node(srv.port, epoch or fwsim.day_noon_utc(), rate, **extra)
        node.start_plan()
        try:
            await body(srv, node)
        finally:
            srv.close()

    fwtest.run(main(), 60000)


def accept(node, ver, items, fallback=None, quiet=None):
    now = node.clock.time_ms()
    node._on_plan(fwsim.plan_bytes(ver, now, items, quiet, fallback))
    assert node.plan is not None and node.plan["ver"] == ver, node.rejected


def command(node, op, args, seq):
    now = node.clock.time_ms()
    cmd = protocol.make_command(fwsim.SIGNER, "c%d" % seq, fwsim.NODE, seq, now, now + MIN,
                                op, args)
    node._on_command(protocol.encode_command(cmd))


def starts_at_pattern(data, expected_k, slack=6):
    """The recording starts at byte k of the media's pattern, k within slack of expected."""
    for k in range(max(0, expected_k - slack), expected_k + slack + 1):
        if data[:20] == fwsim.pattern(20, k):
            return True
    return False


def test_node_follows_a_three_item_plan():
    async def body(srv, node):
        t = node.clock.time_ms()
        srv.routes["/vov"] = ("live", 0x50, 120)
        bul = fwsim.wav_file(40)
        note = fwsim.wav_file(30)
        srv.routes["/bul.wav"] = bul
        srv.routes["/note.wav"] = note
        items = [
            item("vov", t + 20 * SEC, t + 80 * SEC, src=[srv.url("/vov")]),
            item("bul", t + 90 * SEC, t + 150 * SEC, kind="local_bulletin",
                 media=fwsim.media(srv.port, "/bul.wav", bul)),
            item("note", t + 160 * SEC, t + 180 * SEC, kind="notice", off=5000,
                 media=fwsim.media(srv.port, "/note.wav", note)),
        ]
        accept(node, 1, items)
        await fwtest.until(lambda: node.acks, 1000, 1)
        assert node.acks[-1] == ("plan-1", "accepted", None), node.acks
        # the retained plan again (reconnect): ignored silently; an older one: replay
        node._on_plan(fwsim.plan_bytes(1, t, items))
        node._on_plan(fwsim.plan_bytes(1, t, items[:1]))
        await fwtest.sleep_ms(10)
        assert len(node.acks) == 1 and node.rejected == []
        await fwsim.wait_done(node, ["vov", "bul", "note"])
        recs = fwsim.recordings(node)
        assert [r["label"] for r in recs] == ["vov", "bul", "note"], recs
        vov, b, n = recs
        assert near(vov["start"], t + 20 * SEC) and near(vov["end"], t + 80 * SEC), (vov, t)
        assert fwsim.pcm(vov, 100) == b"\x50" * 100
        assert near(b["start"], t + 90 * SEC) and near(b["end"], t + 130 * SEC), (b, t)
        got = fwsim.pcm(b)
        assert got == bul[44:], (len(got), len(bul), b, t, got[:8], bul[44:52])  # whole, cached
        assert near(n["start"], t + 160 * SEC) and near(n["end"], t + 180 * SEC), (n, t)
        assert starts_at_pattern(fwsim.pcm(n), 500)  # off=5 s into the notice
        r = {x["item"]: x for x in fwsim.records(node)}
        assert r["vov"]["outcome"] == "aired" and r["vov"]["src"] == "primary", r["vov"]
        assert r["vov"]["trigger"] == "plan" and r["vov"]["planned"] == t + 20 * SEC
        assert r["vov"]["media"] == srv.url("/vov") and r["vov"]["kind"] == "vov_relay"
        assert r["bul"]["outcome"] == "aired" and r["bul"]["src"] == "cache", r["bul"]
        assert r["bul"]["planned_end"] == t + 150 * SEC and r["bul"]["lang"] == "vi"
        assert r["note"]["outcome"] == "aired" and r["note"]["src"] == "cache"
        tel = node.telemetry()
        assert tel["plan"] == 1 and near(tel["plan_to"], t + 48 * 3600 * SEC)
        assert tel["cache_used"] == len(bul) + len(note) and not tel["cache_full"]
        assert tel["clock"] >= t + 180 * SEC
        amp = [e["event"] for e in fwsim.events(node) if e["event"].startswith("amp")]
        assert amp == ["amp_on", "amp_off"] * 3, amp

    run_node(body)


class EarlyClock(SimClock):
    """Its sleeps end 2 s early: a sleep runs on ticks, and NTP can move the wall clock
    meanwhile (the simulator's rate turns a real millisecond of slip into 50)."""

    def sleep_ms(self, ms):
        return SimClock.sleep_ms(self, ms - 2 * SEC)


def test_an_item_never_starts_before_its_time_when_sleeps_end_early():
    async def body(srv, node):
        t = node.clock.time_ms()
        bul = fwsim.wav_file(10)
        srv.routes["/bul.wav"] = bul
        accept(node, 1, [item("bul", t + 20 * SEC, t + 60 * SEC, kind="local_bulletin",
                              media=fwsim.media(srv.port, "/bul.wav", bul))])
        await fwsim.wait_done(node, ["bul"])
        rec = fwsim.recordings(node)[0]
        assert t + 20 * SEC <= rec["start"] <= t + 20 * SEC + TOL, (rec["start"] - t)
        r = fwsim.records(node, "bul")[0]
        assert r["outcome"] == "aired" and t + 20 * SEC <= r["start"], (r["start"] - t)
        assert fwsim.pcm(rec) == bul[44:]  # from the top, nothing skipped

    epoch = fwsim.day_noon_utc()
    run_node(body, epoch, clock=EarlyClock(rate=50, sim_epoch_ms=epoch))


def test_joined_late_items_are_time_anchored():
    async def body(srv, node):
        t = node.clock.time_ms()
        bul = fwsim.wav_file(90)
        srv.routes["/bul.wav"] = bul
        m = fwsim.media(srv.port, "/bul.wav", bul)
        await node.cache.fetch(m["url"], m["sha"], m["size"])
        # The node (re)boots 30 s into a bulletin: it starts where the bulletin is by now.
        accept(node, 1, [item("bul", t - 30 * SEC, t + 60 * SEC, kind="local_bulletin", media=m)])
        await fwsim.wait_done(node, ["bul"])
        rec = fwsim.recordings(node)[0]
        k = (rec["start"] - (t - 30 * SEC)) * fwsim.RATE // 1000
        assert 3000 <= k <= 3000 + TOL * fwsim.RATE // 1000, (k, rec)
        assert starts_at_pattern(fwsim.pcm(rec), k), (k, fwsim.pcm(rec)[:10])
        assert near(rec["end"], t + 60 * SEC)
        r = fwsim.records(node, "bul")[0]
        assert r["outcome"] == "aired" and r["src"] == "cache" and near(r["start"], t)

    run_node(body)


def test_uncached_media_streams_or_fails():
    async def body(srv, node):
        t = node.clock.time_ms()
        srv.routes["/gone.wav"] = 404
        gone = fwsim.media(srv.port, "/gone.wav", fwsim.wav_file(5))
        accept(node, 1, [item("x", t + 6 * SEC, t + 20 * SEC, kind="notice", media=gone)])
        await fwsim.wait_done(node, ["x"])
        r = fwsim.records(node, "x")[0]
        assert r["outcome"] == "failed" and r["reason"].startswith("media not cached"), r
        assert fwsim.recordings(node) == []

    run_node(body)


def test_back_to_back_relay_is_opened_while_the_first_plays():
    async def body(srv, node):
        t = node.clock.time_ms()
        srv.routes["/a"] = ("live", 0x41, 120)
        srv.routes["/b"] = ("live", 0x42, 120)
        accept(node, 1, [item("a", t + 10 * SEC, t + 30 * SEC, src=[srv.url("/a")]),
                         item("b", t + 30 * SEC, t + 50 * SEC, src=[srv.url("/b")])])
        # Within the lead before "b", while "a" is still on air, b's stream is already open.
        await node.clock.sleep_ms(t + 28 * SEC - node.clock.time_ms())
        assert node.on_air == "a" and srv.hits.get("/b") == 1, (node.on_air, srv.hits)
        await fwsim.wait_done(node, ["a", "b"])
        recs = fwsim.recordings(node)
        assert [r["label"] for r in recs] == ["a", "b"], recs
        assert near(recs[1]["start"], t + 30 * SEC) and near(recs[1]["end"], t + 50 * SEC)
        assert fwsim.pcm(recs[1])[:50] == b"\x42" * 50
        assert srv.hits["/b"] == 1  # the pre-opened connection aired, none other was made
        r = fwsim.records(node, "b")[0]
        assert r["outcome"] == "aired" and r["src"] == "primary", r

    run_node(body)


def test_primary_dead_backup_airs():
    async def body(srv, node):
        t = node.clock.time_ms()
        srv.routes["/a"] = 404
        srv.routes["/b"] = ("live", 0x42, 120)
        accept(node, 1, [item("vov", t + 10 * SEC, t + 50 * SEC,
                              src=[srv.url("/a"), srv.url("/b")])])
        await fwsim.wait_done(node, ["vov"])
        recs = fwsim.recordings(node)
        assert [r["label"] for r in recs] == ["vov"], recs
        assert near(recs[0]["start"], t + 10 * SEC) and near(recs[0]["end"], t + 50 * SEC)
        assert fwsim.pcm(recs[0])[:50] == b"\x42" * 50
        r = fwsim.records(node, "vov")[0]
        assert r["outcome"] == "aired" and r["src"] == "backup", r
        assert "primary: HTTP 404" in r["reason"] and r["media"] == srv.url("/b")

    run_node(body)


def test_primary_ends_mid_slot_fails_over():
    async def body(srv, node):
        t = node.clock.time_ms()
        srv.routes["/a"] = ("live", 0x41, 20)  # dies after 20 s
        srv.routes["/b"] = ("live", 0x42, 120)
        accept(node, 1, [item("vov", t + 10 * SEC, t + 70 * SEC,
                              src=[srv.url("/a"), srv.url("/b")])])
        await fwsim.wait_done(node, ["vov"])
        recs = fwsim.recordings(node)
        assert [r["label"] for r in recs] == ["vov", "vov"], recs
        assert fwsim.pcm(recs[0])[:10] == b"\x41" * 10 and fwsim.pcm(recs[1])[:10] == b"\x42" * 10
        assert near(recs[1]["end"], t + 70 * SEC)
        r = fwsim.records(node, "vov")[0]
        assert r["outcome"] == "aired" and r["src"] == "backup", r  # backup aired the most
        assert "primary: stream ended" in r["reason"], r

    run_node(body)


def test_both_sources_dead_fallback_plays():
    async def body(srv, node):
        t = node.clock.time_ms()
        srv.routes["/a"] = 404
        fb = fwsim.wav_file(10)
        srv.routes["/fb.wav"] = fb
        fallback = fwsim.media(srv.port, "/fb.wav", fb)
        await node.cache.fetch(fallback["url"], fallback["sha"], fallback["size"])
        dead = "http://127.0.0.1:%d/b" % (srv.port + 1 if srv.port < 60000 else srv.port - 1)
        accept(node, 1, [item("vov", t + 10 * SEC, t + 35 * SEC, src=[srv.url("/a"), dead])],
               fallback=fallback)
        await fwsim.wait_done(node, ["vov"])
        recs = fwsim.recordings(node)
        assert recs and all(r["label"] == "fallback:vov" for r in recs), recs
        assert near(recs[0]["start"], t + 10 * SEC), (recs[0], t)
        assert fwsim.pcm(recs[0]) == fb[44:]
        r = fwsim.records(node, "vov")[0]
        assert r["outcome"] == "failed" and r["src"] == "fallback", r
        assert "primary: HTTP 404" in r["reason"] and "backup:" in r["reason"], r

    run_node(body)


def test_emergency_preempts_a_relay_which_resumes():
    async def body(srv, node):
        t = node.clock.time_ms()
        srv.routes["/vov"] = ("live", 0x50, 300)
        em = fwsim.wav_file(10)
        srv.routes["/em.wav"] = em
        accept(node, 1, [item("vov", t + 6 * SEC, t + 60 * SEC, src=[srv.url("/vov")])])
        ok = await fwtest.until(lambda: node.clock.time_ms() >= t + 20 * SEC, 5000, 5)
        assert ok and node.on_air == "vov"
        command(node, "emergency", {"url": srv.url("/em.wav"), "title": "Lũ quét"}, 1)
        await fwtest.until(lambda: node.emergency is not None, 2000, 5)
        command(node, "play", {"url": srv.url("/em.wav")}, 2)  # refused while it airs
        await fwsim.wait_done(node, ["vov"])
        recs = fwsim.recordings(node)
        assert [r["label"] for r in recs] == ["vov", "c1", "vov"], recs
        assert near(recs[0]["end"], t + 20 * SEC)
        assert recs[1]["bytes"] == len(em) - 44
        assert near(recs[2]["start"], recs[1]["end"], 1500)  # the relay resumes at once
        assert near(recs[2]["end"], t + 60 * SEC)
        assert node.rejected == [("c2", "busy_emergency")]
        rs = fwsim.records(node)
        first = [r for r in rs if r.get("item") == "vov"]
        emr = [r for r in rs if r.get("cmd") == "c1"][0]
        assert first[0]["outcome"] == "partial" and first[0]["reason"] == "pre-empted by emergency"
        assert first[1]["outcome"] == "aired" and first[1]["src"] == "primary", first[1]
        assert emr["trigger"] == "emergency" and emr["outcome"] == "aired", emr
        assert "vov" in node.done

    run_node(body)


def test_quiet_hours_on_the_node():
    # 21:44:30 at UTC+7: the default quiet hours (21:45-05:00) begin in 30 s.
    epoch = fwsim.day_noon_utc() + 9 * 3600 * SEC + 44 * MIN + 30 * SEC

    async def body(srv, node):
        t = node.clock.time_ms()
        srv.routes["/vov"] = ("live", 0x50, 600)
        u = srv.url("/vov")
        items = [item("late", t + 6 * SEC, t + 90 * SEC, src=[u]),  # cut at 21:45
                 item("night", t + 100 * SEC, t + 120 * SEC, src=[u]),  # missed
                 item("allowed", t + 130 * SEC, t + 140 * SEC, src=[u], q=1),
                 item("urgent", t + 150 * SEC, t + 160 * SEC, src=[u], p=2)]
        accept(node, 1, items, quiet=[1305, 300, 420])
        await fwsim.wait_done(node, ["late", "night", "allowed", "urgent"])
        recs = fwsim.recordings(node)
        assert [r["label"] for r in recs] == ["late", "allowed", "urgent"], recs
        assert near(recs[0]["end"], t + 30 * SEC), (recs[0], t)
        r = {x["item"]: x for x in fwsim.records(node)}
        assert r["late"]["outcome"] == "partial" and r["late"]["reason"] == "quiet_hours"
        assert r["night"]["outcome"] == "missed" and r["night"]["reason"] == "quiet_hours"
        assert r["night"]["start"] is None
        assert r["allowed"]["outcome"] == "aired" and r["urgent"]["outcome"] == "aired"
        command(node, "play", {"url": u}, 5)
        assert node.rejected == [("c5", "quiet_hours")], node.rejected
        assert node.seq.value == 5  # persisted: it cannot be replayed after the quiet hours

    run_node(body, epoch=epoch)


def test_plan_update_and_missed_while_off():
    async def body(srv, node):
        t = node.clock.time_ms()
        srv.routes["/vov"] = ("live", 0x50, 600)
        u = srv.url("/vov")
        accept(node, 1, [item("a", t + 6 * SEC, t + 20 * SEC, src=[u]),
                         item("b", t + 30 * 60 * SEC, t + 40 * 60 * SEC, src=[u])])
        # v2 moves the later item (beyond the lock window) and adds one; "a" is locked
        accept(node, 2, [item("a", t + 8 * SEC, t + 9 * SEC, src=[u]),
                         item("c", t + 25 * SEC, t + 30 * SEC, src=[u])])
        assert [i["id"] for i in node.plan["items"]] == ["a", "c"]
        assert node.plan["items"][0]["s"] == t + 6 * SEC
        node._on_plan(fwsim.plan_bytes(1, t, []))
        assert node.rejected == [("plan-1", "replay")]
        await fwsim.wait_done(node, ["a", "c"])
        assert [r["label"] for r in fwsim.recordings(node)] == ["a", "c"]
        # a node switched off through an item reports it missed when it boots again
        stored = node.board.storage.read("plan.json")
        node.board.storage.write("plan.json", stored.replace(b'"id": "c"', b'"id": "c2"'))
        again = Node(node.board, node.config)
        again._missed_while_off()
        missed = [r for r in again.pending if r.get("item") == "c2"]
        assert missed and missed[0]["outcome"] == "missed" and missed[0]["reason"] == "node was off"

    run_node(body)


def test_retained_plan_over_mqtt():
    """The real path: a retained plan bigger than any command (above the old 4352-byte packet
    limit) on the broker reaches a node that connects afterwards; it acks plan-<ver> once, also
    across a reconnect."""
    async def main():
        host, port = fwtest.broker()
        nid = "n-mqtt-%d" % (random.getrandbits(20))
        board = SimBoard(fwsim.tmpdir("mqtt"), clock=SimClock())
        node = Node(board, {"id": nid, "key": fwsim.KEY, "media_hosts": [],
                            "broker": {"host": host, "port": port, "password": "x"},
                            "session": {"initial_jitter_ms": 0}})
        t = board.clock.time_ms()
        items = [item("it-%03d" % i, t + (i + 1) * 3600 * SEC, t + (i + 1) * 3600 * SEC + MIN,
                      src=["http://127.0.0.1:9/stream-%03d" % i]) for i in range(32)]
        gc.collect()  # encoding is the headend's job; the test heap is tight under MicroPython
        payload = fwsim.plan_bytes(3, t, items, node=nid)
        assert 5000 < len(payload) <= protocol.MAX_PLAN_PAYLOAD, len(payload)
        acks = []
        hq = fwtest.client("hq")
        hq.on_message = lambda tp, p: acks.append(protocol.decode(p))
        task = await fwtest.started(hq)
        await hq.subscribe(protocol.topic(nid, protocol.ACK), 1)
        await hq.publish(protocol.topic(nid, protocol.PLAN), payload, 1, True)
        # The headend's side of the test is done with them: on a node the firmware is frozen
        # in flash, here its bytecode shares the test heap, so leave the node what it needs.
        items = payload = None
        gc.collect()
        run = asyncio.create_task(node.run())
        try:
            ok = await fwtest.until(lambda: [a for a in acks if a["id"] == "plan-3"], 10000)
            assert ok and node.plan["ver"] == 3 and len(node.plan["items"]) == 32, acks
            assert acks[0]["status"] == "accepted" and acks[0]["items"] == 32
            node.session.client.close()  # a reconnect: the retained plan comes again
            await fwtest.until(lambda: node.session.connects >= 2, 10000)
            await fwtest.sleep_ms(300)
            assert len([a for a in acks if a["id"] == "plan-3"]) == 1, acks
        finally:
            await hq.publish(protocol.topic(nid, protocol.PLAN), b"", 1, True)  # clear it
            run.cancel()
            await fwtest.stop(hq, task)

    fwtest.run(main(), 30000)

# Signed node reports and hash-checked commands, offline over hal.sim (no broker), under
# MicroPython and CPython: as-run records and acks carry the node's HMAC over their exact wire
# bytes, a record is signed once and resent as the same bytes, the headend's refusal drops only
# the record with that rid and that signature, and a play / emergency with a "sha" plays only
# media that hashes to it (bad_hash otherwise, nothing airs).
import json

import fwsim
import fwtest

from firmware import asrun, protocol

SEC = 1000


def make_node(srv, rate=5):
    node = fwsim.make_node(srv.port, fwsim.day_noon_utc(), rate)
    node.sent = []  # (leaf, wire bytes)

    async def publish(leaf, msg, qos=1):
        assert isinstance(msg, bytes), msg  # reports go out as signed canonical bytes
        node.sent.append((leaf, msg))
        return True

    node._publish = publish
    return node


def run_node(body, rate=5):
    async def main():
        srv = await fwsim.Server().start()
        node = make_node(srv, rate)
        node.start_plan()
        try:
            await body(srv, node)
        finally:
            srv.close()

    fwtest.run(main(), 30000)


def final(node, cid):
    for a in node.acks:
        if a[0] == cid and a[1] in (protocol.DONE, protocol.FAILED):
            return a
    return None


async def finished(node, cid):
    ok = await fwtest.until(lambda: final(node, cid) is not None, 15000, 5)
    assert ok, (cid, node.acks, node.rejected)
    return final(node, cid)


def verified(payload):
    msg = json.loads(payload)
    assert protocol.report_signed(fwsim.SIGNER, payload, msg), payload
    return msg


def record(node, title):
    asrun.store(node, {"v": 1, "t": "asrun", "node": node.id, "rid": 0, "cmd": None,
                       "trigger": "manual", "title": title, "start": 1, "end": 2,
                       "outcome": "aired", "reason": None})
    return node.pending[-1]


def test_records_are_signed_once_and_resent_as_the_same_bytes():
    async def body(srv, node):
        rec = record(node, "Bản tin \"thử\"")
        await fwtest.until(lambda: len(node.sent) == 1, 2000, 5)
        leaf, first = node.sent[0]
        assert leaf == protocol.ASRUN
        assert verified(first)["rid"] == rec["rid"]
        # Through flash and back (a reboot): the same bytes, the same signature.
        node.pending = json.loads(json.dumps(node.pending))
        assert asrun.wire(node, node.pending[0]) == first
        # Altered, it no longer verifies.
        forged = first.replace(b"aired", b"aixed")
        assert not protocol.report_signed(fwsim.SIGNER, forged, json.loads(forged))
        # A record an older firmware kept without a signature is signed when it is sent.
        old = {"v": 1, "t": "asrun", "node": node.id, "rid": 5, "outcome": "aired"}
        node.pending.append(old)
        verified(asrun.wire(node, old))
        assert "sig" in old

    run_node(body)


def test_a_refusal_drops_only_the_record_with_that_signature():
    async def body(srv, node):
        a = record(node, "a")
        b = record(node, "b")
        c = record(node, "c")
        ack = protocol.asrun_ack
        # A refusal earned by a forged copy of b (another signature) leaves the real b.
        asrun.on_ack(node, protocol.encode(ack([], [{"rid": b["rid"], "sig": "0" * 64,
                                                     "why": "bad_time"}])))
        assert [r["rid"] for r in node.pending] == [a["rid"], b["rid"], c["rid"]]
        # Refused for good (its own signature): dropped, never resent; acked: dropped.
        asrun.on_ack(node, protocol.encode(ack([a["rid"]], [{"rid": b["rid"], "sig": b["sig"],
                                                              "why": "bad_time"}])))
        assert [r["rid"] for r in node.pending] == [c["rid"]]
        assert [r["rid"] for r in json.loads(node.board.storage.read(asrun.F_ASRUN))] \
            == [c["rid"]]
        # Junk answers change nothing.
        for junk in (b"{}", b"[1]", b'{"v":1,"rids":"x","refused":{"a":1}}',
                     b'{"v":1,"rids":[],"refused":[1,"x",null]}'):
            asrun.on_ack(node, junk)
        assert [r["rid"] for r in node.pending] == [c["rid"]]

    run_node(body)


def test_acks_are_signed():
    async def body(srv, node):
        del node._ack  # the real ones (fwsim keeps them offline)
        del node._reject
        cid = fwsim.command(node, "ping", {}, 1)
        await fwtest.until(lambda: len(node.sent) >= 2, 2000, 5)
        msgs = [verified(p) for leaf, p in node.sent if leaf == protocol.ACK]
        assert [(m["id"], m["status"]) for m in msgs] == [(cid, "accepted"), (cid, "done")]
        node._on_command(b"not json")
        await fwtest.until(lambda: len(node.sent) >= 3, 2000, 5)
        assert verified(node.sent[-1][1])["reason"] == protocol.R_MALFORMED

    run_node(body)


def test_play_with_a_sha_plays_only_that_media_from_the_cache():
    async def body(srv, node):
        wav = fwsim.wav_file(2)
        srv.routes["/a.wav"] = wav
        m = fwsim.media(srv.port, "/a.wav", wav)
        # Bytes that are not the command's media: nothing airs, bad_hash in ack and record.
        other = dict(m)
        other["sha"] = fwsim.sha(b"something else")
        cid = fwsim.command(node, "play", other, 1)
        f = await finished(node, cid)
        assert f[1] == protocol.FAILED and f[2] == protocol.R_BAD_HASH, f
        assert fwsim.recordings(node) == []
        assert not node.board.amp.is_on()
        rec = node.pending[-1]
        assert (rec["cmd"], rec["outcome"], rec["reason"]) == (cid, "failed", "bad_hash")
        assert not node.cache.has(other["sha"])
        # The right sha: downloaded into the cache, checked, played.
        cid = fwsim.command(node, "play", m, 2)
        f = await finished(node, cid)
        assert f[1] == protocol.DONE, f
        assert node.cache.has(m["sha"]) and len(fwsim.recordings(node)) == 1
        # An emergency with media already cached plays from the cache, without a download.
        hits = srv.hits["/a.wav"]
        srv.routes["/a.wav"] = 404
        cid = fwsim.command(node, "emergency", m, 3)
        f = await finished(node, cid)
        assert f[1] == protocol.DONE, f
        assert srv.hits["/a.wav"] == hits and len(fwsim.recordings(node)) == 2
        # A sha that is not 64 hex characters, or a size that is not a positive int: bad_args.
        for bad in ({"sha": "ab"}, {"sha": "G" * 64}, {"size": 0}, {"size": True}):
            args = dict(m)
            args.update(bad)
            cid = fwsim.command(node, "play", args, 4 + len(node.rejected))
            assert node.rejected[-1] == (cid, protocol.R_BAD_ARGS), node.rejected

    run_node(body)

# A node over hal.sim whose power tests/hwsim/test_power_cut.py cuts (SIGKILL) at chosen moments.
# Runs under MicroPython (and CPython). Usage:
#   power_cut_node.py air DIR PORT SIM_EPOCH REAL_EPOCH RATE START_S MEDIA_SIZE MEDIA_SHA
#       follow a plan with one bulletin at START_S (simulated s after SIM_EPOCH) whose media is
#       at http://127.0.0.1:PORT/bul.wav; print "RECORD <json>" once its as-run record is stored.
#   power_cut_node.py churn DIR [CUT_AT [ACK_AT]]
#       accept ever newer plans (about 16 KB each), set the sequence number and store as-run
#       records as fast as it can; after each has returned, print "PLAN v", "SEQ n", "REC rid"
#       ("ACKED rid" before it drops the records before rid, as the headend's ack would, once
#       ACK_AT records wait: 150 unless given). With CUT_AT, the CUT_AT-th file write since
#       boot stops halfway: half its bytes are on disk, it prints "CUT file" and waits there
#       for the power to go.
import asyncio
import json
import sys
import time

import hal.sim
from firmware import protocol
from firmware.node import Node
from hal.sim import SimBoard, SimClock

KEY = "22" * 32
NODE = "n-cut"
SIGNER = protocol.Signer(protocol.node_key(KEY))
HOUR = 3600000


def make_node(node_dir, clock, port=1):
    cfg = {"id": NODE, "key": KEY, "broker": {"host": "127.0.0.1", "port": 1, "password": "x"},
           "media_hosts": ["127.0.0.1:%d" % port], "cache_bytes": 400000}
    return Node(SimBoard(node_dir, clock=clock), cfg)


def plan_payload(ver, now, items):
    p = protocol.make_plan(SIGNER, NODE, ver, now, now, now + 48 * HOUR, [1305, 300, 420],
                           items, None)
    return protocol.encode_plan(p)


def say(*words):
    print(*words)
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()


async def air(node_dir, port, sim_epoch, real_epoch, rate, start_s, size, sha):
    clock = SimClock(rate=rate, sim_epoch_ms=sim_epoch, real_epoch_ms=real_epoch)
    node = make_node(node_dir, clock, port)
    if node.plan is None:  # first boot: the plan arrives (after a power cut it is in flash)
        s = sim_epoch + start_s * 1000
        item = {"id": "bul", "kind": "local_bulletin", "p": 0, "s": s, "e": s + 75000,
                "off": 0, "title": "Bản tin", "lang": "vi", "q": 0,
                "media": {"url": "http://127.0.0.1:%d/bul.wav" % port, "sha": sha,
                          "size": size}}
        node._on_plan(plan_payload(1, clock.time_ms(), [item]))
        assert node.plan is not None
    say("BOOT plan", node.plan["ver"], "done", json.dumps(node.done))
    node.start_plan()
    while True:
        recs = [r for r in node.pending if r.get("item") == "bul"]
        if recs and not node.closing:
            say("RECORD", json.dumps(recs[0]))
            return
        await asyncio.sleep(0.02)


class HalfWrite:
    """A file of hal.sim's: the cut_at-th file written (counted over all files) stops halfway
    through its first write (a file written in pieces, as the as-run journal is, counts once)."""

    writes = 0
    cut_at = 0

    def __init__(self, name, f):
        self.name = name
        self.f = f
        self.counted = False

    def write(self, data):
        if self.counted:
            return self.f.write(data)
        self.counted = True
        HalfWrite.writes += 1
        if HalfWrite.writes == HalfWrite.cut_at:
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            say("CUT", self.name.split("/")[-1])
            while True:
                time.sleep(1)
        return self.f.write(data)

    def __getattr__(self, attr):
        return getattr(self.f, attr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def cut_writes(cut_at):
    real_open = open
    HalfWrite.cut_at = cut_at
    hal.sim.open = lambda name, mode="r": HalfWrite(name, real_open(name, mode))


async def churn(node_dir, cut_at=0, ack_at=150):
    if cut_at:
        cut_writes(cut_at)
    clock = SimClock()
    node = make_node(node_dir, clock)
    ver = node.plan["ver"] if node.plan else 0
    say("BOOT", ver, node.seq.value, len(node.pending))
    while True:
        ver += 1
        now = clock.time_ms()
        items = []
        for i in range(40):  # a day's worth of items: a plan of about 16 KB
            s = now + HOUR + i * 600000
            items.append({"id": "it-%d-%d" % (ver, i), "kind": "vov_relay", "p": 0, "s": s,
                          "e": s + 300000, "off": 0, "title": "Tiếp sóng Đài TNVN %d" % i,
                          "lang": "vi", "q": 0, "src": ["http://127.0.0.1:1/vov1"]})
        node._on_plan(plan_payload(ver, now, items))
        say("PLAN", node.plan["ver"])
        node.seq.set(node.seq.value + 1)
        say("SEQ", node.seq.value)
        node._store({"v": protocol.VERSION, "t": "asrun", "node": NODE, "rid": 0,
                     "cmd": None, "trigger": "plan", "kind": "test", "media": "x",
                     "title": "x", "planned": None, "start": now, "end": now,
                     "outcome": "aired", "reason": None})
        say("REC", node.pending[-1]["rid"])
        if len(node.pending) >= ack_at:
            # As the headend's ack would: the records before this one may go from now on
            # (said first, so a cut during the trim does not count them as lost).
            keep = ack_at * 2 // 3
            say("ACKED", node.pending[-keep]["rid"])
            node.pending = node.pending[-keep:]
            node._save_pending()
        await asyncio.sleep(0)


def main(argv):
    if argv[1] == "air":
        a = argv[2:]
        asyncio.run(air(a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4]), int(a[5]),
                        int(a[6]), a[7]))
    else:
        asyncio.run(churn(argv[2], *[int(a) for a in argv[3:]]))


main(sys.argv)

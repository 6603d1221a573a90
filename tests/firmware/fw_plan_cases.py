# The plan codec (protocol.make_plan/encode_plan/parse_plan) and the node's plan rules
# (firmware/plan.py: lock-window merge, quiet hours, time anchoring). No network.
# Runs under MicroPython and CPython.
import json

from fwsim import HOUR, MIN, NODE, SIGNER, item, plan_bytes

from firmware import plan, protocol, wav

NOW = 1795392000000  # 2026-11-23 00:00 UTC = 07:00 at UTC+7
MEDIA = {"url": "http://h:1/a.wav", "sha": "ab" * 32, "size": 1000}


def rejected(payload, current=0, now=NOW, node=NODE):
    try:
        protocol.parse_plan(payload, node, SIGNER, current, now)
    except protocol.Rejected as e:
        return e.reason, e.cmd_id, e.detail
    return None


def good_items():
    return [item("vov@1", NOW + HOUR, NOW + 2 * HOUR, src=["http://h:1/a", "http://h:2/b"]),
            item("bul@1", NOW + 3 * HOUR, NOW + 3 * HOUR + 10 * MIN, kind="local_bulletin",
                 media=MEDIA)]


def test_plan_roundtrip():
    payload = plan_bytes(7, NOW, good_items(), fallback=MEDIA)
    p = protocol.parse_plan(payload, NODE, SIGNER, 6, NOW)
    assert p["ver"] == 7 and len(p["items"]) == 2 and p["fallback"] == MEDIA
    assert p["quiet"] == [1305, 300, 420]
    # canonical: encoding the parsed plan gives the same bytes
    assert protocol.encode_plan(p) == payload


def test_plan_signature_and_identity():
    payload = plan_bytes(7, NOW, good_items())
    assert rejected(payload.replace(b'"title":"vov@1"', b'"title":"vov@2"'))[0] == "bad_signature"
    other = protocol.Signer(b"\x22" * 32)
    forged = protocol.encode_plan(protocol.make_plan(other, NODE, 7, NOW, NOW, NOW + HOUR,
                                                     [1305, 300, 420], []))
    assert rejected(forged)[:2] == ("bad_signature", "plan-7")
    assert rejected(plan_bytes(7, NOW, [], node="n-other"))[0] == "wrong_node"
    # not canonical (spaces) fails verification, never re-encoded
    p = json.loads(payload)
    assert rejected(json.dumps(p).encode())[0] == "bad_signature"


def test_plan_replay_and_expiry():
    payload = plan_bytes(7, NOW, good_items())
    assert rejected(payload, current=7)[:2] == ("replay", "plan-7")
    assert rejected(payload, current=9)[0] == "replay"
    assert rejected(payload, now=NOW + 48 * HOUR)[0] == "expired"
    assert rejected(payload, current=6) is None


def test_plan_structure():
    assert rejected(b"{nope")[0] == "malformed"
    assert rejected(b"[]")[0] == "malformed"
    assert rejected(b'{"t":"plan","ver":"1"}')[0] == "malformed"
    assert rejected(b'{"t":"plan","ver":3,"v":2}')[:2] == ("unsupported_version", "plan-3")
    assert rejected(b'{"t":"plan","ver":3,"v":1}')[0] == "malformed"
    big = b" " * (protocol.MAX_PLAN_PAYLOAD + 1)  # the size is checked before anything else
    assert rejected(big)[0] == "oversized"
    assert rejected(plan_bytes(7, NOW, [], quiet=[1305, 1440, 420]))[0] == "malformed"


def test_plan_bad_items():
    base = good_items()[0]
    bad = [
        {"id": "x" * 65}, {"id": 5}, {"kind": "music"}, {"p": 3}, {"p": True},
        {"s": NOW + 2 * HOUR}, {"e": "soon"}, {"off": -1}, {"q": 2}, {"title": 7},
        {"src": []}, {"src": ["a", "b", "c"]}, {"src": [1]}, {"src": "http://h:1/a"},
        {"media": MEDIA},  # both src and media
        {"src": None, "media": {"url": "u", "sha": "AB" * 32, "size": 1}},
        {"src": None, "media": {"url": "u", "sha": "ab" * 31, "size": 1}},
        {"src": None, "media": {"url": "u", "sha": "ab" * 32, "size": "1"}},
        {"src": None},  # neither
    ]
    for change in bad:
        it = dict(base)
        for k in change:
            if change[k] is None:
                del it[k]
            else:
                it[k] = change[k]
        r = rejected(plan_bytes(7, NOW, [it]))
        assert r is not None and r[0] == "malformed" and r[2].startswith("item 0"), (change, r)
    # overlapping and duplicate ids
    a = item("a", NOW + HOUR, NOW + 2 * HOUR, src=["http://h:1/a"])
    b = item("b", NOW + HOUR + MIN, NOW + 3 * HOUR, src=["http://h:1/a"])
    assert rejected(plan_bytes(7, NOW, [a, b]))[2] == "item 1: not sorted or overlapping"
    c = item("a", NOW + 3 * HOUR, NOW + 4 * HOUR, src=["http://h:1/a"])
    assert rejected(plan_bytes(7, NOW, [a, c]))[2] == "item 1: duplicate id"
    fb = dict(MEDIA)
    fb["size"] = 0
    assert rejected(plan_bytes(7, NOW, [a], fallback=fb))[2] == "fallback size"


def test_new_ops_and_codes():
    assert "emergency" in protocol.OPS
    assert protocol.R_QUIET == "quiet_hours" and protocol.R_BUSY == "busy_emergency"
    assert protocol.MISSED == "missed" and protocol.PLAN == "plan"
    assert protocol.topic(NODE, protocol.PLAN) == "loaxa/v1/node/n-plan/plan"


# --- lock-window merge ------------------------------------------------------------------------

def ids(items):
    return [i["id"] for i in items]


def test_merge_first_plan_takes_everything():
    new = [item("a", NOW - HOUR, NOW - MIN), item("b", NOW + MIN, NOW + HOUR)]
    assert ids(plan.merge(None, new, NOW)) == ["a", "b"]


def test_merge_lock_window():
    old = [item("past", NOW - 2 * HOUR, NOW - HOUR),
           item("onair", NOW - 5 * MIN, NOW + 2 * MIN),
           item("soon", NOW + 5 * MIN, NOW + 20 * MIN),  # starts inside the lock: kept
           item("later", NOW + 30 * MIN, NOW + 40 * MIN)]  # beyond the lock: replaced
    new = [item("n-clash", NOW + 3 * MIN, NOW + 8 * MIN),  # inside lock, overlaps "soon"
           item("n-gap", NOW + 2 * MIN, NOW + 4 * MIN),  # inside lock, free slot: taken
           item("n-trim", NOW + 12 * MIN, NOW + 25 * MIN, off=1000),  # after lock, overlaps
           item("n-late", NOW + 35 * MIN, NOW + 50 * MIN)]
    got = plan.merge(old, new, NOW)
    assert ids(got) == ["onair", "n-gap", "soon", "n-trim", "n-late"], ids(got)
    trim = got[3]
    assert trim["s"] == NOW + 20 * MIN and trim["off"] == 1000 + 8 * MIN, trim
    assert new[2]["s"] == NOW + 12 * MIN  # the plan's own item is not changed


def test_merge_keeps_the_item_on_air_by_id():
    old = [item("long", NOW - 30 * MIN, NOW + HOUR)]
    new = [item("long", NOW + 30 * MIN, NOW + 2 * HOUR), item("x", NOW + 2 * HOUR, NOW + 3 * HOUR)]
    got = plan.merge(old, new, NOW, on_air="long")
    assert ids(got) == ["long", "x"] and got[0]["s"] == NOW - 30 * MIN


# --- time anchoring ---------------------------------------------------------------------------

def test_time_anchored_position_and_offset():
    it = item("b", NOW, NOW + 10 * MIN, off=2000)
    assert plan.position_ms(it, NOW + 30000) == 32000
    # 16 kHz 16-bit mono: 32 bytes per ms, frame 2
    assert wav.offset_bytes(32000, 16000, 16, 1) == 32000 * 32
    # odd sample counts stay frame-aligned in stereo 16-bit (frame 4)
    assert wav.offset_bytes(1, 22050, 16, 2) == 22 * 4
    assert wav.offset_bytes(1001, 100, 8, 1) == 100
    assert wav.offset_bytes(-5, 16000, 16, 1) == 0
    assert wav.bytes_for_ms(1, 100, 8, 1) == 1 and wav.bytes_for_ms(10, 16000, 16, 2) == 640


def test_current_and_upcoming():
    items = [item("a", NOW, NOW + MIN), item("b", NOW + 2 * MIN, NOW + 3 * MIN)]
    assert plan.current(items, NOW + 1000, {})["id"] == "a"
    assert plan.current(items, NOW + 1000, {"a": 1}) is None
    assert plan.current(items, NOW + MIN, {}) is None
    assert plan.upcoming(items, NOW + 1000, {})["id"] == "b"
    assert plan.upcoming(items, NOW + 2 * MIN, {}) is None


# --- quiet hours ------------------------------------------------------------------------------

Q = [1305, 300, 420]  # 21:45-05:00 at UTC+7
MIDNIGHT_LOCAL = NOW - 7 * HOUR  # 00:00 at UTC+7 (= 17:00 UTC the day before)


def local(h, m=0):
    return MIDNIGHT_LOCAL + h * HOUR + m * MIN


def test_quiet_window_crosses_midnight():
    assert not plan.in_quiet(Q, local(21, 44))
    assert plan.in_quiet(Q, local(21, 45))
    assert plan.in_quiet(Q, local(23, 59))
    assert plan.in_quiet(Q, local(24, 30))
    assert plan.in_quiet(Q, local(4, 59))
    assert not plan.in_quiet(Q, local(5, 0))
    assert not plan.in_quiet(Q, local(12, 0))
    assert not plan.in_quiet([600, 600, 0], local(10))  # start == end: none
    day = [720, 780, 420]  # 12:00-13:00, not crossing midnight
    assert plan.in_quiet(day, local(12, 30)) and not plan.in_quiet(day, local(13))
    assert plan.next_quiet_start(Q, local(20)) == local(21, 45)
    assert plan.next_quiet_start(Q, local(21, 45)) == local(24 + 21, 45)
    assert plan.quiet_end(Q, local(23)) == local(29)
    assert plan.quiet_end(Q, local(12)) == local(12)


def test_quiet_decisions_for_items():
    normal = item("n", local(21), local(22))
    assert plan.window(normal, Q, local(21)) == (local(21), local(21, 45), True)
    assert plan.window(normal, Q, local(21, 50)) is None  # joined inside quiet: missed
    inside = item("i", local(3), local(4))
    assert plan.window(inside, Q, local(3)) is None
    allowed = item("q", local(3), local(4), q=1)
    assert plan.window(allowed, Q, local(3)) == (local(3), local(4), False)
    urgent = item("u", local(3), local(4), p=2)
    assert plan.window(urgent, Q, local(3)) == (local(3), local(4), False)
    day = item("d", local(9), local(10))
    assert plan.window(day, Q, local(9)) == (local(9), local(10), False)
    assert plan.DEFAULT_QUIET == [1305, 300, 420]

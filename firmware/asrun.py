# The node's as-run journal: a record of what actually aired (or did not) for every command
# playback and plan item, kept in flash until the headend acknowledges it and resent meanwhile.
# Module functions over the Node (firmware/node.py), not a class of their own: the records stay
# in node.pending, with no second object on a 100 KB heap.
import asyncio
import json

from firmware import protocol
from firmware.mqtt import sleep_ms

F_ASRUN = "asrun.json"  # as-run records not yet acknowledged by the headend
ASRUN_MAX = 200  # as-run records kept while the headend is unreachable (about a week of items)
ASRUN_RESEND_MS = 30000


def save(node):
    """The journal to flash, one record at a time: the whole list as one JSON string (and
    its bytes) is twice the journal in heap at once, which 200 signed records do not leave.
    Written beside, then renamed: after a power cut the old or the new journal is there."""
    st = node.board.storage
    f = st.open(F_ASRUN + ".tmp", "wb")
    try:
        sep = b"["
        for rec in node.pending:
            f.write(sep)
            f.write(json.dumps(rec).encode())
            sep = b","
        f.write(b"[]" if sep == b"[" else b"]")
    finally:
        f.close()
    st.rename(F_ASRUN + ".tmp", F_ASRUN)


def store(node, rec):
    """Give rec the next record id, sign it, keep it in flash and send it."""
    rec["rid"] = node.next_rid
    node.next_rid += 1
    node._save_state()
    protocol.sign_report(node.signer, rec)  # once: every resend is these same bytes
    node.pending.append(rec)
    if len(node.pending) > ASRUN_MAX:
        node.pending.pop(0)  # the oldest goes; the headend sees the gap in record ids
    save(node)
    asyncio.create_task(send(node, rec))


def wire(node, rec):
    """A pending record's wire bytes: canonical, so the same bytes every time (records kept
    by an older firmware, without "sig", are signed on their first send)."""
    if "sig" not in rec:
        return protocol.sign_report(node.signer, rec)
    return protocol.canonical(rec)


async def send(node, rec):
    return await node._publish(protocol.ASRUN, wire(node, rec))


def heard(node, outcome, reason):
    """Aired means heard: an airing whose amplifier was judged faulty (it drew no current
    while on) failed, whatever the audio did; on a board that cannot sense the amplifier,
    it aired "not verified". Anything else is left as it was."""
    if outcome != protocol.AIRED and outcome != protocol.PARTIAL:
        return outcome, reason
    if node.amp_fault:
        return protocol.OUTCOME_FAILED, protocol.R_AMP_FAULT
    if not node.board.amp.verifies():  # kept beside a reason it had ("stream ended early")
        return outcome, reason + "; " + protocol.R_NOT_VERIFIED if reason \
            else protocol.R_NOT_VERIFIED
    return outcome, reason


def record_command(node, cmd, start, end, outcome, reason, trigger="command"):
    store(node, {"v": protocol.VERSION, "t": "asrun", "node": node.id, "rid": 0,
                 "cmd": cmd["id"], "trigger": trigger, "media": cmd["args"]["url"],
                 "title": cmd["args"].get("title", ""), "planned": cmd["args"].get("at"),
                 "start": start, "end": end, "outcome": outcome, "reason": reason})


def record_item(node, item, airing):
    airing.outcome, airing.reason = heard(node, airing.outcome, airing.reason)
    store(node, {"v": protocol.VERSION, "t": "asrun", "node": node.id, "rid": 0,
                 "trigger": "plan", "item": item["id"], "kind": item["kind"],
                 "p": item["p"], "lang": item.get("lang", ""), "title": item.get("title", ""),
                 "planned": item["s"], "planned_end": item["e"],
                 "start": airing.start, "end": airing.end, "outcome": airing.outcome,
                 "reason": airing.reason, "src": airing.src, "media": airing.media})


def _refused(rec, refused):
    for r in refused:
        if isinstance(r, dict) and r.get("rid") == rec["rid"] and r.get("sig") == rec.get("sig"):
            return True
    return False


def on_ack(node, payload):
    """Drop what the headend stored ("rids") and what it refused for good ("refused": only
    the record with that rid and that signature, so a refusal of someone else's forged
    copy leaves ours). Nothing else is ever dropped but the oldest beyond ASRUN_MAX."""
    msg = protocol.decode(payload)
    if not msg:
        return
    acked = msg.get("rids")
    if not isinstance(acked, list):
        acked = []
    refused = msg.get("refused")
    if not isinstance(refused, list):
        refused = []
    keep = [r for r in node.pending if r["rid"] not in acked and not _refused(r, refused)]
    if len(keep) != len(node.pending):
        node.pending = keep
        save(node)


async def resend_loop(node):
    while True:
        node.beat("asrun", ASRUN_RESEND_MS + 10000)
        await sleep_ms(ASRUN_RESEND_MS)  # transport timer: real time, not the board clock
        if node.session.connected:
            for rec in list(node.pending):
                node.beat("asrun", 10000)  # a publish times out after 10 s
                await send(node, rec)

# The node's health and telemetry: the amplifier's verdict (hardware fault pin or too little
# current), the periodic telemetry (short when nothing settled has changed) and the full report
# a technician asks for. Module functions over the Node (firmware/node.py): the state they keep
# (amp_fault, _told, _told_at) stays on the node, with no second object on a 100 KB heap.
import asyncio

from firmware import ota as otalib, protocol
from firmware.mqtt import sleep_ms, ticks_diff, ticks_ms

# Telemetry: every TELEMETRY_S the readings that move (MOVING); the whole message when anything
# else has changed, at least every FULL_EVERY_MS, and at once on connect or an amplifier fault.
# A full message is about 700 bytes, a short one about 200: this keeps a node's control
# traffic well under 150 KB a day (docs/benchmarks.md, node-day).
TELEMETRY_S = 300
FULL_EVERY_MS = 3600 * 1000
MOVING = ("v", "t", "node", "at", "clock", "uptime_s", "heap_free", "signal_dbm", "temp_c",
          "amp_ma")
AMP_MIN_MA = 100  # an amplifier switched on that draws less is faulty (config "amp_min_ma")
HEALTH_CHECK_MS = 2000  # real ms: how often the amplifier's current is looked at
# Config keys a full report may show (never the key, never the broker password)
REPORT_CONFIG_KEYS = ("media_hosts", "telemetry_s", "cache_bytes", "relay_timeout_ms",
                      "item_lead_ms", "amp_min_ma")


def check_amp(node, send=True):
    """Judge the amplifier: faulty if the hardware says so, or if it is on and draws less
    than amp_min_ma where current is sensed. Off (and no hardware verdict), the last
    verdict stands: it clears when the amplifier next draws current. A change is sent
    as telemetry at once, so the headend raises or clears its alarm without waiting."""
    amp = node.board.amp
    fault = amp.fault()
    if fault is None and amp.is_on():
        ma = amp.current_ma()
        if ma is not None:
            fault = ma < node.amp_min_ma
    if fault is None or fault == node.amp_fault:
        return
    node.amp_fault = fault
    if send:
        asyncio.create_task(send_telemetry(node))


async def health_loop(node):
    while True:
        node.beat("health", HEALTH_CHECK_MS)
        await sleep_ms(HEALTH_CHECK_MS)  # real time, like the other transport timers
        check_amp(node)


def telemetry(node):
    check_amp(node, send=False)  # this message says it already
    board = node.board
    link = board.link
    clock = node.clock
    plan = node.plan
    return {"v": protocol.VERSION, "t": "telemetry", "node": node.id,
            "at": clock.time_ms(), "fw": node.fw, "board": board.name,
            "telemetry_s": node.telemetry_ms // 1000,  # the headend's offline time follows it
            "uptime_s": (clock.time_ms() - node.boot_ms) // 1000,
            "heap_free": board.heap_free(), "link": link.kind,
            "signal_dbm": link.signal_dbm(), "volume": node.volume,
            "amp": board.amp.is_on(), "playing": node.playing,
            "seq": node.seq.value, "session": node.session_no,
            "asrun_pending": len(node.pending), "rejections": node.rejections,
            "plan": plan["ver"] if plan else None,
            "plan_to": plan["to"] if plan else None,
            "on_air": node.on_air, "emergency": node.emergency,
            "cache_used": node.cache.used(), "cache_full": node.cache.full,
            "cache_error": node.cache_error, "clock": clock.time_ms(),
            "temp_c": board.temperature_c(), "amp_ma": board.amp.current_ma(),
            "amp_fault": node.amp_fault, "safe_mode": bool(node.safe_mode),
            "safe_why": node.safe_mode, "reset": board.reset_cause(),
            "reset_why": node.reset_why, "ota": otalib.summary(board, node.ota_last),
            "link_info": link.info()}


def full_report(node):
    """Telemetry plus what a technician asks for (op "report"): the media cache, the
    non-secret config and the as-run records not yet acknowledged; lists capped."""
    msg = telemetry(node)
    msg["full"] = True
    shas = sorted(node.cache.entries())
    msg["cache"] = shas[:protocol.REPORT_MAX_CACHE]
    msg["cache_n"] = len(shas)
    cfg = {"id": node.id, "quiet": node.quiet}
    for k in REPORT_CONFIG_KEYS:
        if k in node.config:
            cfg[k] = node.config[k]
    b = node.config.get("broker", {})
    cfg["broker"] = {"host": b.get("host"), "port": b.get("port"), "tls": bool(b.get("ca")),
                     "keepalive": b.get("keepalive", 30)}
    msg["config"] = cfg
    msg["pending_rids"] = [r["rid"] for r in node.pending[:protocol.REPORT_MAX_RIDS]]
    return msg


def settled(msg):
    """The fields of a telemetry message that only change when something happens (the
    modem's signal moves with signal_dbm, so it does not count)."""
    out = {}
    for k in msg:
        if k not in MOVING:
            out[k] = msg[k]
    li = out.get("link_info")
    if isinstance(li, dict) and "dbm" in li:
        li = dict(li)
        li.pop("dbm")
        out["link_info"] = li
    return out


async def send_telemetry(node, short_ok=False):
    """Telemetry: the whole message, or with short_ok only the moving readings ("part")
    when nothing else changed since the last whole one, sent less than FULL_EVERY_MS ago."""
    msg = telemetry(node)
    now_settled = settled(msg)
    if short_ok and now_settled == node._told \
            and ticks_diff(ticks_ms(), node._told_at) < FULL_EVERY_MS:
        short = {"part": True}
        for k in MOVING:
            short[k] = msg[k]
        return await node._publish(protocol.TELEMETRY, short, 0)
    sent = await node._publish(protocol.TELEMETRY, msg, 0)
    if sent:
        node._told, node._told_at = now_settled, ticks_ms()
    return sent


async def telemetry_loop(node):
    while True:
        node.beat("telemetry", node.telemetry_ms + 10000)
        await sleep_ms(node.telemetry_ms)  # transport timer: real time
        if node.session.connected:
            await send_telemetry(node, short_ok=True)

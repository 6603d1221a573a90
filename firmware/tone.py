# The test tone: a sine made on the node (no download, so it works with the media host down),
# played for op test_tone and for the local test button, with the amplifier's usual pre-roll
# and post-roll, and recorded in the as-run journal. Module functions over the Node
# (firmware/node.py), which owns playback (what plays, stopping it, the acks).
import asyncio
import struct

from firmware import asrun, health, plan as planlib, protocol
from firmware.player import AMP_PREROLL_MS

# 16-bit mono at the rate the headend prepares media in; one 100 ms block (3.2 KB) holding
# whole periods is computed once per tone and written again and again.
TONE_RATE = 16000
TONE_BLOCK_MS = 100
TONE_PEAK = 16384  # -6 dBFS: loud enough to hear, no clipping in the amplifier
LOCAL_TEST = "local test"  # as-run trigger of the test tone played by the local button


def _sin_cos(x):
    """sin and cos of a small angle (|x| <= pi / 2), by their series (no math module needed:
    the step of a tone's sine is computed once, the samples by rotation)."""
    s, c, term_s, term_c, x2 = x, 1.0, x, 1.0, x * x
    for k in range(1, 12):
        term_s = -term_s * x2 / ((2 * k) * (2 * k + 1))
        term_c = -term_c * x2 / ((2 * k - 1) * (2 * k))
        s += term_s
        c += term_c
    return s, c


def tone_block(hz, rate=TONE_RATE, block_ms=TONE_BLOCK_MS):
    """One block of 16-bit mono PCM holding a whole number of periods of a sine near hz (to
    1000 / block_ms Hz), so the block repeats without a click."""
    n = rate * block_ms // 1000
    periods = (hz * block_ms + 500) // 1000
    buf = bytearray(2 * n)
    ds, dc = _sin_cos(2 * 3.141592653589793 * periods / n)  # <= pi / 2 for hz <= rate / 4
    y, x = 0.0, 1.0  # sin and cos of the phase, advanced by one step per sample
    for i in range(n):
        struct.pack_into("<h", buf, 2 * i, int(TONE_PEAK * y))
        y, x = y * dc + x * ds, x * dc - y * ds
    return buf


def button_pressed(node):
    """The local test button: the test tone as op test_tone plays it (and refuses it:
    in safe mode, during an emergency, in quiet hours), recorded with trigger
    "local test"; a press while that tone plays is ignored."""
    if node.safe_mode or node.emergency is not None or node.rebooting \
            or planlib.in_quiet(node.quiet, node.clock.time_ms()):
        return
    if node.local_tone:
        return
    node.local_tone = True
    asyncio.create_task(_local_tone(node))


async def _local_tone(node):
    try:
        await node._stop_item("pre-empted by local test")
        await node._stop_playback("pre-empted by local test")
        cmd = {"id": "local-%d" % node.clock.time_ms(), "args": {}}
        node._play_task = asyncio.create_task(play(node, cmd, LOCAL_TEST))
        await node._play_task
    except BaseException:  # noqa: B036 - stopped like a test_tone; nothing more to do
        pass
    finally:
        node.local_tone = False


async def play(node, cmd, trigger="manual"):
    """op test_tone (or the local button, trigger "local test": no command to ack)."""
    local = trigger == LOCAL_TEST
    args = cmd["args"]
    hz = args.get("hz", protocol.TONE_HZ_DEFAULT)
    seconds = args.get("seconds", protocol.TONE_SECONDS_DEFAULT)
    board = node.board
    node.playing = cmd["id"]
    start = end = None
    outcome, reason = protocol.AIRED, None
    try:
        block = tone_block(hz)
        preroll = 0 if board.amp.is_on() else AMP_PREROLL_MS  # on: handed over
        board.amp.on()
        board.led.set("play")
        if preroll:
            await node.clock.sleep_ms(preroll)
        board.audio.open(TONE_RATE, 16, 1, cmd["id"])
        start = node.clock.time_ms()
        health.check_amp(node)
        if not local:
            await node._ack(cmd["id"], protocol.STARTED,
                            protocol.R_AMP_FAULT if node.amp_fault else None,
                            extra={"start": start})
        for _ in range(seconds * 1000 // TONE_BLOCK_MS):
            await board.audio.write(block)
        await board.audio.drain()
        end = node.clock.time_ms()
    except asyncio.CancelledError:
        end, outcome, reason = node._cut_short(start)
    except OSError as e:
        end = node.clock.time_ms() if start is not None else None
        outcome = protocol.PARTIAL if start is not None else protocol.OUTCOME_FAILED
        reason = "audio: %s" % e
    finally:
        await node._playback_ended(cmd)
        outcome, reason = asrun.heard(node, outcome, reason)
        asrun.store(node, {"v": protocol.VERSION, "t": "asrun", "node": node.id, "rid": 0,
                           "cmd": None if local else cmd["id"], "trigger": trigger,
                           "kind": "test", "media": "tone:%dHz" % hz,
                           "title": "Thử loa: âm thử %d Hz" % hz, "planned": None,
                           "start": start, "end": end, "outcome": outcome, "reason": reason})
        if local:
            node._wake.set()  # the plan resumes
        else:
            node._final_ack(cmd, start, end, outcome, reason)

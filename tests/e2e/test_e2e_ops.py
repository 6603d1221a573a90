"""The other ops on a live node: stop cuts a play short (and the diary says so), ping answers
with the node's clock, report sends telemetry, volume reaches the audio output."""

from __future__ import annotations

import json
import time

from sqlalchemy.orm import Session
from support.loaxa_stack import Stack, wait_until

from firmware import protocol
from headend.core.models import Node
from headend.media.store import write_test_tone

NODE = "n0004"


def test_stop_cuts_a_play_short_and_the_diary_says_partial(stack: Stack) -> None:
    write_test_tone(stack.home.media_dir, "long.wav", seconds=6)
    [play] = stack.play([NODE], name="long.wav", title="Bản tin dài")
    wait_until(lambda: stack.fleet.recordings(NODE), 10, "playback to start")
    time.sleep(1.0)
    [stop] = stack.run(stack.headend.send([NODE], "stop", {}))
    wait_until(lambda: stack.command(stop.id).status == "done", 10, "stop done")
    [rec] = wait_until(lambda: stack.asrun(), 10, "the as-run record")
    assert rec.command_id == play and rec.outcome == "partial" and rec.reason == "stopped"
    assert rec.start_ms is not None and rec.end_ms is not None
    assert 700 < rec.end_ms - rec.start_ms < 2500
    [audio] = stack.fleet.recordings(NODE)
    assert len(audio.pcm()) < 6 * 16000 * 2 / 2  # well short of the whole tone
    events = [e["event"] for e in stack.fleet.events(NODE)]
    assert events[-1] == "amp_off"
    assert stack.command(play).status == "failed"


def test_ping_report_and_volume(stack: Stack) -> None:
    futs = {}

    async def send(op: str, args: dict[str, object]) -> dict[str, object]:
        [cmd] = await stack.run_async_prepare(op, args)
        futs[op] = stack.headend.waiters.add(cmd.id, (protocol.DONE,))
        await stack.headend.publish_commands([cmd])
        return await futs[op]

    before = time.time() * 1000
    pong = stack.run(send("ping", {}))
    assert isinstance(pong["pong"], int) and abs(pong["pong"] - before) < 5000

    asked = int(time.time() * 1000)
    stack.run(send("report", {}))

    def fresh_telemetry() -> dict[str, object] | None:
        with Session(stack.engine) as s:
            node = s.get(Node, NODE)
            tel = json.loads(node.telemetry) if node and node.telemetry else None
        return tel if tel and tel["at"] >= asked else None

    tel = wait_until(fresh_telemetry, 10, "telemetry sent on report")
    assert tel["node"] == NODE and tel["link"] == "sim" and tel["amp"] is False
    assert isinstance(tel["heap_free"], int) and tel["seq"] >= 2

    done = stack.run(send("volume", {"level": 35}))
    assert done["volume"] == 35
    levels = [e["level"] for e in stack.fleet.events(NODE) if e["event"] == "volume"]
    assert levels[-1] == 35
    [cid] = stack.play([NODE])
    wait_until(lambda: stack.command(cid).status == "done", 15, "play at the new volume")
    assert stack.fleet.recordings(NODE)[-1].volume == 35

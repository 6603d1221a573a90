"""A signed play command goes from the headend through Mosquitto to MicroPython nodes, the
audio plays, and the diary records it."""

from __future__ import annotations

import wave
from datetime import datetime
from zoneinfo import ZoneInfo

from support.audio_check import dominant_hz, rms_dbfs
from support.loaxa_stack import Stack, wait_until

from headend.diary.reading import diary_for_day
from headend.media.store import TEST_TONE_HZ


def test_play_reaches_every_node_and_the_diary(stack: Stack) -> None:
    with wave.open(str(stack.tone)) as w:
        tone_pcm = w.readframes(w.getnframes())
        tone_rate = w.getframerate()
    cmd_ids = stack.play(title="Thông báo thử nghiệm")
    assert len(cmd_ids) == 5

    records = wait_until(lambda: len(stack.asrun()) == 5 and stack.asrun(), 30, "5 as-run records")
    for node_id in stack.node_ids:
        recs = stack.fleet.recordings(node_id)
        assert len(recs) == 1, f"{node_id} played {len(recs)} times"
        rec = recs[0]
        pcm = rec.pcm()
        # The node received exactly the tone the headend served, and it is a 1 kHz tone.
        assert (rec.rate, rec.bits, rec.channels) == (tone_rate, 16, 1)
        assert pcm == tone_pcm
        assert abs(dominant_hz(pcm, rec.rate) - TEST_TONE_HZ) < 5
        assert rms_dbfs(pcm) > -20
        # It took as long as the audio lasts: the sink is paced in real time.
        assert rec.end_ms is not None
        assert abs((rec.end_ms - rec.start_ms) - 3000) < 400
        # The amplifier was switched on before the audio and off after it.
        events = [e["event"] for e in stack.fleet.events(node_id)]
        amp_on, opened = events.index("amp_on"), events.index("audio_open")
        closed, amp_off = events.index("audio_close"), events.index("amp_off")
        assert amp_on < opened < closed < amp_off

    by_node = {r.node_id: r for r in records}
    assert sorted(by_node) == sorted(stack.node_ids)
    for node_id, r in by_node.items():
        played = stack.fleet.recordings(node_id)[0]
        assert r.outcome == "aired"
        assert r.title == "Thông báo thử nghiệm"
        assert r.command_id in cmd_ids
        assert r.start_ms is not None and r.end_ms is not None
        # The diary holds the node's actual times, which match when the audio reached the DAC.
        assert abs(r.start_ms - played.start_ms) < 200
        assert abs(r.end_ms - 3000 - r.start_ms) < 500
    for cid in cmd_ids:
        wait_until(lambda cid=cid: stack.command(cid).status == "done", 10, f"{cid} done")

    # The diary view a person reads has the five lines for today.
    day = datetime.fromtimestamp(records[0].start_ms / 1000, ZoneInfo("Asia/Ho_Chi_Minh")).date()
    diary = diary_for_day(stack.engine, day)
    assert len(diary) == 5
    assert {d.village for d in diary} == {f"Thôn {i}" for i in range(1, 6)}
    assert all(d.duration_s == 3 for d in diary)

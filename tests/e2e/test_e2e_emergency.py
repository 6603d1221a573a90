"""Emergency broadcasts: they interrupt whatever airs, are logged with who sent them, and the
nodes resume their plan afterwards; `loaxa broadcast emergency` speaks typed text."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.audio_check import dominant_hz, rms_dbfs
from support.loaxa_stack import Stack, wait_until
from support.plan_scenarios import (
    MONDAY,
    TZ,
    VOV_10_MIN,
    add_stations,
    commune,
    fast_clock,
    local_ms,
    records_settled,
    schedule_text,
    wait_sim,
)

from headend.cli.main import main
from headend.core.models import Broadcast, Command
from headend.media.library import MediaLibrary
from headend.nodes.emergency import (
    AIRED,
    AlreadySent,
    EmergencyError,
    broadcast,
    emergency_audio,
    find_target,
    send,
    village_states,
)
from hwsim.stations import Stations

pytestmark = pytest.mark.timeout(300)

def test_an_emergency_interrupts_the_relay_and_the_relay_resumes(tmp_path: Path) -> None:
    rate = 20
    clock = fast_clock(datetime(2026, 11, 23, 5, 59, tzinfo=TZ), rate, lead_s=5)
    spec = commune(3)
    with Stations() as stations:
        urls = add_stations(stations)
        schedule = tmp_path / "xa-thu.toml"
        schedule.write_text(schedule_text(spec, VOV_10_MIN))
        stack = Stack(tmp_path, commune=spec, clock=clock, media_hosts=[stations.host],
                      per_process=3)
        stack.start()
        try:
            stack.start_planning(schedule, urls)
            wait_sim(clock, local_ms(MONDAY, "06:03"))
            library = MediaLibrary(stack.home.media_dir, f"http://{stack.media_host}")
            media = library.add_bytes(stack.tone.read_bytes())  # 3 s, 1 kHz
            target = find_target(stack.engine, spec.id, ["thon-1", "thon-2"])
            sent_at = clock.time_ms()
            result = stack.run(broadcast(stack.headend, stack.engine, target, media,
                                         "Cảnh báo lũ quét", "chu-tich-xa", "test"))
            wait_sim(clock, local_ms(MONDAY, "06:11"))
            records = records_settled(stack, want=1 + 2 * 3)
            with Session(stack.engine) as s:
                logged = s.scalars(select(Broadcast)).one()
        finally:
            stack.stop()
    assert sorted(result.started) == ["n01", "n02"] and not result.refused
    assert logged.sent_by == "chu-tich-xa" and json.loads(logged.villages) == ["thon-1", "thon-2"]
    assert logged.started == 2
    item = f"vov-sang@{MONDAY.isoformat()}"
    for node in ("n01", "n02"):
        played = stack.fleet.recordings(node)
        labels = [r.label for r in played]
        # The relay, cut by the emergency, then the relay again where it would be now.
        assert labels[0] == item and labels[-1] == item, labels
        emergency = [r for r in played if r.label not in (item,)]
        assert len(emergency) == 1
        em = emergency[0]
        assert abs(em.start_ms - sent_at) <= 2 * rate * 1000  # within 2 s real
        assert abs(dominant_hz(em.pcm(), em.rate) - 1000) < 20
        assert stations.which(played[0].pcm()) == "vov1-primary"
        assert played[0].end_ms is not None and played[0].end_ms <= em.start_ms
        assert played[-1].start_ms >= (em.end_ms or 0)
        recs = [r for r in records if r.node_id == node]
        em_rec = [r for r in recs if r.trigger == "emergency"]
        assert len(em_rec) == 1 and em_rec[0].outcome == "aired"
        relay = sorted((r for r in recs if r.item_id == item), key=lambda r: r.start_ms or 0)
        assert [r.outcome for r in relay] == ["partial", "aired"], [
            (r.outcome, r.reason) for r in relay]
        assert relay[-1].end_ms is not None
        assert abs(relay[-1].end_ms - local_ms(MONDAY, "06:10")) <= 30_000
    # Thôn 3 was not targeted: its relay ran through.
    (n03,) = [r for r in records if r.node_id == "n03" and r.item_id == item]
    assert n03.outcome == "aired"


def test_broadcast_emergency_cli_speaks_text_on_every_node(stack: Stack) -> None:
    stack.home.running_path.write_text(json.dumps({
        "pid": os.getpid(), "broker_port": stack.broker.port,
        "node_port": stack.broker.node_port, "web_port": stack.web_port,
        "media_base": f"http://{stack.media_host}"}))
    code = main(["--home", str(stack.home.root), "broadcast", "emergency",
                 "--commune", "test-xa", "--text", "Bà con chú ý, nước lũ đang lên.",
                 "--operator", "Nguyễn Văn An"])
    assert code == 0
    wait_until(lambda: all(any(r.label.startswith("c") for r in stack.fleet.recordings(n))
                           for n in stack.node_ids), 30, "the emergency on every node")
    with Session(stack.engine) as s:
        logged = s.scalars(select(Broadcast)).one()
        assert logged.sent_by == "Nguyễn Văn An" and logged.text.startswith("Bà con")
        assert logged.nodes == 5 and logged.started == 5
    wait_until(lambda: len([r for r in stack.asrun() if r.trigger == "emergency"]) == 5, 30,
               "as-run records of the emergency")
    for node in stack.node_ids:
        (rec,) = stack.fleet.recordings(node)
        pcm = rec.pcm()
        assert rec.rate == 16000 and 1.0 <= len(pcm) / 32000 <= 10.0  # a spoken sentence
        assert rms_dbfs(pcm) > -35  # audible speech, not silence


@pytest.mark.parametrize("args, message", [
    (["--commune", "khong-co", "--text", "x"], "unknown commune"),
    (["--commune", "test-xa", "--villages", "v1", "v99", "--text", "x"], "v99"),
    (["--commune", "test-xa"], "--file"),
    (["--commune", "test-xa", "--text", "  "], "empty text"),
    (["--commune", "test-xa", "--file", "/nonexistent.wav"], "không đọc được"),
])
def test_broadcast_emergency_cli_refuses_bad_requests(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    stack = Stack(tmp_path, nodes=2)
    try:
        stack.home.running_path.write_text(json.dumps({
            "pid": os.getpid(), "broker_port": stack.broker.port,
            "node_port": stack.broker.node_port, "web_port": stack.web_port}))
        code = main(["--home", str(stack.home.root), "broadcast", "emergency", *args])
    finally:
        stack.engine.dispose()
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    with Session(stack.engine) as s:
        assert s.scalars(select(Broadcast)).all() == []


def test_broadcast_emergency_needs_a_running_headend(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = Stack(tmp_path, nodes=2)
    stack.engine.dispose()
    code = main(["--home", str(stack.home.root), "broadcast", "emergency",
                 "--commune", "test-xa", "--text", "Thử"])
    assert code == 2 and "loaxa serve" in capsys.readouterr().err


def test_emergency_audio_refuses_a_file_that_is_not_audio(tmp_path: Path) -> None:
    fake = tmp_path / "thong-bao.mp3"
    fake.write_text("đây không phải âm thanh")
    library = MediaLibrary(tmp_path, "http://127.0.0.1:1")
    with pytest.raises(EmergencyError, match="không phải âm thanh"):
        emergency_audio(library, fake, None)
    assert list(tmp_path.iterdir()) == [fake]


def test_an_emergency_is_sent_once_per_key_however_often_it_is_asked(stack: Stack) -> None:
    """Two requests with the confirmation's key (a reload, a double tap): the second finds
    the first broadcast and sends nothing; the status says each village's state."""
    library = MediaLibrary(stack.home.media_dir, f"http://{stack.media_host}")
    media = library.add_bytes(stack.tone.read_bytes())
    target = find_target(stack.engine, "test-xa", None)
    key = "k" * 24
    sent = stack.run(send(stack.headend, stack.engine, target, media, "Cháy rừng",
                          "canbo", "test", key=key))
    with pytest.raises(AlreadySent) as again:
        stack.run(send(stack.headend, stack.engine, target, media, "Cháy rừng", "canbo",
                       "test", key=key))
    assert again.value.broadcast_id == sent.broadcast_id
    result = stack.run(sent.wait(15))
    assert sorted(result.started) == stack.node_ids
    with Session(stack.engine) as s:
        assert s.scalar(select(func.count()).select_from(Command)
                        .where(Command.op == "emergency")) == len(stack.node_ids)
        assert s.scalar(select(func.count()).select_from(Broadcast)) == 1
    # The status page's view: in the end from the nodes' as-run records, as the headend
    # stores them: aired (and heard) in every village.
    wait_until(lambda: [(v.village, v.state) for v in village_states(
        stack.engine, sent.broadcast_id, stack.clock.time_ms())] == [
        (f"Thôn {i}", AIRED) for i in range(1, 6)], 30, "every village aired")
    for node in stack.node_ids:
        wait_until(lambda n=node: len(stack.fleet.recordings(n)) == 1, 15, "one airing")

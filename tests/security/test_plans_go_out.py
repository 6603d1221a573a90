"""Plans always go out: a calendar crowded past what one plan can carry is refused at the edit,
in Vietnamese, naming the limit, and the plans of every node still build; a schedule file that
overloads one village's nodes costs only those nodes their new plan (they keep the last one,
with an alarm), never the others'."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from support.plan_scenarios import write_wav
from support.schedule_files import HEAD, ms, slot

from firmware import protocol
from headend.communes.registry import provision_commune
from headend.core.alarms import PLAN_TOO_LARGE, list_alarms
from headend.core.audit import Actor
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import Bulletin
from headend.media.library import MediaLibrary
from headend.planning.calendar import CalendarError, add_item
from headend.planning.publishing import PlanPublisher
from headend.planning.schedule import load_schedule

DAY = date(2026, 3, 3)
NOW = ms(date(2026, 3, 2), 8 * 60)  # the day before, 08:00
ACTOR = Actor("canbo", "officer", "test")


def publisher(home: Home, engine: object, schedule_path: Path) -> PlanPublisher:
    async def publish(node_id: str, payload: bytes) -> None:
        raise AssertionError("build() publishes nothing")

    return PlanPublisher(engine, schedule_path,  # type: ignore[arg-type]
                         MediaLibrary(home.media_dir, "http://127.0.0.1:8080"), publish,
                         lambda: NOW)


def test_a_calendar_flood_is_refused_at_the_edit_and_plans_still_build(tmp_path: Path) -> None:
    path = tmp_path / "thu.toml"
    path.write_text(HEAD, encoding="utf-8")
    schedule = load_schedule(path)
    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, schedule.commune)
    write_wav(home.media_dir / "tb.wav", 20, 1)
    with Session(engine) as s, s.begin():
        b = Bulletin(commune_id="thu", title="Thông báo ngắn", origin="upload",
                     status="approved", duration_ms=20_000, media=json.dumps({"esp32": "tb.wav"}),
                     created_by="canbo", created_ms=NOW, decided_by="truongban")
        s.add(b)
        s.flush()
        bid = b.id
    added = 0
    with pytest.raises(CalendarError) as refused:
        for minute in range(6 * 60, 21 * 60, 2):  # a one-minute notice every two minutes
            add_item(engine, schedule, home.media_dir, ACTOR, bid, DAY, minute, [], NOW)
            added += 1
    message = str(refused.value)
    assert "quá dày" in message and f"{protocol.MAX_PLAN_PAYLOAD // 1024} KB" in message
    assert 10 < added < 200, added
    # What was accepted still goes out, to every node.
    plans = publisher(home, engine, path).build(NOW)
    assert sorted(p.node_id for p in plans) == ["n0-a", "n0-b", "n1-a", "n2-a"]
    assert all(len(p.payload) <= protocol.MAX_PLAN_PAYLOAD for p in plans)
    assert max(p.items for p in plans) >= added
    assert list_alarms(engine, open_only=True) == []


def test_one_overloaded_village_costs_only_its_own_nodes_their_plan(tmp_path: Path) -> None:
    write_wav(tmp_path / "tb.wav", 20, 1)
    notices = "".join(slot(f"tb-{i}", "notice", f"{6 + i // 30:02d}:{i % 30 * 2:02d}",
                           f"{6 + i // 30:02d}:{i % 30 * 2 + 1:02d}", media='"tb.wav"',
                           target='["v1"]') for i in range(150))
    path = tmp_path / "thu.toml"
    path.write_text(HEAD + notices, encoding="utf-8")
    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, load_schedule(path).commune)
    plans = publisher(home, engine, path).build(NOW)
    assert sorted(p.node_id for p in plans) == ["n0-a", "n0-b", "n2-a"]
    [alarm] = list_alarms(engine, open_only=True)
    assert (alarm.kind, alarm.subject) == (PLAN_TOO_LARGE, "n1-a")
    assert f"{protocol.MAX_PLAN_PAYLOAD // 1024} KB" in alarm.detail
    # The file is mended; a headend started afresh publishes to n1-a and clears its alarm.
    path.write_text(HEAD + notices[:notices.index('\n[[slots]]\nid = "tb-20"')],
                    encoding="utf-8")
    assert "n1-a" in [p.node_id for p in publisher(home, engine, path).build(NOW)]
    assert list_alarms(engine, open_only=True) == []

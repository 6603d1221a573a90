"""Node health alarms: raised once and cleared once from telemetry, as-run records and the
periodic check, with hysteresis where readings hover."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session
from support.loaxa_stack import small_commune

from headend.communes.registry import provision_commune
from headend.core.alarms import (
    AMP_FAULT,
    BROADCAST_MISSED,
    CLOCK_OFFSET,
    DETAIL_NO_REASON,
    DETAILS,
    LABELS_VI,
    NODE_OFFLINE,
    TEMPERATURE,
    VILLAGE_SILENT,
    WEAK_SIGNAL,
    detail_text,
    list_alarms,
)
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.i18n import translator
from headend.core.models import Node
from headend.nodes.health import (
    BOARD_TEMP_MAX_C,
    DEFAULT_POLICY,
    HealthPolicy,
    check_nodes,
    watch,
)
from headend.nodes.ingest import store_reports

SEC = 1000
MIN = 60_000


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, small_commune(3))
    return engine


def tel(node: str, at: int, **fields: Any) -> tuple[str, str, dict[str, Any]]:
    msg = {"v": 1, "t": "telemetry", "node": node, "at": at, "_rx": at, "amp_fault": False,
           "signal_dbm": -80, "link": "4g"}
    msg.update(fields)
    return node, "telemetry", msg


def history(engine: Engine, kind: str) -> list[tuple[str, int, int | None]]:
    return [(a.subject, a.raised_ms, a.cleared_ms) for a in list_alarms(engine)
            if a.kind == kind]


def test_amplifier_fault_is_raised_once_and_cleared_once(engine: Engine) -> None:
    for t in (1, 2, 3):
        store_reports(engine, [tel("n0001", t, amp_fault=True, amp_ma=0)], t)
    for t in (4, 5):
        store_reports(engine, [tel("n0001", t)], t)
    assert history(engine, AMP_FAULT) == [("n0001", 1, 4)]


def test_weak_signal_has_hysteresis(engine: Engine) -> None:
    for t, dbm in enumerate((-90, -107, -103, -106, -102, -99, -104, -98), 1):
        store_reports(engine, [tel("n0002", t, signal_dbm=dbm)], t)
    # Raised at -107; -103/-106/-102 hover inside the band; cleared above -100 (at -99).
    assert history(engine, WEAK_SIGNAL) == [("n0002", 2, 6)]


def test_clock_offset_above_two_seconds(engine: Engine) -> None:
    store_reports(engine, [tel("n0003", 10_000, _rx=10_500)], 1)  # 0.5 s: fine
    store_reports(engine, [tel("n0003", 12_600, _rx=10_000)], 2)  # 2.6 s ahead
    store_reports(engine, [tel("n0003", 11_500, _rx=10_000)], 3)  # 1.5 s: still raised
    store_reports(engine, [tel("n0003", 10_200, _rx=10_000)], 4)  # 0.2 s: cleared
    assert history(engine, CLOCK_OFFSET) == [("n0003", 2, 4)]


def asrun(node: str, rid: int, outcome: str) -> tuple[str, str, dict[str, Any]]:
    aired = outcome == "aired"
    return node, "asrun", {"v": 1, "t": "asrun", "node": node, "rid": rid, "trigger": "plan",
                           "item": f"tin@{rid}", "kind": "local_bulletin", "title": "Tin",
                           "planned": rid * MIN, "start": rid * MIN if aired else None,
                           "end": rid * MIN + 1000 if aired else None, "outcome": outcome,
                           "reason": None if aired else "quiet_hours", "src": "cache"}


def test_a_missed_broadcast_raises_once_and_the_next_aired_item_clears(engine: Engine) -> None:
    store_reports(engine, [asrun("n0001", 1, "missed"), asrun("n0001", 2, "failed")], 10)
    store_reports(engine, [asrun("n0001", 2, "failed")], 11)  # resent: stored once
    assert history(engine, BROADCAST_MISSED) == [("n0001", 10, None)]
    # Records out of order: the aired item 3 arrives before the missed item 1 of another node.
    store_reports(engine, [asrun("n0001", 3, "aired")], 12)
    assert history(engine, BROADCAST_MISSED) == [("n0001", 10, 12)]


def test_offline_after_n_minutes_and_the_village_whose_speakers_all_failed(
        engine: Engine) -> None:
    policy = HealthPolicy(offline_after_ms=10 * MIN)
    with engine.begin() as conn:
        conn.execute(update(Node).values(online=True, last_seen_ms=0))
        conn.execute(update(Node).where(Node.id == "n0003").values(last_seen_ms=None))
    check_nodes(engine, 9 * MIN, policy)
    assert history(engine, NODE_OFFLINE) == []  # 9 minutes of silence: not yet
    with engine.begin() as conn:
        conn.execute(update(Node).where(Node.id == "n0002").values(last_seen_ms=10 * MIN))
    for now in (11 * MIN, 12 * MIN, 13 * MIN):
        check_nodes(engine, now, policy)
    # n0003 never connected (not installed yet): no alarm for it.
    assert history(engine, NODE_OFFLINE) == [("n0001", 11 * MIN, None)]
    # small_commune: one node per village, so village v1 has lost all its loudspeakers.
    assert history(engine, VILLAGE_SILENT) == [("v1", 11 * MIN, None)]
    with engine.begin() as conn:
        conn.execute(update(Node).where(Node.id == "n0001").values(last_seen_ms=14 * MIN))
    check_nodes(engine, 15 * MIN, policy)
    check_nodes(engine, 16 * MIN, policy)
    assert history(engine, NODE_OFFLINE) == [("n0001", 11 * MIN, 15 * MIN)]
    assert history(engine, VILLAGE_SILENT) == [("v1", 11 * MIN, 15 * MIN)]


def stored_telemetry(engine: Engine, node: str) -> dict[str, Any]:
    with Session(engine) as s:
        row = s.get(Node, node)
        assert row is not None and row.telemetry
        return dict(json.loads(row.telemetry))


def test_short_telemetry_updates_the_last_full_one(engine: Engine) -> None:
    """The firmware sends its full telemetry when something besides the moving readings has
    changed, and otherwise a short message of those readings ("part"): the headend keeps the
    full picture, and alarms still follow the readings in short messages."""
    store_reports(engine, [tel("n0001", 1000, fw="0.2.0", plan=7, heap_free=50_000)], 1000)
    store_reports(engine, [tel("n0001", 2000, part=True, heap_free=48_000, signal_dbm=-70)],
                  2000)
    got = stored_telemetry(engine, "n0001")
    assert (got["fw"], got["plan"], got["heap_free"], got["at"]) == ("0.2.0", 7, 48_000, 2000)
    assert "part" not in got
    # Full and short in one batch: the short one lands on the full one of the same batch.
    store_reports(engine, [tel("n0002", 3000, plan=9, temp_c=40),
                           tel("n0002", 3100, part=True, temp_c=41)], 3100)
    got = stored_telemetry(engine, "n0002")
    assert (got["plan"], got["temp_c"]) == (9, 41)
    # A weak signal in short messages raises the alarm as it does in full ones.
    for t in (4000, 5000, 6000):
        store_reports(engine, [tel("n0001", t, part=True, signal_dbm=-110)], t)
    assert [s for s, _, _ in history(engine, WEAK_SIGNAL)] == ["n0001"]


# --- Offline after two telemetry periods, temperature per board, details in Vietnamese -----

def seen(engine: Engine, node: str, at: int, telemetry: dict[str, Any] | None = None) -> None:
    with engine.begin() as conn:
        values: dict[str, Any] = {"online": True, "last_seen_ms": at}
        if telemetry is not None:
            values["telemetry"] = json.dumps(telemetry)
        conn.execute(update(Node).where(Node.id == node).values(**values))


def open_alarms(engine: Engine, kind: str) -> dict[str, str]:
    """subject -> detail of the open alarms of `kind`."""
    return {a.subject: a.detail for a in list_alarms(engine, open_only=True) if a.kind == kind}


def test_offline_is_raised_after_two_of_the_nodes_own_telemetry_periods(engine: Engine) -> None:
    """Before: 10 minutes for every node, whatever its period (a demo node reporting every
    10 s was called offline only 10 minutes after it went quiet). Now: 2 of its periods, as
    its telemetry gives them, and the firmware's default (300 s) for a node that gives none."""
    assert DEFAULT_POLICY.offline_periods == 2 and DEFAULT_POLICY.offline_after_ms is None
    assert DEFAULT_POLICY.telemetry_s == 300
    seen(engine, "n0001", 0, {"board": "esp32", "telemetry_s": 60})  # every minute
    seen(engine, "n0002", 0, {"board": "esp32"})  # older firmware: no period given
    seen(engine, "n0003", 0, {"board": "esp32", "telemetry_s": 10})
    check_nodes(engine, 20 * SEC)
    assert open_alarms(engine, NODE_OFFLINE) == {}
    check_nodes(engine, 21 * SEC)
    assert set(open_alarms(engine, NODE_OFFLINE)) == {"n0003"}  # 2 x 10 s
    check_nodes(engine, 2 * MIN)
    assert set(open_alarms(engine, NODE_OFFLINE)) == {"n0003"}  # 2 x 60 s: not yet
    check_nodes(engine, 2 * MIN + SEC)
    assert set(open_alarms(engine, NODE_OFFLINE)) == {"n0001", "n0003"}
    check_nodes(engine, 10 * MIN)
    assert "n0002" not in open_alarms(engine, NODE_OFFLINE)
    check_nodes(engine, 10 * MIN + SEC)
    details = open_alarms(engine, NODE_OFFLINE)
    assert set(details) == {"n0001", "n0002", "n0003"}
    assert details["n0002"] == "Không nhận được tin nào từ cụm loa trong 10 phút"
    # A short message keeps the period the node gave in its last full one.
    store_reports(engine, [tel("n0001", 11 * MIN, telemetry_s=60, board="esp32")], 11 * MIN)
    store_reports(engine, [tel("n0001", 12 * MIN, part=True, temp_c=40)], 12 * MIN)
    check_nodes(engine, 14 * MIN)
    assert "n0001" not in open_alarms(engine, NODE_OFFLINE)
    check_nodes(engine, 14 * MIN + SEC)
    assert "n0001" in open_alarms(engine, NODE_OFFLINE)


def test_silence_counts_from_when_the_headend_started_listening(engine: Engine) -> None:
    """After the headend's own outage every node's last word is old: a node gets its two
    periods from the headend's start before it is called offline."""
    seen(engine, "n0001", 0, {"telemetry_s": 60})
    started = 3 * 3600_000
    check_nodes(engine, started + 2 * MIN, since_ms=started)
    assert open_alarms(engine, NODE_OFFLINE) == {}
    check_nodes(engine, started + 2 * MIN + SEC, since_ms=started)
    assert set(open_alarms(engine, NODE_OFFLINE)) == {"n0001"}


def test_the_watch_raises_offline_from_the_headends_start(engine: Engine) -> None:
    seen(engine, "n0001", 0, {"telemetry_s": 60})
    now = [3 * 3600_000]
    checks: list[int] = []

    class Stop(Exception):
        pass

    async def sleep_ms(ms: int) -> None:
        now[0] += ms
        checks.append(now[0])
        if len(checks) > 3:
            raise Stop

    with pytest.raises(Stop):
        asyncio.run(watch(engine, lambda: now[0], sleep_ms, HealthPolicy(watch_every_ms=MIN)))
    # Checked at +1 min and +2 min (not yet), and at +3 min: offline.
    assert history(engine, NODE_OFFLINE) == [("n0001", 3 * 3600_000 + 3 * MIN, None)]


def test_a_fixed_offline_time_can_be_configured(engine: Engine) -> None:
    seen(engine, "n0001", 0, {"telemetry_s": 10})
    policy = HealthPolicy(offline_after_ms=5 * MIN)
    check_nodes(engine, 5 * MIN, policy)
    assert open_alarms(engine, NODE_OFFLINE) == {}
    check_nodes(engine, 5 * MIN + 1, policy)
    assert set(open_alarms(engine, NODE_OFFLINE)) == {"n0001"}
    assert HealthPolicy(offline_periods=3).offline_ms(60) == 3 * MIN


def test_temperature_alarm_against_each_boards_limit(engine: Engine) -> None:
    """72 °C is too hot for an ESP32 (limit 70) and not for a Raspberry Pi (limit 80)."""
    assert (BOARD_TEMP_MAX_C["esp32"], BOARD_TEMP_MAX_C["rpi"]) == (70, 80)
    store_reports(engine, [tel("n0001", 1, board="esp32", temp_c=72),
                           tel("n0002", 1, board="rpi", temp_c=72)], 1)
    hot = open_alarms(engine, TEMPERATURE)
    assert hot == {"n0001": "Nhiệt độ 72 °C, vượt ngưỡng 70 °C của bo mạch esp32"}
    store_reports(engine, [tel("n0002", 2, board="rpi", temp_c=81)], 2)
    assert set(open_alarms(engine, TEMPERATURE)) == {"n0001", "n0002"}
    # Hysteresis: the ESP32's alarm clears 5 °C under its limit, not while it hovers.
    for t, temp in ((3, 69), (4, 71), (5, 66), (6, 65)):
        store_reports(engine, [tel("n0001", t, part=True, temp_c=temp)], t)
    assert history(engine, TEMPERATURE)[0] == ("n0001", 1, 6)
    # A board nobody listed gets the default limit; the limits are the policy's to change.
    store_reports(engine, [tel("n0003", 7, board="esp32s3", temp_c=71)], 7)
    assert "n0003" in open_alarms(engine, TEMPERATURE)
    cool = HealthPolicy(temp_max_c={"rpi": 60})
    assert (cool.temp_limit_c("rpi"), cool.temp_limit_c("esp32"), cool.temp_limit_c(None)) \
        == (60, 70, 70)
    assert LABELS_VI[TEMPERATURE] == "Cụm loa quá nóng"


def test_alarm_details_are_vietnamese_and_read_in_english_on_request(engine: Engine) -> None:
    """Before: "amplifier draws 0 mA while on", "not heard from for 11 min" in every
    language. The stored detail is Vietnamese (the CLI and the API show it); a page in
    English shows the same values in English."""
    store_reports(engine, [tel("n0001", 1, amp=True, amp_fault=True, amp_ma=0),
                           tel("n0002", 1, amp=False, amp_fault=True, amp_ma=None,
                               signal_dbm=-110),
                           asrun("n0003", 1, "missed")], 1)
    amp = open_alarms(engine, AMP_FAULT)
    assert amp == {"n0001": "Ampli đang bật nhưng chỉ tiêu thụ 0 mA",
                   "n0002": "Ampli báo lỗi (phần cứng báo, hoặc dòng điện quá thấp khi bật)"}
    assert open_alarms(engine, WEAK_SIGNAL) == {"n0002": "Sóng -110 dBm (4g)"}
    assert open_alarms(engine, BROADCAST_MISSED) == {
        "n0003": "Bỏ lỡ “Tin”: đang trong giờ nghỉ của thôn"}
    with engine.begin() as conn:
        conn.execute(update(Node).where(Node.id == "n0001").values(online=False))
    check_nodes(engine, 30 * MIN)
    gone = open_alarms(engine, NODE_OFFLINE)["n0001"]
    assert gone == ("Không nhận được tin nào từ cụm loa trong 29 phút (máy chủ MQTT đã báo "
                    "cụm loa mất kết nối)")
    silent = open_alarms(engine, VILLAGE_SILENT)["v1"]
    assert silent == "Cụm loa duy nhất của thôn mất kết nối hoặc lỗi ampli: n0001"

    en, vi = translator("en"), translator("vi")
    assert detail_text(amp["n0001"], en) == "The amplifier is on but draws only 0 mA"
    assert detail_text(amp["n0001"], vi) == amp["n0001"]
    assert detail_text(gone, en) == ("Nothing heard from the cluster for 29 min (the MQTT "
                                     "broker reported it disconnected)")
    assert detail_text(silent, en) == ("The village's only cluster is offline or has an "
                                       "amplifier fault: n0001")
    assert detail_text("Bỏ lỡ “Tin”: không rõ lý do", en) == "Missed “Tin”: no reason given"
    # Anything else (a relay probe's error) is shown as it is.
    assert detail_text("vov@x: http://a/live.mp3: timed out", en) == \
        "vov@x: http://a/live.mp3: timed out"
    every = [*DETAILS, DETAIL_NO_REASON, *LABELS_VI.values()]
    english = [en(d) for d in every]
    assert all(e != d for e, d in zip(english, every, strict=True)), [
        d for e, d in zip(english, every, strict=True) if e == d]

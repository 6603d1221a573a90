"""Node health for technicians: alarms raised once and cleared once from what nodes report and
from what they stop reporting (docs/technician.md, "Alarms").

- From telemetry, as it is stored: amplifier fault, weak signal, clock offset, temperature
  (against a limit per board).
- From as-run records: a missed or failed broadcast (cleared when the node next airs an item).
- From a periodic watch: a node not heard from for two of its telemetry periods (offline), and
  a village whose loudspeakers have all failed (which threatens the 2/3 threshold of criterion
  8.3).

Thresholds have hysteresis where a reading hovers (signal, clock, temperature), so an alarm is
not raised and cleared over and over while the value sits at the edge. Details are written in
Vietnamese from the templates in headend/core/alarms.py (pages show them in their language).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from firmware import protocol
from firmware.health import TELEMETRY_S
from headend.core.alarms import (
    AMP_FAULT,
    BROADCAST_MISSED,
    CLOCK_OFFSET,
    DETAIL_AMP_CURRENT,
    DETAIL_AMP_REPORTED,
    DETAIL_CLOCK,
    DETAIL_FAILED,
    DETAIL_GONE_MIN,
    DETAIL_GONE_S,
    DETAIL_HOT,
    DETAIL_MISSED,
    DETAIL_NO_REASON,
    DETAIL_SILENT_MIN,
    DETAIL_SILENT_S,
    DETAIL_VILLAGE_ALL,
    DETAIL_VILLAGE_ONE,
    DETAIL_WEAK_SIGNAL,
    NODE_OFFLINE,
    TEMPERATURE,
    VILLAGE_SILENT,
    WEAK_SIGNAL,
    Decision,
    settle,
)
from headend.core.models import NODE_VILLAGE, Alarm, Node, Village
from headend.diary.reasons import reason_vi

log = logging.getLogger("loaxa.health")

# The highest safe temperature (°C) each board reports in `temp_c`, by the `board` its
# telemetry names (hal/*: Board.name). An ESP32 reports its chip's own sensor; its modules are
# rated for 85 °C at most: 70 leaves room for the enclosure on a pole in the sun.
# A Raspberry Pi reports its SoC, which throttles itself at 80 (85 at the hard limit). The
# simulator stands in for an ESP32. Boards not listed use `HealthPolicy.temp_max_default_c`.
BOARD_TEMP_MAX_C: Mapping[str, int] = {"esp32": 70, "rpi": 80, "sim": 70}


@dataclass(frozen=True)
class HealthPolicy:
    """The alarm thresholds (docs/technician.md, "Alarms"). A node is offline after
    `offline_periods` of its own telemetry period without a word (the `telemetry_s` its
    telemetry reports; the firmware's default where it reports none), or after
    `offline_after_ms` for every node when that is set."""

    offline_periods: int = 2
    offline_after_ms: int | None = None
    telemetry_s: int = int(TELEMETRY_S)  # a node's period when its telemetry gives none
    weak_signal_dbm: int = -105  # raised below this (about 2 bars of 4G); cleared above ...
    signal_clear_dbm: int = -100
    clock_offset_ms: int = 2000  # raised above this; cleared below half of it
    temp_max_c: Mapping[str, int] = field(default_factory=lambda: dict(BOARD_TEMP_MAX_C),
                                          hash=False)
    temp_max_default_c: int = 70
    temp_clear_c: int = 5  # a hot board's alarm clears this far below its limit
    watch_every_ms: int = 60_000

    def offline_ms(self, telemetry_s: int | None = None) -> int:
        """How long a node whose period is `telemetry_s` may stay silent."""
        if self.offline_after_ms is not None:
            return self.offline_after_ms
        period = telemetry_s if telemetry_s and telemetry_s > 0 else self.telemetry_s
        return self.offline_periods * period * 1000

    def temp_limit_c(self, board: Any) -> int:
        limit = self.temp_max_c.get(board) if isinstance(board, str) else None
        return self.temp_max_default_c if limit is None else limit


DEFAULT_POLICY = HealthPolicy()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _amp_detail(tel: dict[str, Any]) -> str:
    ma = _int(tel.get("amp_ma"))
    if tel.get("amp") is True and ma is not None:
        return DETAIL_AMP_CURRENT.format(ma=ma)
    return DETAIL_AMP_REPORTED


def telemetry_alarms(conn: Connection, latest: dict[str, dict[str, Any]],
                     communes: dict[str, str], now: int, policy: HealthPolicy) -> None:
    """Alarms from each node's newest telemetry of a batch, as stored (with the clock offset
    seen on its arrival, `clock_offset_ms`)."""
    amp: dict[str, Decision] = {}
    signal: dict[str, Decision] = {}
    clock: dict[str, Decision] = {}
    hot: dict[str, Decision] = {}
    for node_id, tel in latest.items():
        commune = communes.get(node_id)
        fault = tel.get("amp_fault")
        if isinstance(fault, bool):
            amp[node_id] = (fault, _amp_detail(tel) if fault else "", commune)
        dbm = _int(tel.get("signal_dbm"))
        if dbm is not None and dbm < policy.weak_signal_dbm:
            signal[node_id] = (True, DETAIL_WEAK_SIGNAL.format(dbm=dbm,
                                                               link=tel.get("link") or "?"),
                               commune)
        elif dbm is not None and dbm > policy.signal_clear_dbm:
            signal[node_id] = (False, "", commune)
        offset = _int(tel.get("clock_offset_ms"))
        if offset is not None:
            if abs(offset) > policy.clock_offset_ms:
                clock[node_id] = (True, DETAIL_CLOCK.format(ms=f"{offset:+d}"), commune)
            elif abs(offset) < policy.clock_offset_ms // 2:
                clock[node_id] = (False, "", commune)
        temp = _int(tel.get("temp_c"))
        if temp is not None:
            limit = policy.temp_limit_c(tel.get("board"))
            if temp > limit:
                hot[node_id] = (True, DETAIL_HOT.format(temp=temp, limit=limit,
                                                        board=tel.get("board") or "?"),
                                commune)
            elif temp <= limit - policy.temp_clear_c:
                hot[node_id] = (False, "", commune)
    settle(conn, AMP_FAULT, amp, now)
    settle(conn, WEAK_SIGNAL, signal, now)
    settle(conn, CLOCK_OFFSET, clock, now)
    settle(conn, TEMPERATURE, hot, now)


def broadcast_alarms(conn: Connection, rows: Sequence[dict[str, Any]], now: int) -> None:
    """A missed or failed broadcast raises the node's alarm; the next item it airs clears it.
    Per node the newest record of the batch decides (whatever order they arrived in)."""
    decisions: dict[str, Decision] = {}
    for row in sorted(rows, key=lambda r: (r["start_ms"] or r["planned_start_ms"] or 0,
                                           r["rid"] or 0)):
        if row["trigger"] == "correction" or row["source"] == "fallback":
            continue  # a relay on its fallback announcement has its own alarm (relay_failed)
        what = row["title"] or row["item_id"] or row["command_id"]
        if row["outcome"] in (protocol.MISSED, protocol.OUTCOME_FAILED):
            template = DETAIL_MISSED if row["outcome"] == protocol.MISSED else DETAIL_FAILED
            decisions[row["node_id"]] = (
                True, template.format(what=what,
                                      reason=reason_vi(row["reason"]) or DETAIL_NO_REASON),
                row["commune_id"])
        elif row["outcome"] == protocol.AIRED:
            decisions[row["node_id"]] = (False, "", row["commune_id"])
    settle(conn, BROADCAST_MISSED, decisions, now)


def _period_s(telemetry: str | None) -> int | None:
    """The telemetry period a node reports (`telemetry_s`), from its stored telemetry."""
    if not telemetry or '"telemetry_s"' not in telemetry:
        return None  # most of a fleet's rows: no JSON to parse
    try:
        tel = json.loads(telemetry)
    except ValueError:
        return None
    return _int(tel.get("telemetry_s")) if isinstance(tel, dict) else None


def check_nodes(engine: Engine, now: int, policy: HealthPolicy = DEFAULT_POLICY,
                since_ms: int | None = None) -> None:
    """Offline nodes and silent villages, from the node table (run periodically). Silence
    counts from `since_ms` at the earliest: when the headend started listening."""
    with engine.begin() as conn:
        nodes = conn.execute(select(Node.id, Node.online, Node.last_seen_ms, Node.village_id,
                                    Village.commune_id, Node.telemetry)
                             .join(Village, NODE_VILLAGE)).all()
        offline: dict[str, Decision] = {}
        for node_id, online, seen, _, commune, telemetry in nodes:
            if seen is None:
                continue  # never connected: provisioned, not installed yet
            quiet = now - (seen if since_ms is None else max(seen, since_ms))
            # A will or not, silence is what counts (half-open links too).
            if quiet > policy.offline_ms(_period_s(telemetry)):
                if quiet < 120_000:
                    detail = (DETAIL_SILENT_S if online else DETAIL_GONE_S).format(
                        seconds=quiet // 1000)
                else:
                    detail = (DETAIL_SILENT_MIN if online else DETAIL_GONE_MIN).format(
                        minutes=quiet // 60_000)
                offline[node_id] = (True, detail, commune)
            elif online:
                offline[node_id] = (False, "", commune)
        settle(conn, NODE_OFFLINE, offline, now)
        failing = set(conn.scalars(select(Alarm.subject).where(
            Alarm.kind.in_((NODE_OFFLINE, AMP_FAULT)), Alarm.cleared_ms.is_(None))))
        villages: dict[tuple[str, str], list[str]] = defaultdict(list)
        for node_id, _, seen, village, commune, _ in nodes:
            if seen is not None:
                villages[(village, commune)].append(node_id)
        silent: dict[str, dict[str, Decision]] = defaultdict(dict)  # commune -> village
        for (village, commune), members in villages.items():
            down = all(n in failing for n in members)
            template = DETAIL_VILLAGE_ONE if len(members) == 1 else DETAIL_VILLAGE_ALL
            silent[commune][village] = (down, template.format(
                n=len(members), nodes=", ".join(members)) if down else "", commune)
        for commune, decisions in silent.items():  # village ids are the commune's own
            settle(conn, VILLAGE_SILENT, decisions, now, commune)


async def watch(engine: Engine, clock: Callable[[], int],
                sleep_ms: Callable[[int], Awaitable[None]],
                policy: HealthPolicy = DEFAULT_POLICY) -> None:
    # Silence counts only from when the headend itself started listening: after its own
    # outage every node's last message is old, and that is not the nodes' fault.
    since = clock()
    while True:
        await sleep_ms(policy.watch_every_ms)
        try:
            await asyncio.to_thread(check_nodes, engine, clock(), policy, since)
        except Exception:
            log.exception("node health check failed; retrying at the next one")

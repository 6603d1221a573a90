"""Node health for technicians: alarms raised once and cleared once from what nodes report and
from what they stop reporting (docs/technician.md, "Alarms").

- From telemetry, as it is stored: amplifier fault, weak signal, clock offset.
- From as-run records: a missed or failed broadcast (cleared when the node next airs an item).
- From a periodic watch: a node not heard from for more than N minutes (offline), and a village
  whose loudspeakers have all failed (which threatens the 2/3 threshold of criterion 8.3).

Thresholds have hysteresis where a reading hovers (signal, clock), so an alarm is not raised and
cleared over and over while the value sits at the edge.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from firmware import protocol
from headend.core.alarms import (
    AMP_FAULT,
    BROADCAST_MISSED,
    CLOCK_OFFSET,
    NODE_OFFLINE,
    VILLAGE_SILENT,
    WEAK_SIGNAL,
    Decision,
    settle,
)
from headend.core.models import Alarm, Node, Village

log = logging.getLogger("loaxa.health")


@dataclass(frozen=True)
class HealthPolicy:
    offline_after_ms: int = 10 * 60_000  # N minutes without a word from a node
    weak_signal_dbm: int = -105  # raised below this (about 2 bars of 4G); cleared above ...
    signal_clear_dbm: int = -100
    clock_offset_ms: int = 2000  # raised above this; cleared below half of it
    watch_every_ms: int = 60_000


DEFAULT_POLICY = HealthPolicy()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def telemetry_alarms(conn: Connection, latest: dict[str, dict[str, Any]],
                     communes: dict[str, str], now: int, policy: HealthPolicy) -> None:
    """Alarms from each node's newest telemetry of a batch, as stored (with the clock offset
    seen on its arrival, `clock_offset_ms`)."""
    amp: dict[str, Decision] = {}
    signal: dict[str, Decision] = {}
    clock: dict[str, Decision] = {}
    for node_id, tel in latest.items():
        commune = communes.get(node_id)
        fault = tel.get("amp_fault")
        if isinstance(fault, bool):
            amp[node_id] = (fault, f"amplifier draws {tel.get('amp_ma')} mA while on", commune)
        dbm = _int(tel.get("signal_dbm"))
        if dbm is not None and dbm < policy.weak_signal_dbm:
            signal[node_id] = (True, f"{dbm} dBm ({tel.get('link', '?')})", commune)
        elif dbm is not None and dbm > policy.signal_clear_dbm:
            signal[node_id] = (False, "", commune)
        offset = _int(tel.get("clock_offset_ms"))
        if offset is not None:
            if abs(offset) > policy.clock_offset_ms:
                clock[node_id] = (True, f"node clock {offset:+d} ms off", commune)
            elif abs(offset) < policy.clock_offset_ms // 2:
                clock[node_id] = (False, "", commune)
    settle(conn, AMP_FAULT, amp, now)
    settle(conn, WEAK_SIGNAL, signal, now)
    settle(conn, CLOCK_OFFSET, clock, now)


def broadcast_alarms(conn: Connection, rows: Sequence[dict[str, Any]], now: int) -> None:
    """A missed or failed broadcast raises the node's alarm; the next item it airs clears it.
    Per node the newest record of the batch decides (whatever order they arrived in)."""
    decisions: dict[str, Decision] = {}
    for row in sorted(rows, key=lambda r: (r["start_ms"] or r["planned_start_ms"] or 0,
                                           r["rid"] or 0)):
        if row["trigger"] == "correction" or row["source"] == "fallback":
            continue  # a relay on its fallback announcement has its own alarm (relay_failed)
        what = row["item_id"] or row["command_id"] or row["title"]
        if row["outcome"] in (protocol.MISSED, protocol.OUTCOME_FAILED):
            decisions[row["node_id"]] = (
                True, f"{what}: {row['outcome']} ({row['reason'] or 'no reason given'})",
                row["commune_id"])
        elif row["outcome"] == protocol.AIRED:
            decisions[row["node_id"]] = (False, "", row["commune_id"])
    settle(conn, BROADCAST_MISSED, decisions, now)


def check_nodes(engine: Engine, now: int, policy: HealthPolicy = DEFAULT_POLICY) -> None:
    """Offline nodes and silent villages, from the node table (run periodically)."""
    with engine.begin() as conn:
        nodes = conn.execute(select(Node.id, Node.online, Node.last_seen_ms, Node.village_id,
                                    Village.commune_id)
                             .join(Village, Village.id == Node.village_id)).all()
        stale = now - policy.offline_after_ms
        offline: dict[str, Decision] = {}
        for node_id, online, seen, _, commune in nodes:
            if seen is None:
                continue  # never connected: provisioned, not installed yet
            if seen < stale:  # a will or not, silence is what counts (half-open links too)
                offline[node_id] = (True, f"not heard from for {(now - seen) // 60_000} min"
                                    f"{' (last-will received)' if not online else ''}", commune)
            elif online:
                offline[node_id] = (False, "", commune)
        settle(conn, NODE_OFFLINE, offline, now)
        failing = set(conn.scalars(select(Alarm.subject).where(
            Alarm.kind.in_((NODE_OFFLINE, AMP_FAULT)), Alarm.cleared_ms.is_(None))))
        villages: dict[tuple[str, str], list[str]] = defaultdict(list)
        for node_id, _, seen, village, commune in nodes:
            if seen is not None:
                villages[(village, commune)].append(node_id)
        silent: dict[str, Decision] = {}
        for (village, commune), members in villages.items():
            down = all(n in failing for n in members)
            silent[village] = (down, f"all {len(members)} loudspeaker cluster(s) failed: "
                               f"{', '.join(members)}" if down else "", commune)
        settle(conn, VILLAGE_SILENT, silent, now)


async def watch(engine: Engine, clock: Callable[[], int],
                sleep_ms: Callable[[int], Awaitable[None]],
                policy: HealthPolicy = DEFAULT_POLICY) -> None:
    # Judge silence only once the headend itself has listened for N minutes: after its own
    # outage every node's last message is old, and that is not the nodes' fault.
    await sleep_ms(policy.offline_after_ms)
    while True:
        try:
            await asyncio.to_thread(check_nodes, engine, clock(), policy)
        except Exception:
            log.exception("node health check failed; retrying at the next one")
        await sleep_ms(policy.watch_every_ms)

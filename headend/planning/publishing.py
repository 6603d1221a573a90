"""Publishing each node's plan: the schedule expanded for the next days, signed with the node's
key and published retained on loaxa/v1/node/<id>/plan, with the media it must prefetch.

A node holds its plan in flash and follows it on its own (firmware/plan.py), so a dead headend,
broker or backhaul does not silence the programme. The publisher recomputes plans on a fixed
12-hour grid: within one block the plan of a node does not change unless the schedule does,
so an unchanged plan is not sent again (nodes on 4G pay per byte).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from firmware import protocol
from headend.core.alarms import (
    DETAIL_PLAN_TOO_LARGE,
    PLAN_TOO_LARGE,
    SOURCE_SILENT,
    SOURCE_UNREACHABLE,
    Decision,
    clear_alarm,
    raise_alarm,
    settle,
)
from headend.core.models import Node, NodePlan
from headend.media.library import Media, MediaLibrary
from headend.media.sources import probe_async
from headend.planning.calendar import effective
from headend.planning.expansion import PlanEntry, expand
from headend.planning.programme import record_programme
from headend.planning.schedule import Schedule, ScheduleError, load_schedule
from headend.planning.wire import BLOCK_MS, HORIZON_MS, HOUR_MS, MIN_AHEAD_MS, wire_item

log = logging.getLogger("loaxa.plans")

CHECK_EVERY_MS = 10 * 60_000  # how often the publisher looks for changes and new blocks
FILE_CHECK_S = 3.0  # how often the schedule file's time stamp is looked at
PROBE_LEAD_MS = 10 * 60_000  # relay sources are probed this long before their slot

Clock = Callable[[], int]
Sleep = Callable[[int], Awaitable[Any]]


async def real_sleep(ms: int) -> None:
    await asyncio.sleep(ms / 1000)


class PlanTooLarge(ValueError):
    """A node's items within MIN_AHEAD_MS do not fit in one plan (MAX_PLAN_PAYLOAD)."""

    def __init__(self, node_id: str, items: int) -> None:
        super().__init__(f"plan for {node_id} over {protocol.MAX_PLAN_PAYLOAD} bytes within "
                         f"{MIN_AHEAD_MS // HOUR_MS} h: {items} items")
        self.node_id, self.items = node_id, items


@dataclass
class BuiltPlan:
    node_id: str
    payload: bytes
    ver: int
    from_ms: int
    to_ms: int
    digest: str
    items: int


def quiet_window(schedule: Schedule, at_ms: int) -> list[int]:
    """[start_min, end_min, utc_offset_min] as the node enforces it. Vietnam has no DST;
    for a zone that has, the offset is the one in force when the plan is made."""
    tz = ZoneInfo(schedule.commune.timezone)
    offset = datetime.fromtimestamp(at_ms / 1000, tz).utcoffset()
    offset_min = int(offset.total_seconds() // 60) if offset is not None else 0
    return [schedule.quiet_start, schedule.quiet_end, offset_min]


@dataclass
class PlanPublisher:
    """Keeps every node's retained plan current. `publish(node_id, payload)` publishes
    retained at QoS 1 (the headend service's client)."""

    engine: Engine
    schedule_path: Path
    library: MediaLibrary
    publish: Callable[[str, bytes], Awaitable[None]]
    clock: Clock
    sleep_ms: Sleep = real_sleep
    fallback: Media | None = None
    # Source id -> (primary, backup) replacing the schedule's URLs (the demo's local stations).
    source_urls: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    schedule: Schedule | None = None
    _signers: dict[str, protocol.Signer] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """The calendar changed: publish now rather than at the next check (loop thread)."""
        self._changed.set()

    def load(self) -> Schedule:
        """Re-read the schedule file; a broken edit keeps the last good schedule in force."""
        try:
            self.schedule = load_schedule(self.schedule_path)
        except ScheduleError as e:
            if self.schedule is None:
                raise
            log.error("schedule not reloaded, the previous one stays in force: %s", e)
        return self.schedule

    def build(self, now: int) -> list[BuiltPlan]:
        """The plans that differ from what each node was last sent (signed, encoded)."""
        schedule = effective(self.engine, self.load(), self.library.media_dir)
        block = now - now % BLOCK_MS
        to_ms = block + HORIZON_MS
        entries = expand(schedule, block, to_ms)
        record_programme(self.engine, schedule, entries, block, to_ms, now)
        quiet = quiet_window(schedule, now)
        with Session(self.engine) as s:
            keys = {node_id: key for node_id, key in s.execute(select(Node.id, Node.key).where(
                Node.commune_id == schedule.commune.id, Node.revoked_ms.is_(None)))}
            sent = {p.node_id: p for p in s.scalars(select(NodePlan))}
        out: list[BuiltPlan] = []
        fits: dict[str, Decision] = {}  # the PLAN_TOO_LARGE alarm of each plan built
        for node_id in schedule.commune.node_ids:
            key = keys.get(node_id)
            if key is None:
                log.warning("node %s is in the schedule but not provisioned (or revoked)",
                            node_id)
                continue
            items = [i for e in entries.get(node_id, [])
                     if (i := self._wire_item(e, node_id, key))]
            fallback = self.fallback.for_node(node_id, key).wire() if self.fallback else None
            digest = hashlib.sha256(protocol.canonical(
                {"from": block, "to": to_ms, "quiet": quiet, "items": items,
                 "fallback": fallback})).hexdigest()
            prev = sent.get(node_id)
            if prev is not None and prev.digest == digest and prev.status != "rejected":
                continue
            ver = max(prev.ver + 1, now) if prev else now
            try:
                out.append(self._sign(node_id, key, ver, now, block, to_ms, quiet, items,
                                      fallback, digest))
                fits[node_id] = (False, "", None)
            except PlanTooLarge as e:
                # This node keeps its last plan; every other node still gets its own.
                log.error("%s", e)
                fits[node_id] = (True, DETAIL_PLAN_TOO_LARGE.format(
                    items=e.items, hours=MIN_AHEAD_MS // HOUR_MS,
                    kb=protocol.MAX_PLAN_PAYLOAD // 1024), None)
        with self.engine.begin() as conn:  # raised or cleared from what is open, in one go
            settle(conn, PLAN_TOO_LARGE, fits, now)
        return out

    def _wire_item(self, entry: PlanEntry, node_id: str, key: str) -> dict[str, Any] | None:
        media = None
        if entry.source is None:
            if entry.media is None:
                return None  # a placeholder slot: nothing to air yet
            # Its URL with this node's token: /media serves nodes only that (media/access.py).
            media = self.library.add_file(entry.media).for_node(node_id, key)
        return wire_item(entry, media, self.source_urls)

    def _sign(self, node_id: str, key: str, ver: int, now: int, from_ms: int, to_ms: int,
              quiet: list[int], items: list[dict[str, Any]], fallback: dict[str, Any] | None,
              digest: str) -> BuiltPlan:
        signer = self._signers.get(node_id)
        if signer is None:
            signer = self._signers[node_id] = protocol.Signer(protocol.node_key(key))
        while True:
            plan = protocol.make_plan(signer, node_id, ver, now, from_ms, to_ms, quiet, items,
                                      fallback)
            payload = protocol.encode_plan(plan)
            if len(payload) <= protocol.MAX_PLAN_PAYLOAD or not items:
                break
            # Too big for a node: cover less, but never less than MIN_AHEAD_MS.
            last = items[-1]
            if last["s"] <= now + MIN_AHEAD_MS:
                raise PlanTooLarge(node_id, len(items))
            items = items[:-1]
            to_ms = last["s"]
        return BuiltPlan(node_id, payload, ver, from_ms, to_ms, digest, len(items))

    async def publish_due(self) -> int:
        """Build and publish every changed plan; returns how many were published."""
        now = self.clock()
        plans = await asyncio.to_thread(self.build, now)
        published = 0
        for plan in plans:
            try:
                await self.publish(plan.node_id, plan.payload)
            except Exception as e:  # offline: try again at the next check
                log.warning("plan for %s not published: %s", plan.node_id, e)
                continue
            await asyncio.to_thread(self._record, plan, now)
            published += 1
        if published:
            log.info("published %d plans", published)
        return published

    def _record(self, plan: BuiltPlan, now: int) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(NodePlan, plan.node_id) or NodePlan(node_id=plan.node_id)
            row.ver, row.issued_ms, row.from_ms, row.to_ms = plan.ver, now, plan.from_ms, \
                plan.to_ms
            row.digest, row.items, row.status, row.reason = plan.digest, plan.items, "sent", None
            row.updated_ms = now
            s.add(row)

    async def watch_file(self, every_s: float = FILE_CHECK_S) -> None:
        """Wake the publisher when the schedule file changes (an edited schedule, a node added
        by `loaxa node provision`), rather than at the next check up to 10 minutes later."""
        last = None
        while True:
            try:
                st = self.schedule_path.stat()
                seen = (st.st_mtime_ns, st.st_size)
            except OSError:
                seen = None
            if last is not None and seen != last:
                self.wake()
            last = seen
            await asyncio.sleep(every_s)  # real time: the file is edited in real time

    async def run(self) -> None:
        watch = asyncio.ensure_future(self.watch_file())
        try:
            await self._publish_loop()
        finally:
            watch.cancel()

    async def _publish_loop(self) -> None:
        while True:
            self._changed.clear()
            try:
                await self.publish_due()
            except Exception:
                log.exception("plan publishing failed; retrying at the next check")
            nap = asyncio.ensure_future(self.sleep_ms(CHECK_EVERY_MS))
            woken = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait((nap, woken), return_when=asyncio.FIRST_COMPLETED)
            for t in (nap, woken):
                t.cancel()


@dataclass
class SourceWatch:
    """Probes each relay's primary and backup streams shortly before its slot and raises an
    alarm for a silent or unreachable stream (cleared when a later probe finds it good)."""

    engine: Engine
    publisher: PlanPublisher
    clock: Clock
    sleep_ms: Sleep = real_sleep
    probe_timeout_s: float = 5.0
    _probed: set[str] = field(default_factory=set)

    def due(self, now: int) -> list[tuple[str, str, str]]:
        """(occurrence, source id, role) -> url for relay slots starting within the lead."""
        schedule = self.publisher.schedule or self.publisher.load()
        out: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for entries in expand(schedule, now, now + PROBE_LEAD_MS).values():
            for e in entries:
                if e.source is None or e.offset_ms or e.start_ms < now \
                        or e.occurrence in self._probed or e.occurrence in seen:
                    continue
                seen.add(e.occurrence)
                primary, backup = self.publisher.source_urls.get(
                    e.source.id, (e.source.primary, e.source.backup))
                out.append((e.occurrence, f"{e.source.id}:primary", primary))
                if backup:
                    out.append((e.occurrence, f"{e.source.id}:backup", backup))
        return out

    async def check(self) -> None:
        now = self.clock()
        due = await asyncio.to_thread(self.due, now)
        results = await asyncio.gather(*(
            probe_async(url, timeout_s=self.probe_timeout_s) for _, _, url in due))
        commune = self.publisher.schedule.commune.id if self.publisher.schedule else None
        for (occurrence, subject, url), st in zip(due, results, strict=True):
            self._probed.add(occurrence)
            at = self.clock()
            if st.state == "ok":
                for kind in (SOURCE_UNREACHABLE, SOURCE_SILENT):
                    await asyncio.to_thread(clear_alarm, self.engine, kind, subject, at)
                continue
            kind = SOURCE_SILENT if st.state == "silent" else SOURCE_UNREACHABLE
            if await asyncio.to_thread(raise_alarm, self.engine, kind, subject,
                                       f"{occurrence}: {url}: {st.detail}", at, commune):
                log.warning("relay source %s is %s before %s: %s", subject, st.state,
                            occurrence, st.detail)

    async def run(self, every_ms: int = 60_000) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("relay source check failed")
            await self.sleep_ms(every_ms)

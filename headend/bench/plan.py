"""`loaxa bench plan`: expanding a year of plans for a province (65 communes x 25 nodes).

Measured: `headend.planning.expansion.expand` over a whole year for every commune, each built
from the Lạng
Sơn template (its slots, villages and groups) with N nodes spread over its villages. Reference,
in the same run: the bare skeleton of a naive expansion, one loop over every node and every day
that converts the day's local midnight to UTC and does nothing else. Target: at most 1 s.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from headend.communes.files import VillageSpec
from headend.core.paths import schedule_templates
from headend.planning.expansion import expand
from headend.planning.schedule import Schedule, load_schedule

TEMPLATE = schedule_templates() / "lang-son.toml"
TARGET_SECONDS = 1.0
FIRST_DAY = date(2027, 1, 1)


def bench_schedules(communes: int, nodes: int) -> list[Schedule]:
    base = load_schedule(TEMPLATE)
    villages = base.commune.villages
    out = []
    for c in range(communes):
        vs = tuple(
            VillageSpec(v.id, v.name, tuple(f"c{c:03d}-{v.id}-{k}"
                                            for k in range(i, nodes, len(villages))))
            for i, v in enumerate(villages))
        commune = dataclasses.replace(base.commune, id=f"xa-{c:03d}", villages=vs)
        out.append(dataclasses.replace(base, commune=commune))
    return out


def _reference(schedules: list[Schedule], first: date, days: int) -> float:
    t0 = time.perf_counter()
    for s in schedules:
        tz = ZoneInfo(s.commune.timezone)
        for _node in s.commune.node_ids:
            d = first
            for _ in range(days):
                datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()
                d += timedelta(days=1)
    return time.perf_counter() - t0


def _expand_all(schedules: list[Schedule], start_ms: int, end_ms: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    entries = 0
    for s in schedules:
        entries += sum(len(p) for p in expand(s, start_ms, end_ms).values())
    return time.perf_counter() - t0, entries


def run_plan(communes: int, nodes: int, days: int, rounds: int) -> bool:
    schedules = bench_schedules(communes, nodes)
    tz = ZoneInfo(schedules[0].commune.timezone)
    start_ms = int(datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day,
                            tzinfo=tz).timestamp() * 1000)
    end_ms = start_ms + days * 86_400_000
    ref: list[float] = []
    exp: list[float] = []
    entries = 0
    for _ in range(rounds):
        gc.collect()
        ref.append(_reference(schedules, FIRST_DAY, days))
        gc.collect()
        took, entries = _expand_all(schedules, start_ms, end_ms)
        exp.append(took)

    def row(name: str, xs: list[float]) -> str:
        runs = " ".join(f"{x:.3f}" for x in xs)
        return (f"  {name:<44} median {statistics.median(xs):6.3f} s  "
                f"min {min(xs):6.3f} s   runs: {runs}")

    total_nodes = sum(len(s.commune.node_ids) for s in schedules)
    med = statistics.median(exp)
    met = med <= TARGET_SECONDS
    print("\n".join([
        f"loaxa bench plan: {communes} communes x {nodes} nodes ({total_nodes} nodes), "
        f"{days} days from {FIRST_DAY.isoformat()}, {len(schedules[0].slots)} slots each "
        "(Lạng Sơn template)",
        row("reference: every node x day, local midnight", ref),
        row("expand: every commune's plans", exp),
        f"  {entries} plan entries ({entries / total_nodes:.0f} per node); "
        f"expand/reference: {med / statistics.median(ref):.2f}; "
        f"expand {med:.3f} s (target <= {TARGET_SECONDS} s): {'MET' if met else 'NOT MET'}",
    ]), flush=True)
    return met

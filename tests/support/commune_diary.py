"""A commune with Monday's programme recorded, and as-run records to store against it: what the
diary tests (its reading, the CLI, the web page) start from."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from headend.communes.registry import provision_commune
from headend.core.db import open_db
from headend.core.home import Home
from headend.diary.reconciliation import AIRED, PARTIAL
from headend.planning.expansion import expand
from headend.planning.programme import record_programme
from headend.planning.schedule import Schedule
from support.plan_scenarios import write_wav
from support.schedule_files import load, ms, slot

DAY = date(2026, 11, 23)  # a Monday
MIN = 60_000
SLOTS = (slot("vov", "vov_relay", "06:00", "06:30")
         + slot("tin", "local_bulletin", "06:30", "06:45", media='"tin.wav"',
                target='"group:g"'))


def commune_home(tmp_path: Path) -> tuple[Home, Engine, Schedule]:
    """A state directory with the commune provisioned and Monday's programme recorded."""
    write_wav(tmp_path / "tin.wav", 2, 1)
    schedule = load(tmp_path, SLOTS)
    home = Home.create(tmp_path / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, schedule.commune)
    lo, hi = ms(DAY), ms(DAY, 24 * 60)
    record_programme(engine, schedule, expand(schedule, lo, hi), lo, hi, now_ms=lo)
    return home, engine, schedule


def rec(node: str, rid: int, item: str, kind: str, planned: int, outcome: str = AIRED,
        late_ms: int = 2000, reason: str | None = None) -> tuple[str, str, dict[str, Any]]:
    aired = outcome in (AIRED, PARTIAL)
    return node, "asrun", {
        "v": 1, "t": "asrun", "node": node, "rid": rid, "trigger": "plan", "item": item,
        "kind": kind, "p": 0, "lang": "vi", "title": item, "planned": planned,
        "planned_end": planned + 15 * MIN, "start": planned + late_ms if aired else None,
        "end": planned + 15 * MIN if aired else None, "outcome": outcome, "reason": reason,
        "src": "primary" if kind == "vov_relay" else "cache"}

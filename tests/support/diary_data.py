"""A commune's diary built the way production builds it: programme rows as plans write them,
as-run records stored through `store_reports` in the shape the firmware sends
(firmware/asrun.py `record_item`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from firmware import protocol
from headend.communes.files import CommuneSpec, VillageSpec
from headend.communes.registry import provision_commune
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import Programme
from headend.nodes.ingest import store_reports

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
COMMUNE = "tan-lang"
VILLAGES = {"v1": "Thôn Nà Pàn", "v2": "Thôn Khuổi Phầy", "v3": "Thôn Bản Chu"}
NODES = {"v1": "n0001", "v2": "n0002", "v3": "n0003"}


def new_commune(root: Path, terrain: str = "mountainous") -> Engine:
    home = Home.create(root / "home")
    engine = open_db(home.db_url)
    provision_commune(engine, home, CommuneSpec(
        COMMUNE, "Xã Tân Lang", "Lạng Sơn", "Asia/Ho_Chi_Minh",
        tuple(VillageSpec(v, name, (NODES[v],)) for v, name in VILLAGES.items()), terrain))
    return engine


def ms(day: date, hh: int, mm: int = 0) -> int:
    return int(datetime.combine(day, time(hh, mm), tzinfo=TZ).timestamp() * 1000)


@dataclass
class Item:
    occurrence: str
    kind: str
    title: str
    start_ms: int
    end_ms: int
    summary: str = ""
    language: str = "vi"
    source: str = ""
    operator: str = ""
    approver: str = ""


class Diary:
    """Plans items and files what each village's node reported about them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.rid = {n: 0 for n in NODES.values()}
        self.batch: list[tuple[str, str, dict[str, Any]]] = []

    def plan(self, item: Item, villages: list[str]) -> Item:
        with Session(self.engine) as s, s.begin():
            s.add(Programme(commune_id=COMMUNE, occurrence=item.occurrence, kind=item.kind,
                            priority=0, language=item.language, title=item.title,
                            summary=item.summary, source=item.source, start_ms=item.start_ms,
                            end_ms=item.end_ms, villages=json.dumps(villages),
                            operator=item.operator, approver=item.approver))
        return item

    def report(self, item: Item, village: str, outcome: str = "aired",
               reason: str | None = None, start_ms: int | None = None,
               end_ms: int | None = None) -> None:
        node = NODES[village]
        self.rid[node] += 1
        aired = outcome in ("aired", "partial")
        self.batch.append((node, protocol.ASRUN, {
            "v": protocol.VERSION, "t": "asrun", "node": node, "rid": self.rid[node],
            "trigger": "plan", "item": item.occurrence, "kind": item.kind, "p": 0,
            "lang": item.language, "title": item.title, "planned": item.start_ms,
            "planned_end": item.end_ms,
            "start": (start_ms or item.start_ms) if aired else None,
            "end": (end_ms or item.end_ms) if aired else None,
            "outcome": outcome, "reason": reason, "src": "primary", "media": item.source}))

    def store(self, now_ms: int) -> None:
        store_reports(self.engine, self.batch, now_ms)
        self.batch = []


def day_items(day: date) -> tuple[Item, Item]:
    """The two daily relays: VOV in the morning, the provincial station in the evening."""
    tag = day.isoformat()
    return (Item(f"vov-sang@{tag}", "vov_relay", "Thời sự VOV1", ms(day, 5, 30), ms(day, 6),
                 source="https://stream.vov.vn/vov1"),
            Item(f"tinh-chieu@{tag}", "province_relay", "Thời sự Đài PT-TH Lạng Sơn",
                 ms(day, 17), ms(day, 17, 30), source="https://lsrtv.vn/live"))


def bulletin(day: date, n: int = 1) -> Item:
    return Item(f"ban-tin-{n}@{day.isoformat()}", "local_bulletin", "Bản tin thời sự xã",
                ms(day, 18, 0), ms(day, 18, 15),
                summary="Lịch tiêm chủng, thu hoạch hồi, họp thôn",
                source="media/ban-tin.wav", operator="Hoàng Thị Mai",
                approver="Nông Văn Đức")

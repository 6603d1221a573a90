"""Small schedule files written by tests: the commune "thu" with three villages and a group,
one relay source, and the slots a test adds."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from headend.planning.schedule import RELAY_KINDS, Schedule, load_schedule

VN = ZoneInfo("Asia/Ho_Chi_Minh")
MIN = 60_000

HEAD = """\
[commune]
id = "thu"
name = "Xã Thử"

[[villages]]
id = "v0"
name = "Thôn 0"
nodes = ["n0-a", "n0-b"]

[[villages]]
id = "v1"
name = "Thôn 1"
nodes = ["n1-a"]

[[villages]]
id = "v2"
name = "Bản 2"
nodes = ["n2-a"]

[groups]
g = ["v1", "v2"]

[sources.s]
name = "VOV1"
primary = "http://127.0.0.1:9/vov1"
"""
def ms(d: date, minute: int = 0) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=VN).timestamp() * 1000) + minute * MIN


def load(tmp_path: Path, slots: str, name: str = "x.toml") -> Schedule:
    p = tmp_path / name
    p.write_text(HEAD + slots, encoding="utf-8")
    return load_schedule(p)


def slot(sid: str, kind: str, start: str, end: str, **extra: str) -> str:
    lines = [f'\n[[slots]]\nid = "{sid}"\ntitle = "{sid}"\nkind = "{kind}"',
             f'start = "{start}"\nend = "{end}"']
    if kind in RELAY_KINDS:
        lines.append('source = "s"')
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"

"""Building blocks for the planning end-to-end tests: a commune schedule written as the officer
would write it, tiny-format media so a simulated week is little data, and a controlled clock."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hal.sim import SimClock
from headend.communes.files import CommuneSpec, VillageSpec
from headend.core.models import AsRunRecord
from headend.planning.expansion import expand
from headend.planning.schedule import load_schedule
from hwsim.stations import Stations, byte_pattern, wav_header
from support.loaxa_stack import Stack, wait_until

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
# The accelerated tests play 8-bit mono PCM at 100 samples/s: 100 bytes per simulated second,
# so a simulated week of relays is a few MB instead of gigabytes.
RATE, BITS = 100, 8
MONDAY = date(2026, 11, 23)


def local_ms(day: date, hhmm: str) -> int:
    h, m = (int(x) for x in hhmm.split(":"))
    return int(datetime(day.year, day.month, day.day, h, m, tzinfo=TZ).timestamp() * 1000)


def fast_clock(sim_start: datetime, rate: float, lead_s: float,
               warp: list[list[int]] | None = None) -> SimClock:
    """A clock that reads `sim_start` lead_s real seconds from now and runs `rate` times as
    fast as real time (the nodes boot during the lead); warp: stretches that run at their own
    rate (see idle_warp)."""
    real_now = int(time.time() * 1000)
    return SimClock(rate=rate, sim_epoch_ms=int(sim_start.timestamp() * 1000),
                    real_epoch_ms=real_now + int(lead_s * 1000), warp=warp)


IDLE_MARGIN_MS = 20 * 60_000  # source probes start 10 minutes ahead; as-run uploads follow
IDLE_MIN_MS = 30 * 60_000  # shorter gaps are not worth switching rates for


def idle_warp(directory: Path, villages: int, slots: str, first_ms: int, last_ms: int,
              rate: int, margin_ms: int = IDLE_MARGIN_MS,
              after_ms: int | None = None) -> list[list[int]]:
    """The stretches of [first_ms, last_ms) in which nothing of the schedule (commune(villages)
    with these slots, its media in directory) airs, with margin_ms before and after each item,
    to run at `rate`: a simulated week's nights and idle hours pass in seconds while every item
    still airs at the test's own rate, so what a test measures about items is as before.
    after_ms: the margin after each item, when shorter than the one before it."""
    path = directory / "idle-warp.toml"
    path.write_text(schedule_text(commune(villages), slots))
    after = margin_ms if after_ms is None else after_ms
    busy = sorted((e.start_ms - margin_ms, e.end_ms + after)
                  for entries in expand(load_schedule(path), first_ms, last_ms).values()
                  for e in entries)
    out, at = [], first_ms
    for start, end in busy:
        if start - at >= IDLE_MIN_MS:
            out.append([at, start, rate])
        at = max(at, end)
    if last_ms - at >= IDLE_MIN_MS:
        out.append([at, last_ms, rate])
    return out


def commune(villages: int) -> CommuneSpec:
    return CommuneSpec("xa-thu", "Xã Thử", "Lạng Sơn", "Asia/Ho_Chi_Minh", tuple(
        VillageSpec(f"thon-{i}", f"Thôn {i}", (f"n{i:02d}",)) for i in range(1, villages + 1)))


def write_wav(path: Path, seconds: int, index: int) -> bytes:
    """A recorded bulletin in the tiny test format, recognisable by its byte pattern."""
    pattern = byte_pattern(index)
    body = (pattern * (RATE * seconds // len(pattern) + 1))[:RATE * seconds]
    data = wav_header(RATE, BITS, 1, len(body)) + body
    path.write_bytes(data)
    return body


def add_stations(stations: Stations) -> dict[str, tuple[str, str | None]]:
    """VOV1 and the provincial station, each with a primary and a backup stream."""
    urls: dict[str, tuple[str, str | None]] = {}
    for i, source in enumerate(("vov1", "tinh")):
        for j, role in enumerate(("primary", "backup")):
            stations.add(f"{source}-{role}", byte_pattern(100 + 10 * i + j), rate=RATE,
                         bits=BITS)
        urls[source] = (stations.url(f"{source}-primary"), stations.url(f"{source}-backup"))
    return urls


def schedule_text(spec: CommuneSpec, slots: str) -> str:
    villages = "\n".join(
        f'[[villages]]\nid = "{v.id}"\nname = "{v.name}"\nnodes = {list(v.nodes)!r}\n'
        for v in spec.villages).replace("'", '"')
    return f"""[commune]
id = "{spec.id}"
name = "{spec.name}"
province = "{spec.province}"
timezone = "{spec.timezone}"

{villages}
[sources.vov1]
name = "VOV1"
primary = "http://example.invalid/vov1"
backup = "http://example.invalid/vov1-backup"

[sources.tinh]
name = "Đài PT-TH Lạng Sơn"
primary = "http://example.invalid/tinh"
backup = "http://example.invalid/tinh-backup"

{slots}"""


# Ten minutes of VOV1 at 06:00: the slot the failover and emergency tests play with.
VOV_10_MIN = """[[slots]]
id = "vov-sang"
title = "Tiếp sóng Thời sự VOV1"
kind = "vov_relay"
source = "vov1"
start = "06:00"
end = "06:10"
"""

WEEK_SLOTS = """[[slots]]
id = "vov-sang"
title = "Tiếp sóng Thời sự VOV1 buổi sáng"
kind = "vov_relay"
source = "vov1"
start = "06:00"
end = "06:30"

[[slots]]
id = "tinh-chieu"
title = "Tiếp sóng Đài tỉnh"
kind = "province_relay"
source = "tinh"
start = "17:00"
end = "17:30"

[[slots]]
id = "ban-tin"
title = "Bản tin xã"
kind = "local_bulletin"
days = ["mon", "wed", "fri"]
start = "17:30"
end = "17:40"
media = "ban-tin.wav"
"""


def days(first: date, n: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


def wait_sim(clock: SimClock, until_ms: int) -> None:
    left = clock.real_ms_at(until_ms) - time.time() * 1000
    if left > 0:
        time.sleep(left / 1000)


def records_settled(stack: Stack, want: int, timeout: float = 60) -> list[AsRunRecord]:
    """Wait until at least `want` as-run records are stored and no more arrive."""
    def settled() -> list[AsRunRecord] | None:
        stack.run(stack.headend.flush())
        first = stack.asrun()
        if len(first) < want:
            return None
        time.sleep(1.0)
        stack.run(stack.headend.flush())
        second = stack.asrun()
        return second if len(second) == len(first) else None
    return wait_until(settled, timeout, f"{want} as-run records")

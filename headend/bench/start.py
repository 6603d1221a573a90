"""`loaxa bench start`: how close to the planned instant a node's audio output begins, over a
simulated broadcast day on 100 nodes of one commune (real firmware under MicroPython).

The simulated clock runs `rate` times as fast as real time, so a late wake-up of d real ms
shows as d x rate simulated ms. Lateness is reported in real milliseconds (simulated lateness /
rate): what a node would show on a real day, whose clock runs at rate 1. The reference, measured
in the same run, is the bare timer lateness of MicroPython's asyncio on this machine.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hal.sim import SimClock
from headend.core.home import Home
from headend.nodes.broker import find_free_port
from headend.planning.expansion import expand
from headend.planning.schedule import load_schedule
from headend.runtime.serve import Runtime
from hwsim.fleet import Fleet, SimNode, micropython_binary
from hwsim.stations import Stations, byte_pattern, wav_header

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
RATE_HZ, BITS = 100, 8  # tiny PCM: 100 bytes per simulated second keeps a day light
NODES_PER_VILLAGE = 4
TARGET_P99_MS = 250
# A real node opens a relay's stream 5 s ahead (firmware LEAD_MS). Under the fast clock the
# simulated nodes get a full second of real time for it: 100 nodes opening their streams at
# once from one Python stand-in station takes a few hundred real milliseconds.
REAL_LEAD_MS = 1000

SLOTS = """
[[slots]]
id = "tinh-sang"
title = "Tiếp sóng Đài tỉnh buổi sáng"
kind = "province_relay"
source = "tinh"
start = "05:30"
end = "06:00"

[[slots]]
id = "vov-sang"
title = "Tiếp sóng Thời sự VOV1 buổi sáng"
kind = "vov_relay"
source = "vov1"
start = "06:00"
end = "06:30"

[[slots]]
id = "ban-tin-trua"
title = "Bản tin xã buổi trưa"
kind = "local_bulletin"
start = "11:00"
end = "11:15"
media = "ban-tin.wav"

[[slots]]
id = "tinh-chieu"
title = "Tiếp sóng Đài tỉnh buổi chiều"
kind = "province_relay"
source = "tinh"
start = "17:00"
end = "17:30"

[[slots]]
id = "ban-tin"
title = "Bản tin xã"
kind = "local_bulletin"
start = "17:30"
end = "17:45"
media = "ban-tin.wav"

[[slots]]
id = "vov-toi"
title = "Tiếp sóng Thời sự VOV1 buổi tối"
kind = "vov_relay"
source = "vov1"
start = "18:00"
end = "18:30"
"""

# A MicroPython asyncio timer, nothing else: how late does a 50 ms sleep wake up?
REFERENCE = """
import asyncio, time
async def main():
    late = []
    for i in range(200):
        t0 = time.ticks_ms()
        await asyncio.sleep_ms(50)
        late.append(time.ticks_diff(time.ticks_ms(), t0) - 50)
    late.sort()
    print(late[len(late) // 2], late[len(late) * 99 // 100])
asyncio.run(main())
"""


def _schedule(path: Path, nodes: int) -> None:
    """The commune: `nodes` nodes, NODES_PER_VILLAGE to a village (the last takes the rest)."""
    lines = ['[commune]\nid = "xa-do-thoi-gian"\nname = "Xã Đo Thời Gian"\n'
             'province = "Lạng Sơn"\n']
    for v in range(-(-nodes // NODES_PER_VILLAGE)):
        ids = ", ".join(f'"b{v:02d}-{k}"' for k in range(
            min(NODES_PER_VILLAGE, nodes - v * NODES_PER_VILLAGE)))
        lines.append(f'[[villages]]\nid = "thon-{v:02d}"\nname = "Thôn {v}"\nnodes = [{ids}]\n')
    for source in ("vov1", "tinh"):
        lines.append(f'[sources.{source}]\nname = "{source}"\n'
                     f'primary = "http://example.invalid/{source}"\n')
    path.write_text("\n".join(lines) + SLOTS, encoding="utf-8")
    body = bytes(byte_pattern(7)) * (RATE_HZ * 900 // 64)
    (path.parent / "ban-tin.wav").write_bytes(wav_header(RATE_HZ, BITS, 1, len(body)) + body)


def _reference() -> tuple[float, float]:
    out = subprocess.run([micropython_binary(), "-c", REFERENCE], capture_output=True,
                         text=True, check=True, timeout=60).stdout.split()
    return float(out[0]), float(out[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(root: Path, nodes: int, rate: int, day: date,
               end_hm: tuple[int, int] = (18, 35), lead_s: float = 15.0) -> tuple[
        dict[str, int], dict[str, dict[str, int]]]:
    """The simulated day from 05:15 to end_hm: each planned item's start, and when each
    node opened its audio for it. The clock reaches 05:15 lead_s real seconds after the start
    (the fleet boots and takes its plans meanwhile)."""
    schedule_path = root / "xa.toml"
    _schedule(schedule_path, nodes)
    start = datetime(day.year, day.month, day.day, 5, 15, tzinfo=TZ)
    end = datetime(day.year, day.month, day.day, *end_hm, tzinfo=TZ)
    clock = SimClock(rate=rate, sim_epoch_ms=int(start.timestamp() * 1000),
                     real_epoch_ms=int(time.time() * 1000 + lead_s * 1000))
    with Stations() as stations:
        urls: dict[str, tuple[str, str | None]] = {}
        for i, source in enumerate(("vov1", "tinh")):
            stations.add(source, byte_pattern(100 + i), rate=RATE_HZ, bits=BITS)
            urls[source] = (stations.url(source), None)
        home = Home.create(root / "home")
        runtime = Runtime(home, schedule_path, find_free_port(), clock=clock.time_ms,
                          sleep_ms=clock.sleep_ms, source_urls=urls, watch_sources=False)
        fleet = Fleet(root=home.sim_dir, broker_port=runtime.broker.node_port,
                      media_hosts=[runtime.media_host, stations.host], per_process=50,
                      telemetry_s=3600, real_lead_ms=REAL_LEAD_MS,
                      clock={"sim_epoch_ms": clock.sim_epoch_ms,
                             "real_epoch_ms": clock.real_epoch_ms, "rate": rate},
                      nodes=[SimNode(s.id, s.key, s.password, s.village)
                             for s in runtime.secrets])
        try:
            await runtime.start()
            await asyncio.to_thread(fleet.start)
            left = int(end.timestamp() * 1000) - clock.time_ms()
            print(f"simulating {start:%H:%M}–{end:%H:%M} of {day} at {rate}x "
                  f"({left / rate / 1000:.0f} s)", flush=True)
            await asyncio.sleep(max(0.0, left / rate / 1000))
        finally:
            await asyncio.to_thread(fleet.stop)
            await runtime.stop()
        planned = {e.id: e.start_ms for entries in expand(
            load_schedule(schedule_path), int(start.timestamp() * 1000),
            int(end.timestamp() * 1000)).values() for e in entries if not e.offset_ms}
        opened: dict[str, dict[str, int]] = defaultdict(dict)
        for s in runtime.secrets:
            for ev in fleet.events(s.id):
                if ev["event"] == "audio_open" and ev.get("label") in planned:
                    opened[ev["label"]].setdefault(s.id, ev["at"])
    return planned, opened


def run_start(nodes: int = 100, rate: int = 200) -> None:
    ref_p50, ref_p99 = _reference()
    day = date.today() + timedelta(days=1)
    with tempfile.TemporaryDirectory(prefix="loaxa-bench-start-") as tmp:
        planned, opened = asyncio.run(_run(Path(tmp), nodes, rate, day))
    late: list[float] = []
    spreads: dict[str, float] = {}
    missing = 0
    for item, at in sorted(planned.items(), key=lambda kv: kv[1]):
        starts = opened.get(item, {})
        missing += nodes - len(starts)
        mine = [(t - at) / rate for t in starts.values()]
        late += mine
        if starts:
            spreads[item] = (max(starts.values()) - min(starts.values())) / rate
            print(f"  {item:<28} {len(mine):>4} nodes  late p50 {statistics.median(mine):6.1f}"
                  f"  max {max(mine):6.1f} ms")
    if not late:
        print("no audio started: see the simulator logs")
        return
    p50, p99 = statistics.median(late), _pct(late, 0.99)
    print(f"items: {len(planned)} x {nodes} nodes; starts measured: {len(late)}; "
          f"not started: {missing}")
    print(f"audio start vs plan (real ms): p50 {p50:.1f}  p99 {p99:.1f}  "
          f"max {max(late):.1f}  min {min(late):.1f}  (target p99 <= {TARGET_P99_MS})")
    print(f"spread between nodes of the commune per item (real ms): "
          f"median {statistics.median(spreads.values()):.1f}  max {max(spreads.values()):.1f}")
    print(f"reference, MicroPython asyncio timer lateness (ms): p50 {ref_p50:.1f}  "
          f"p99 {ref_p99:.1f}")
    print("verdict: " + ("met" if p99 <= TARGET_P99_MS and not missing else "NOT met"))

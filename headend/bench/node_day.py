"""`loaxa bench node-day`: one ESP32-profile node (the firmware core and hal/esp32 over hw-sim's
simulated machine/network/esp32, compiled with mpy-cross as on the board) through a simulated
day under MicroPython with a small heap, against the real headend stack: plans with relays
and a recorded bulletin, commands (volume, test tone, ping), an emergency and a link outage.

Reported: whether the node process hit a MemoryError, its peak live heap (gc.mem_alloc() after
a collection, sampled every 200 ms by hw-sim), and the control-plane bytes: every byte between
the node and Mosquitto, counted by a TCP proxy in front of the broker (audio goes over HTTP and
is not counted). The day runs at a fast clock but MQTT keepalives and telemetry run in real
time, so the day's control bytes = the measured event traffic + the periodic traffic (PINGs,
telemetry) of 24 real hours at the node's periods. Reference in the same run: the same day on
the plain hal/sim profile.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from firmware.node import FULL_EVERY_MS, TELEMETRY_S
from hal.sim import SimClock
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import AsRunRecord
from headend.nodes.broker import find_free_port
from headend.runtime.serve import Runtime
from hwsim.fleet import Fleet, SimNode
from hwsim.stations import Stations, byte_pattern, wav_header

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
RATE_HZ, BITS = 100, 16  # tiny PCM, but 16-bit: the ESP32's I2S takes 16 or 32-bit samples
TARGET_BYTES_PER_DAY = 150 * 1024
# The node process's -X heapsize: room for the 64-bit unix port's bytecode and objects. What
# the node may use is the heap budget left once the code is loaded (hw-sim budget_heap).
HEAPSIZE = "640K"
MEASURE_TELEMETRY_S = 20  # real s: often, to measure the messages' sizes in a short run
KEEPALIVE_S = 30
DAY_S = 86400

SLOTS = """
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
end = "11:10"
media = "ban-tin.wav"

[[slots]]
id = "tinh-chieu"
title = "Tiếp sóng Đài tỉnh buổi chiều"
kind = "province_relay"
source = "tinh"
start = "17:00"
end = "17:30"
"""


@dataclass
class Traffic:
    """MQTT bytes through the proxy, by direction and kind (from the fixed headers)."""

    bytes: Counter[str] = field(default_factory=Counter)
    packets: Counter[str] = field(default_factory=Counter)

    def add(self, direction: str, kind: str, n: int) -> None:
        self.bytes[f"{direction} {kind}"] += n
        self.packets[f"{direction} {kind}"] += 1

    def total(self) -> int:
        return sum(self.bytes.values())

    def of(self, kind: str) -> tuple[int, int]:
        """(bytes, packets) of a kind, both directions."""
        b = sum(v for k, v in self.bytes.items() if k.endswith(" " + kind))
        p = sum(v for k, v in self.packets.items() if k.endswith(" " + kind))
        return b, p


class MqttMeter:
    """A TCP proxy in front of the broker that splits the byte stream into MQTT packets."""

    def __init__(self, broker_port: int, raw: bool = False) -> None:
        self.broker_port = broker_port
        self.raw = raw  # TLS: count the bytes, which cannot be read
        self.port = find_free_port()
        self.traffic = Traffic()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            br, bw = await asyncio.open_connection("127.0.0.1", self.broker_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(self._pump(cr, bw, "up"), self._pump(br, cw, "down"),
                             return_exceptions=True)

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, dirn: str) -> None:
        try:
            while self.raw:
                data = await r.read(4096)
                if not data:
                    return
                w.write(data)
                await w.drain()
                self.traffic.add(dirn, "tls", len(data))
            while True:
                head = await r.readexactly(1)
                length, mult, raw = 0, 1, b""
                while True:
                    b = await r.readexactly(1)
                    raw += b
                    length += (b[0] & 0x7F) * mult
                    mult *= 128
                    if not b[0] & 0x80:
                        break
                body = await r.readexactly(length)
                w.write(head + raw + body)
                await w.drain()
                self.traffic.add(dirn, self._kind(head[0], body), 1 + len(raw) + length)
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            w.close()

    @staticmethod
    def _kind(first: int, body: bytes) -> str:
        ptype = first >> 4
        if ptype == 3:  # PUBLISH: by the topic's last part
            n = int.from_bytes(body[:2], "big")
            topic = body[2:2 + n].decode(errors="replace")
            leaf = topic.split("/node/", 1)[-1].split("/", 1)[-1]
            if leaf == "telemetry" and b'"part"' in body:
                return "publish:telemetry-short"
            return "publish:" + leaf
        return {1: "connect", 2: "connack", 4: "puback", 8: "subscribe", 9: "suback",
                12: "ping", 13: "ping", 14: "disconnect"}.get(ptype, f"type{ptype}")


@dataclass
class DayResult:
    profile: str
    budget: int
    memory_error: bool
    heap_peak: int
    heap_base: int
    boots: int
    sim_hours: float
    real_s: float
    traffic: Traffic
    recordings: int
    pcm_bytes: int
    asrun: dict[str, str]
    log_tail: str
    tls: bool = False
    memory_hwm_kb: int = 0  # the node process's peak resident memory (VmHWM)

    def happenings(self) -> int:
        """What makes the next periodic telemetry whole: as-run records, plans, commands."""
        return sum(self.traffic.of(k)[1] for k in ("publish:asrun", "publish:plan",
                                                    "publish:cmd"))

    def periodic_per_day(self, telemetry_s: int, keepalive_s: int) -> tuple[int, int, int]:
        """A real day of telemetry at the firmware's period, from the measured sizes: whole
        messages every FULL_EVERY_MS and after each happening of the day, short ones
        otherwise; and of PINGs. Returns (telemetry bytes, ping bytes, whole messages)."""
        fb, fp = self.traffic.of("publish:telemetry")
        sb, sp = self.traffic.of("publish:telemetry-short")
        per_full = fb // fp if fp else 0
        per_short = sb // sp if sp else per_full
        n = DAY_S // telemetry_s
        full = min(n, DAY_S * 1000 // FULL_EVERY_MS + self.happenings())
        pb, pp = self.traffic.of("ping")
        per_ping = pb // max(1, pp // 2) if pp else 4
        return full * per_full + (n - full) * per_short, per_ping * DAY_S // keepalive_s, full

    def event_bytes(self) -> int:
        tb, _ = self.traffic.of("publish:telemetry")
        sb, _ = self.traffic.of("publish:telemetry-short")
        pb, _ = self.traffic.of("ping")
        return self.traffic.total() - tb - sb - pb


def _schedule(path: Path) -> None:
    path.write_text(
        '[commune]\nid = "xa-mot-nut"\nname = "Xã Một Nút"\nprovince = "Lạng Sơn"\n\n'
        '[[villages]]\nid = "thon-1"\nname = "Thôn 1"\nnodes = ["e01"]\n\n'
        '[sources.vov1]\nname = "VOV1"\nprimary = "http://example.invalid/vov1"\n\n'
        '[sources.tinh]\nname = "Tỉnh"\nprimary = "http://example.invalid/tinh"\n' + SLOTS,
        encoding="utf-8")
    body = bytes(byte_pattern(7)) * (RATE_HZ * 2 * 600 // 64)
    (path.parent / "ban-tin.wav").write_bytes(wav_header(RATE_HZ, BITS, 1, len(body)) + body)


async def run_day(root: Path, profile: str, budget: int, rate: int, start_hm: str,
                  end_hm: str, day: date, events: bool = True, tls: bool = False) -> DayResult:
    """One node through start_hm..end_hm of day at `rate`; commands, an emergency and a
    link outage spread over the day (when events). With tls, the node reaches the broker
    and the media over TLS against the installation's CA, as over 4G."""
    schedule_path = root / "xa.toml"
    _schedule(schedule_path)
    h0, m0 = (int(x) for x in start_hm.split(":"))
    h1, m1 = (int(x) for x in end_hm.split(":"))
    start = datetime(day.year, day.month, day.day, h0, m0, tzinfo=TZ)
    end = datetime(day.year, day.month, day.day, h1, m1, tzinfo=TZ)
    clock = SimClock(rate=rate, sim_epoch_ms=int(start.timestamp() * 1000),
                     real_epoch_ms=int(time.time() * 1000) + 12_000)
    with Stations() as stations:
        urls: dict[str, tuple[str, str | None]] = {}
        for i, source in enumerate(("vov1", "tinh")):
            stations.add(source, byte_pattern(100 + i), rate=RATE_HZ, bits=BITS)
            urls[source] = (stations.url(source), None)
        home = Home.create(root / "home")
        runtime = Runtime(home, schedule_path, find_free_port(), clock=clock.time_ms,
                          sleep_ms=clock.sleep_ms, source_urls=urls, watch_sources=False,
                          names=["127.0.0.1"] if tls else ())
        meter = MqttMeter(runtime.broker.node_port, raw=tls)
        fleet = Fleet(root=home.sim_dir, broker_port=meter.port,
                      broker_ca=runtime.tls.ca_der() if runtime.tls else None,
                      media_hosts=[runtime.media_base if tls else runtime.media_host,
                                   stations.host], per_process=1,
                      telemetry_s=MEASURE_TELEMETRY_S, keepalive=KEEPALIVE_S,
                      real_lead_ms=500,
                      heapsize=HEAPSIZE, heap_budget=budget, precompile=True,
                      profile=profile,
                      extra={"device": {"wdt_ms": 8000}},
                      clock={"sim_epoch_ms": clock.sim_epoch_ms,
                             "real_epoch_ms": clock.real_epoch_ms, "rate": rate},
                      nodes=[SimNode(s.id, s.key, s.password, s.village)
                             for s in runtime.secrets])
        node = runtime.secrets[0].id
        t0 = time.monotonic()
        try:
            await runtime.start()
            await meter.start()
            await asyncio.to_thread(fleet.start)
            end_ms = int(end.timestamp() * 1000)

            async def at(hm: str) -> bool:
                h, m = (int(x) for x in hm.split(":"))
                t = datetime(day.year, day.month, day.day, h, m, tzinfo=TZ)
                left = int(t.timestamp() * 1000) - clock.time_ms()
                if t > end:
                    return False
                await asyncio.sleep(max(0.0, left / rate / 1000))
                return bool(fleet.alive())

            tone = f"{runtime.media_base}/media/{runtime.fallback.url.rsplit('/', 1)[-1]}" \
                if runtime.fallback else ""
            sha, size = (runtime.fallback.sha, runtime.fallback.size) if runtime.fallback \
                else ("", 0)
            if events:
                plan: list[tuple[str, str, dict[str, Any]]] = [
                    ("07:00", "volume", {"level": 100}),
                    ("07:30", "test_tone", {"seconds": 3}),
                    ("08:00", "ping", {}),
                    ("09:00", "link", {"up": False}),
                    ("09:20", "link", {"up": True}),
                    # (as the headend sends one: with the media's hash, which the node checks)
                    ("12:00", "emergency", {"url": tone, "sha": sha, "size": size,
                                            "title": "Khẩn cấp thử"}),
                    ("13:00", "volume", {"level": 70}),
                    ("14:00", "ping", {}),
                ]
                for hm, op, args in plan:
                    if not await at(hm):
                        break
                    if op == "link":
                        await asyncio.to_thread(fleet.set_link, node, args["up"])
                    elif op != "emergency" or tone:
                        await runtime.headend.send([node], op, args, operator="bench")
            left = end_ms - clock.time_ms()
            await asyncio.sleep(max(0.0, left / rate / 1000))
            st = await asyncio.to_thread(fleet.status)
            base = fleet.heap_base()
            hwm = _memory_hwm_kb(fleet.pids()[0])
        finally:
            logs = fleet.logs() if fleet._procs else ""
            await asyncio.to_thread(fleet.stop)
            await meter.stop()
            await runtime.stop()


        eng = open_db(home.db_url)
        with Session(eng) as s:
            asrun = {f"{r.media or r.rid} {r.start_ms}": f"{r.outcome} {r.reason or ''}".strip()
                     for r in s.scalars(select(AsRunRecord))}
        eng.dispose()
        n = st.get(node, {})
        return DayResult(profile, budget, "MemoryError" in logs, n.get("heap_peak", 0),
                         (base or [0])[0], n.get("boots", 0),
                         (end - start).total_seconds() / 3600, time.monotonic() - t0,
                         meter.traffic, len(fleet.recordings(node)),
                         sum(len(x.pcm()) for x in fleet.recordings(node)), asrun, logs[-1500:],
                         tls, hwm)


def _memory_hwm_kb(pid: int) -> int:
    """A process's peak resident memory: on the unix port mbedTLS allocates outside the
    MicroPython heap (as on an ESP32, where it takes the IDF heap), so only this sees it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _report_tls(r: DayResult, plain: DayResult) -> None:
    """The TLS day beside the same day in the clear (measured in the same run)."""
    print(f"[{r.profile} over TLS] heap budget {r.budget // 1024} KB: MemoryError "
          f"{'YES' if r.memory_error else 'no'}; boots {r.boots}; peak heap used by the node "
          f"{(r.heap_peak - r.heap_base) / 1024:.1f} KB (in the clear: "
          f"{(plain.heap_peak - plain.heap_base) / 1024:.1f} KB)")
    print(f"  {r.sim_hours:.1f} simulated hours in {r.real_s:.0f} s; {r.recordings} "
          f"recordings (in the clear: {plain.recordings}); as-run: "
          f"{dict(Counter(o.split()[0] for o in r.asrun.values()))}")
    print(f"  node process peak memory {r.memory_hwm_kb} KB (in the clear: "
          f"{plain.memory_hwm_kb} KB): mbedTLS's own "
          f"{r.memory_hwm_kb - plain.memory_hwm_kb} KB, outside the MicroPython heap")
    print(f"  MQTT bytes over TLS: {r.traffic.total()} (in the clear: {plain.traffic.total()})")


def _report(r: DayResult) -> int:
    tel_day, ping_day, full = r.periodic_per_day(TELEMETRY_S, KEEPALIVE_S)
    ev = r.event_bytes()
    day = ev + tel_day + ping_day
    tb, tp = r.traffic.of("publish:telemetry")
    sb, sp = r.traffic.of("publish:telemetry-short")
    print(f"[{r.profile}] heap budget {r.budget // 1024} KB: MemoryError "
          f"{'YES' if r.memory_error else 'no'}; boots {r.boots}; peak heap used by the node "
          f"{(r.heap_peak - r.heap_base) / 1024:.1f} KB (live, above the "
          f"{r.heap_base / 1024:.1f} KB the loaded code and the ballast hold)")
    print(f"  {r.sim_hours:.1f} simulated hours in {r.real_s:.0f} s; {r.recordings} "
          f"recordings; as-run: {dict(Counter(o.split()[0] for o in r.asrun.values()))}")
    print(f"  MQTT bytes measured: {r.traffic.total()} ({ev} event traffic, "
          f"{tp} whole telemetry msgs of ~{tb // max(1, tp)} B, {sp} short of "
          f"~{sb // max(1, sp)} B)")
    for k, v in sorted(r.traffic.bytes.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {k:<28} {v:>8} B  {r.traffic.packets[k]:>5} pkts")
    print(f"  per real day: events {ev / 1024:.1f} KB + telemetry every {TELEMETRY_S} s "
          f"({full} whole: hourly and after each of {r.happenings()} happenings) "
          f"{tel_day / 1024:.1f} KB + keepalive every {KEEPALIVE_S} s {ping_day / 1024:.1f} KB"
          f" = {day / 1024:.1f} KB (target {TARGET_BYTES_PER_DAY // 1024} KB)")
    return day


def run_node_day(args: argparse.Namespace) -> int:
    day = date.today() + timedelta(days=1)
    profiles = ["esp32"] + (["sim"] if args.reference else [])
    results = []
    for profile in profiles:
        with tempfile.TemporaryDirectory(prefix=f"loaxa-bench-node-{profile}-") as tmp:
            print(f"simulating {args.start}–{args.end} on one {profile} node at {args.rate}x, "
                  f"{args.heap_budget} KB of heap", flush=True)
            results.append(asyncio.run(run_day(Path(tmp), profile, args.heap_budget * 1024,
                                               args.rate, args.start, args.end, day)))
    if args.tls:
        with tempfile.TemporaryDirectory(prefix="loaxa-bench-node-tls-") as tmp:
            print(f"simulating {args.start}–{args.end} on one esp32 node over TLS at "
                  f"{args.rate}x, {args.heap_budget} KB of heap", flush=True)
            tls_day = asyncio.run(run_day(Path(tmp), "esp32", args.heap_budget * 1024,
                                          args.rate, args.start, args.end, day, tls=True))
    days = []
    for r in results:
        days.append(_report(r))
        if r.memory_error:
            print(r.log_tail)
    esp = results[0]
    ok = not esp.memory_error and esp.boots == 1 and days[0] <= TARGET_BYTES_PER_DAY
    if args.tls:
        _report_tls(tls_day, esp)
        if tls_day.memory_error:
            print(tls_day.log_tail)
        ok = ok and not tls_day.memory_error and tls_day.boots == 1 \
            and tls_day.recordings == esp.recordings
    print("verdict: " + (f"no MemoryError in {args.heap_budget} KB, {days[0] / 1024:.1f} KB of "
                         "control traffic a day" if ok else "FAILED"))
    return 0 if ok else 1


def add_parser(bench_sub: Any) -> None:
    p = bench_sub.add_parser("node-day", help="one ESP32-profile node through a simulated day "
                             "under a small MicroPython heap: peak heap, MQTT bytes per day")
    p.add_argument("--heap-budget", type=int, default=96, metavar="KB",
                   help="heap left to the node once its code is loaded, as on an ESP32 with "
                        "the firmware frozen in flash (default 96)")
    p.add_argument("--rate", type=int, default=300, help="simulated seconds per real second")
    p.add_argument("--start", default="05:45", help="simulated start (local time)")
    p.add_argument("--end", default="18:00", help="simulated end (local time)")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip the same day on the hal/sim profile")
    p.add_argument("--tls", action="store_true",
                   help="also the same ESP32 day over TLS (MQTT and media), beside the "
                        "day in the clear: heap, process memory, bytes")

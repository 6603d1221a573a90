"""`loaxa bench fanout`: how fast one signed `play` reaches N nodes and is acknowledged.

Measured: from the headend's publish of one signed play per node until every node has acked
it (each node checked the signature, sequence number and validity, persisted its sequence
number and answered). Reference, in the same run over the same N node connections: the
broker delivering one plain message to each node, which echoes it back unchecked. Both are
QoS 1 both ways and timed the same way, so the difference is what signing and checking cost.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from firmware import protocol
from hal.sim import SimClock
from headend.bench.common import CpuMeter, bench_commune
from headend.communes.registry import headend_password, provision_commune
from headend.core.db import open_db
from headend.core.home import Home
from headend.media.store import write_test_tone
from headend.nodes.broker import Broker, find_free_port
from headend.nodes.gateway import Gateway
from headend.web.app import make_app
from hwsim.fleet import Fleet, SimNode, quiet_away_from_now

BLIP = "blip.wav"
START_AFTER_MS = 8000
SETTLE_S = 2.0
TARGET_RATIO = 1.5
TARGET_SECONDS = 2.0


@dataclass
class FanoutResult:
    nodes: int
    reference_s: list[float] = field(default_factory=list)
    signed_s: list[float] = field(default_factory=list)
    prepare_s: list[float] = field(default_factory=list)
    reference_cpu: list[dict[str, float]] = field(default_factory=list)
    signed_cpu: list[dict[str, float]] = field(default_factory=list)
    connect_s: float = 0.0
    flash: str = "disk"
    op: str = "play"

    @property
    def reference(self) -> float:
        return statistics.median(self.reference_s)

    @property
    def signed(self) -> float:
        return statistics.median(self.signed_s)

    @property
    def ratio(self) -> float:
        return self.signed / self.reference

    @property
    def meets_target(self) -> bool:
        return self.ratio <= TARGET_RATIO and self.signed <= TARGET_SECONDS

    def report(self) -> str:
        def row(name: str, xs: list[float]) -> str:
            runs = " ".join(f"{x:.3f}" for x in xs)
            return (f"  {name:<34} median {statistics.median(xs):6.3f} s  "
                    f"min {min(xs):6.3f} s   runs: {runs}")

        def cpu(name: str, rounds: list[dict[str, float]]) -> str:
            parts = "  ".join(f"{part} {statistics.median(r[part] for r in rounds):.2f}"
                              for part in rounds[0])
            return f"  {name:<34} CPU s (median): {parts}"

        verdict = "MET" if self.meets_target else "NOT MET"
        return "\n".join([
            f"loaxa bench fanout: {self.nodes} nodes (MicroPython unix port, real Mosquitto)",
            f"  all nodes connected in {self.connect_s:.1f} s; simulated flash on {self.flash}",
            row("reference: plain echo, all back", self.reference_s),
            row("signed play: publish -> all acked" if self.op == "play"
                else "emergency: publish -> all playing", self.signed_s),
            row("(sign + record, before publish)", self.prepare_s),
            cpu("reference", self.reference_cpu),
            cpu(f"signed {self.op}", self.signed_cpu),
            f"  ratio signed/reference: {self.ratio:.2f} (target <= {TARGET_RATIO}); "
            f"signed {self.signed:.3f} s (target <= {TARGET_SECONDS} s): {verdict}",
        ])


async def _reference_round(headend: Gateway, node_ids: list[str],
                           meter: CpuMeter) -> tuple[float, dict[str, float]]:
    loop = asyncio.get_running_loop()
    futs = {}
    for n in node_ids:
        futs[n] = headend.echo_waiters[n] = loop.create_future()
    payload = b"plain reference message"
    meter.start()
    t0 = time.perf_counter()
    # The same publishing path as commands, with a fixed payload and no signing.
    await asyncio.gather(*(headend.publish(n, protocol.ECHO, payload) for n in node_ids))
    await asyncio.wait_for(asyncio.gather(*futs.values()), 60)
    return time.perf_counter() - t0, meter.stop()


async def _signed_round(headend: Gateway, node_ids: list[str], url: str,
                        meter: CpuMeter, op: str) -> tuple[float, float, dict[str, float]]:
    t_prep = time.perf_counter()
    first: tuple[str, ...]
    args: dict[str, object]
    if op == "emergency":
        # Measured until every node's audio output has begun: fetch, amplifier pre-roll and
        # all, as a village hears it.
        args = {"url": url, "title": "Đo tốc độ khẩn cấp"}
        first = (protocol.STARTED, protocol.REJECTED, protocol.FAILED)
    else:
        # The blip starts together on every node a few seconds later, as a commune-wide
        # announcement would; the fan-out being measured is the command's, not the media's.
        args = {"url": url, "title": "Đo tốc độ", "at": headend.clock() + START_AFTER_MS}
        first = (protocol.ACCEPTED, protocol.REJECTED)
    commands = await asyncio.to_thread(headend.prepare, node_ids, op, args, 120_000, "bench")
    prep = time.perf_counter() - t_prep
    futs = [headend.waiters.add(c.id, first) for c in commands]
    done = [headend.waiters.add(c.id, (protocol.DONE, protocol.FAILED)) for c in commands]
    meter.start()
    t0 = time.perf_counter()
    await headend.publish_commands(commands)
    acks = await asyncio.wait_for(asyncio.gather(*futs), 60)
    elapsed = time.perf_counter() - t0
    cpu = meter.stop()
    bad = [a for a in acks if a["status"] != first[0]]
    if bad:
        raise RuntimeError(f"{len(bad)} nodes did not take the {op}, e.g. {bad[0]}")
    # Let the blips play and their reports settle before the next round.
    await asyncio.wait_for(asyncio.gather(*done), 120)
    await headend.flush()
    return elapsed, prep, cpu


def _flash_dir() -> tempfile.TemporaryDirectory[str] | None:
    """Where the simulated nodes keep their flash: in memory when the machine has /dev/shm.

    Each real node writes its sequence number to its own flash chip. 2,000 simulated nodes
    writing theirs through one ext4 journal queue behind each other (measured: 30 us per
    write alone, 540 us under the fan-out), which no real node does. The nodes still make
    the same write system call per command; only the shared disk journal is left out."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return tempfile.TemporaryDirectory(prefix="loaxa-bench-flash-", dir=shm)
    return None


async def run_fanout(nodes: int, rounds: int, per_process: int,
                     root: Path | None = None, op: str = "play",
                     clock: SimClock | None = None) -> FanoutResult:
    """clock: the time the headend and the nodes share (default: the real clock). The nodes'
    quiet hours are put 12 hours away from it, so the benchmark plays at any hour."""
    shared = clock or SimClock()
    tmp = tempfile.TemporaryDirectory(prefix="loaxa-bench-") if root is None else None
    base = Path(tmp.name) if tmp else root
    assert base is not None
    home = Home.create(base / "home")
    engine = open_db(home.db_url)
    secrets = provision_commune(engine, home, bench_commune(nodes))
    write_test_tone(home.media_dir, BLIP, seconds=0.2)
    password = headend_password(home)
    broker = Broker(home.broker_dir, port=find_free_port(), headend_password=password)
    broker.write_config({s.id: s.password for s in secrets})
    web_port = find_free_port()
    flash = _flash_dir()
    fleet = Fleet(root=Path(flash.name) if flash else home.sim_dir, broker_port=broker.node_port,
                  media_hosts=[f"127.0.0.1:{web_port}"], per_process=per_process,
                  telemetry_s=3600, keepalive=120,
                  nodes=[SimNode(s.id, s.key, s.password) for s in secrets],
                  session={"initial_jitter_ms": 5000},
                  clock=None if clock is None else clock.config(),
                  extra={"quiet": quiet_away_from_now(now_ms=shared.time_ms())})
    headend = Gateway(engine, broker.port, password, clock=shared.time_ms)

    server = uvicorn.Server(uvicorn.Config(make_app(engine, home.media_dir), host="127.0.0.1",
                                           port=web_port, log_level="warning"))
    result = FanoutResult(nodes, op=op)
    tasks: list[asyncio.Task[None]] = []
    try:
        broker.start()
        tasks.append(asyncio.create_task(headend.run()))
        tasks.append(asyncio.create_task(server.serve()))
        await headend.wait_connected(15)
        t0 = time.perf_counter()
        await asyncio.to_thread(fleet.start, 120)
        await asyncio.to_thread(fleet.wait_connected, 300)
        result.connect_s = time.perf_counter() - t0
        await asyncio.sleep(2)
        await headend.flush()
        gc.freeze()  # as a long-running headend is after start-up (see Gateway._session)
        node_ids = [s.id for s in secrets]
        assert broker.pid is not None
        meter = CpuMeter({"headend": [os.getpid()], "broker": [broker.pid],
                          "nodes": fleet.pids()})
        url = f"http://127.0.0.1:{web_port}/media/{BLIP}"
        for _ in range(rounds):
            # Rounds alternate, each after a quiet pause, so drift in the machine's load
            # falls on both sides alike.
            await asyncio.sleep(SETTLE_S)
            elapsed, cpu = await _reference_round(headend, node_ids, meter)
            result.reference_s.append(elapsed)
            result.reference_cpu.append(cpu)
            await asyncio.sleep(SETTLE_S)
            elapsed, prep, cpu = await _signed_round(headend, node_ids, url, meter, op)
            result.signed_s.append(elapsed)
            result.prepare_s.append(prep)
            result.signed_cpu.append(cpu)
    finally:
        server.should_exit = True
        await asyncio.to_thread(fleet.stop)
        if len(tasks) > 1:
            await asyncio.wait([tasks[1]], timeout=5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        broker.stop()
        engine.dispose()
        if tmp:
            tmp.cleanup()
        if flash:
            flash.cleanup()
    result.flash = "tmpfs (/dev/shm)" if flash else "disk"
    print(result.report(), flush=True)
    return result

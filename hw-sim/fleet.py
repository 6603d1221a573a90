"""Run a fleet of simulated nodes: the real firmware under real MicroPython (unix port).

Nodes are spread over a few MicroPython processes (one process hosts many nodes, as asyncio
tasks); each node gets a directory holding its flash, the audio it received and a hardware
event log, which tests read to check what actually played and when.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.node import ITEM_LEAD_MS
from hal.sim import SimClock

REPO = Path(__file__).resolve().parent.parent
HOST_SCRIPT = Path(__file__).resolve().parent / "simnode.py"


def micropython_binary() -> str:
    """The MicroPython unix port installed from PyPI into the same environment."""
    candidate = Path(sys.executable).parent / "micropython"
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError(f"micropython not found beside {sys.executable}; run `make install`")


def _ready_port(log: Path) -> int | None:
    """The control port from a host's 'READY <nodes> <port>' line, once it is there."""
    for line in log.read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "READY":
            return int(words[2])
    return None


def quiet_away_from_now(utc_offset_min: int = 7 * 60, now_ms: int | None = None) -> list[int]:
    """Quiet hours [start, end, utc_offset] an hour long, 12 hours from now local time: for
    nodes on the real clock that must play whatever the hour (tests, the demo at night).
    now_ms: UTC milliseconds to count from (default: the real clock now)."""
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    now_min = (now_ms // 60_000 + utc_offset_min) % 1440
    start = (now_min + 720) % 1440
    return [start, (start + 60) % 1440, utc_offset_min]


@dataclass
class SimNode:
    id: str
    key: str
    password: str
    village: str = ""
    clock_offset_ms: int = 0
    link_up: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # more node config (overrides Fleet's)
    profile: str | None = None  # "sim" or "esp32" (hal.esp32 over hw-sim/mpsim); None: Fleet's


@dataclass
class Recording:
    """One playback as the simulated audio output received it."""

    label: str
    start_ms: int
    end_ms: int | None
    rate: int
    bits: int
    channels: int
    volume: int
    pcm_path: Path

    def pcm(self) -> bytes:
        return self.pcm_path.read_bytes()


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    control_port: int
    node_ids: list[str]
    log: Path


@dataclass
class Fleet:
    root: Path
    broker_port: int
    media_hosts: Sequence[str]
    nodes: Sequence[SimNode]
    broker_host: str = "127.0.0.1"
    # The installation CA (DER) every node pins: then it speaks TLS to the broker and https
    # to its media hosts. None: plain TCP (loopback only).
    broker_ca: bytes | None = None
    per_process: int = 250
    heapsize: str = "64M"
    telemetry_s: int = 60
    keepalive: int = 30
    session: dict[str, Any] = field(default_factory=dict)
    # Controlled time shared by every node: {"sim_epoch_ms", "real_epoch_ms", "rate", "warp"}
    # (hal.sim.SimClock.config()). None: real time. Build one with Fleet.fast_clock().
    clock: dict[str, Any] | None = None
    cache_bytes: int | None = None  # each node's media cache (firmware default when None)
    real_lead_ms: int = 60  # under a fast clock, items start at least this long (real) ahead
    extra: dict[str, Any] = field(default_factory=dict)  # more config for every node
    # The board every node gets unless its SimNode says: "sim" (hal.sim) or "esp32" (hal.esp32
    # over hw-sim/mpsim's machine/network/esp32, as on the board).
    profile: str = "sim"
    # Run compiled .mpy (mpy-cross, as on the board) instead of compiling the sources in the
    # node process: what a small heap (heapsize="96K") needs, since compiling takes heap.
    precompile: bool = False
    # Bytes of heap left free for the nodes once the code is loaded (hw-sim/simnode.py
    # budget_heap: the heap an ESP32 has with its firmware frozen in flash); None: all of it.
    heap_budget: int | None = None
    _procs: list[_Proc] = field(default_factory=list)

    @staticmethod
    def fast_clock(rate: float, sim_epoch_ms: int | None = None) -> dict[str, Any]:
        """A clock dict: simulated time starts at sim_epoch_ms (default: now) and runs `rate`
        times as fast as real time from this moment."""
        real = time.time_ns() // 1_000_000
        return {"sim_epoch_ms": real if sim_epoch_ms is None else sim_epoch_ms,
                "real_epoch_ms": real, "rate": rate}

    def sim_time_ms(self) -> int:
        """The fleet's simulated time now (without any node's own clock offset)."""
        if not self.clock:
            return time.time_ns() // 1_000_000
        c = self.clock
        return int(SimClock(0, c.get("rate", 1), c["sim_epoch_ms"], c["real_epoch_ms"],
                            c.get("warp")).time_ms())

    def node_dir(self, node_id: str) -> Path:
        return self.root / "nodes" / node_id

    def _node_config(self, n: SimNode) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "id": n.id,
            "key": n.key,
            "dir": str(self.node_dir(n.id)),
            "broker": {"host": self.broker_host, "port": self.broker_port,
                       "password": n.password, "keepalive": self.keepalive},
            "media_hosts": list(self.media_hosts),
            "telemetry_s": self.telemetry_s,
            "clock_offset_ms": n.clock_offset_ms,
            "link_up": n.link_up,
            "session": self.session,
            "profile": n.profile or self.profile,
        }
        if self.broker_ca is not None:
            cfg["broker"]["ca"] = base64.b64encode(self.broker_ca).decode()
        if self.clock:
            cfg["clock"] = self.clock
            rate = self.clock.get("rate", 1)
            if rate > 1:
                # Opening a stream takes real milliseconds, which a fast clock multiplies:
                # start items real_lead_ms (real) ahead so they still begin on their second.
                cfg["item_lead_ms"] = max(ITEM_LEAD_MS, int(self.real_lead_ms * rate))
        if self.cache_bytes is not None:
            cfg["cache_bytes"] = self.cache_bytes
        cfg.update(self.extra)
        cfg.update(n.extra)
        return cfg

    def _compile(self) -> Path:
        """mpy-cross every module a node process imports into root/mpy; returns that dir."""
        out = self.root / "mpy"
        cross = Path(micropython_binary()).parent / "mpy-cross"
        here = HOST_SCRIPT.parent
        # The MicroPython side only (hal/rpi is CPython on a Pi).
        sources = [(p, p.relative_to(REPO)) for d in ("firmware", "hal/sim", "hal/esp32")
                   for p in sorted((REPO / d).rglob("*.py"))]
        sources += [(p, p.relative_to(REPO)) for p in sorted((REPO / "hal").glob("*.py"))]
        sources += [(p, p.relative_to(here)) for p in sorted((here / "mpsim").rglob("*.py"))]
        sources.append((HOST_SCRIPT, Path(HOST_SCRIPT.name)))
        for src, rel in sources:
            if "__pycache__" in rel.parts:
                continue
            dst = (out / rel).with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(cross), "-o", str(dst), str(src)], check=True,
                           capture_output=True)
        return out

    def start(self, timeout: float = 30.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)  # the host files hold each node's key and broker password
        env = dict(os.environ, MICROPYPATH=f"{REPO}:.frozen")
        mp = micropython_binary()
        script = [str(HOST_SCRIPT)]
        if self.precompile:
            env["MICROPYPATH"] = f"{self._compile()}:.frozen"
            script = ["-m", "simnode"]
        for i in range(0, len(self.nodes), self.per_process):
            group = self.nodes[i : i + self.per_process]
            cfg_path = self.root / f"host-{i // self.per_process}.json"
            cfg = {"parent_pid": os.getpid(), "heap_collect": self.precompile,
                   "heap_budget": self.heap_budget,
                   "nodes": [self._node_config(n) for n in group]}
            fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)  # (an old file keeps its mode otherwise)
                f.write(json.dumps(cfg))
            log = self.root / f"host-{i // self.per_process}.log"
            with log.open("wb") as out:
                popen = subprocess.Popen(
                    [mp, "-X", f"heapsize={self.heapsize}", *script, str(cfg_path)],
                    stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                    start_new_session=True,
                )
            self._procs.append(_Proc(popen, 0, [n.id for n in group], log))
        deadline = time.monotonic() + timeout
        for p in self._procs:
            while (ready := _ready_port(p.log)) is None:
                if p.popen.poll() is not None or time.monotonic() > deadline:
                    tail = p.log.read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"simulated node host failed to start:\n{tail}")
                time.sleep(0.05)
            p.control_port = ready

    def _control(self, proc: _Proc, line: str) -> str:
        with socket.create_connection(("127.0.0.1", proc.control_port), timeout=10) as s:
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        reply = buf.decode().strip()
        if not reply.startswith("OK"):
            raise RuntimeError(f"hw-sim control: {line!r} -> {reply!r}")
        return reply[3:]

    def _procs_for(self, node_id: str) -> Iterable[_Proc]:
        return [p for p in self._procs if node_id == "*" or node_id in p.node_ids]

    def set_link(self, node_id: str, up: bool) -> None:
        """Cut or restore a node's network link ('*' for every node)."""
        for p in self._procs_for(node_id):
            self._control(p, f"{'up' if up else 'down'} {node_id}")

    def set_fault(self, node_id: str, *, amp_fault: bool | None = None,
                  signal_dbm: int | None = None, temp_c: int | None = None,
                  clock_offset_ms: int | None = None) -> None:
        """Change what a running node's simulated hardware senses ('*' for every node); None
        leaves a value as it is. amp_fault: the amplifier draws 0 mA while on (the node
        reports amp_fault once it is next on); signal_dbm: the link's signal; temp_c: the
        board temperature; clock_offset_ms: the node's clock offset (its telemetry "at")."""
        kw = {k: v for k, v in (("amp_fault", amp_fault), ("signal_dbm", signal_dbm),
                                ("temp_c", temp_c), ("clock_offset_ms", clock_offset_ms))
              if v is not None}
        line = json.dumps(kw, separators=(",", ":"))
        for p in self._procs_for(node_id):
            self._control(p, f"fault {node_id} {line}")

    def reboots(self, node_id: str) -> int:
        """How often the node rebooted (op "reboot"): its "reboot" hardware events."""
        return sum(1 for ev in self.events(node_id) if ev["event"] == "reboot")

    def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for p in self._procs:
            out.update(json.loads(self._control(p, "status")))
        return out

    def wait_connected(self, timeout: float = 30.0, node_ids: Iterable[str] | None = None) -> None:
        want = set(node_ids) if node_ids is not None else {n.id for n in self.nodes}
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            missing = sorted(i for i in want if not st.get(i, {}).get("connected"))
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes not connected: {missing[:10]}")
            time.sleep(0.1)

    def events(self, node_id: str) -> list[dict[str, Any]]:
        path = self.node_dir(node_id) / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def recordings(self, node_id: str) -> list[Recording]:
        out: list[Recording] = []
        for ev in self.events(node_id):
            if ev["event"] == "audio_open":
                out.append(Recording(ev["label"], ev["at"], None, ev["rate"], ev["bits"],
                                     ev["channels"], ev["volume"], Path(ev["file"])))
            elif ev["event"] == "audio_close" and out:
                out[-1].end_ms = ev["at"]
        return out

    def heap_base(self) -> list[int]:
        """Heap each node process used before its nodes started (its 'HEAP base' line)."""
        out: list[int] = []
        for p in self._procs:
            for line in p.log.read_text(errors="replace").splitlines():
                if line.startswith("HEAP base "):
                    out.append(int(line.split()[2]))
        return out

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self._procs]

    def alive(self) -> bool:
        return bool(self._procs) and all(p.popen.poll() is None for p in self._procs)

    def logs(self) -> str:
        return "\n".join(p.log.read_text(errors="replace")[-3000:] for p in self._procs)

    def stop(self) -> None:
        for p in self._procs:
            if p.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.popen.pid, signal.SIGTERM)
        for p in self._procs:
            try:
                p.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait()
        self._procs.clear()

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

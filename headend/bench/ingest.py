"""`loaxa bench ingest`: how many node reports per second the headend stores, sustained.

N provisioned nodes, each on its own MQTT connection with its own broker credentials (so the
broker's password and ACL path is part of what is measured), publish a mix of telemetry
(QoS 0, as `firmware/node.py` sends it) and as-run records (QoS 1, unique record id per node,
signed with the node's key as the firmware signs them) at a fixed offered rate. The load
generator runs in its own process(es) and sends MQTT packets it builds itself (telemetry
pre-encoded, records signed as they go) over plain sockets, so it costs little next to what it
measures.

Two phases in the same run, over the same node connections and the same offered load:

- **reference**: a minimal subscriber (raw socket, counts and PUBACKs, nothing else) takes the
  same topics the headend takes (`+/telemetry`, `+/asrun`, QoS 1): the plain broker delivery
  rate to one subscriber;
- **headend**: `headend.nodes.gateway.Gateway` receives, decodes, batches and stores every
  message in
  SQLite (`headend.nodes.ingest.receive_reports`: admission, that is the signature and checks of
  `headend/nodes/admission.py`, then storing), then acknowledges each as-run record to its node.
  Stored = committed in the database (`Gateway.stored`).

Afterwards the run checks that what was offered was stored exactly once: as-run rows in the
database = as-run records offered, every record acknowledged to its node, and every node's
stored telemetry is the last one it sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from firmware import protocol
from headend.bench.common import CpuMeter, bench_commune, positive_float, positive_int
from headend.communes.registry import headend_password, provision_commune
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import AsRunRecord, Node
from headend.nodes.broker import Broker, find_free_port, raise_fd_limit
from headend.nodes.gateway import Gateway

TARGET_RATE = 10_000  # messages stored per second (issue #4)
TICK_S = 0.005  # the generator sends what is due every 5 ms
DRAIN_TIMEOUT_S = 120.0
SAMPLE_S = 1.0
FW = "0.1.0"

# --- MQTT 3.1.1 packets, by hand (the generator and the reference stay cheap) -----------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, username: str, password: str, keepalive: int = 600) -> bytes:
    flags = 0x80 | 0x40 | 0x02  # username, password, clean session
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    return _packet(0x10, body + _string(client_id) + _string(username) + _string(password))


def subscribe_packet(pid: int, filters: list[str], qos: int = 1) -> bytes:
    body = struct.pack("!H", pid) + b"".join(_string(f) + bytes([qos]) for f in filters)
    return _packet(0x82, body)


def split_packets(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take the complete packets off the front of buf: (first byte, body) each."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while True:
        if len(buf) - pos < 2:
            break
        length, mult, i = 0, 1, pos + 1
        while i < len(buf):
            b = buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        else:
            break  # the length itself is incomplete
        if len(buf) - i < length:
            break
        out.append((buf[pos], bytes(buf[i:i + length])))
        pos = i + length
    del buf[:pos]
    return out


def _read_packet(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """Blocking: the next packet (used while connecting)."""
    while True:
        got = split_packets(buf)
        if got:
            first, body = got[0]
            # Anything behind it goes back in front.
            rest = b"".join(_packet(f, b) for f, b in got[1:])
            buf[:0] = rest
            return first, body
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("broker closed the connection")
        buf += data


# --- the load generator (its own process) -------------------------------------------------------


def _telemetry_parts(node_id: str) -> tuple[bytes, bytes]:
    """A node's telemetry (firmware Node.telemetry()), split around its `at` time."""
    now = int(time.time() * 1000)
    head = {"v": protocol.VERSION, "t": "telemetry", "node": node_id, "at": 0}
    tail = {"fw": FW, "board": "esp32-4g", "uptime_s": 86_400, "heap_free": 61_440,
            "link": "ppp", "signal_dbm": -77, "volume": 80, "amp": False, "playing": None,
            "seq": 42, "session": 7, "asrun_pending": 0, "rejections": 0, "plan": 12,
            "plan_to": now + 48 * 3600_000, "on_air": None, "emergency": None,
            "cache_used": 3_145_728, "cache_full": False, "cache_error": None, "clock": now}
    a = json.dumps(head)[:-2].encode()  # '{..., "at": '
    b = (", " + json.dumps(tail)[1:]).encode()  # ', "fw": ... }'
    return a, b


# A Lạng Sơn day (docs/benchmarks.md, bench start): four relays and two bulletins per node.
_ITEMS = [
    ("tinh-sang", "province_relay", "Tiếp sóng Đài tỉnh buổi sáng", "primary"),
    ("vov-sang", "vov_relay", "Tiếp sóng Thời sự VOV1 buổi sáng", "primary"),
    ("ban-tin-trua", "local_bulletin", "Bản tin xã buổi trưa", "cache"),
    ("tinh-chieu", "province_relay", "Tiếp sóng Đài tỉnh buổi chiều", "backup"),
    ("ban-tin", "local_bulletin", "Bản tin xã", "cache"),
    ("vov-toi", "vov_relay", "Tiếp sóng Thời sự VOV1 buổi tối", "primary"),
]


def _asrun_record(node_id: str, item: int) -> dict[str, Any]:
    """An as-run record of a plan item (firmware/asrun.py record_item()), rid to be set; the
    generator signs each one with the node's key, as the node does (firmware/protocol.py
    sign_report), so the headend's admission checks are part of what is measured."""
    now = int(time.time() * 1000)
    iid, kind, title, src = _ITEMS[item % len(_ITEMS)]
    return {"v": protocol.VERSION, "t": "asrun", "node": node_id, "rid": 0,
            "trigger": "plan", "item": f"{iid}@2026-11-24", "kind": kind, "p": 0, "lang": "vi",
            "title": title, "planned": now - 1_800_000, "planned_end": now,
            "start": now - 1_799_990, "end": now, "outcome": protocol.AIRED, "reason": None,
            "src": src, "media": "" if kind.endswith("relay")
            else f"http://10.0.0.1:8080/media/{iid}.wav"}


@dataclass
class _GenNode:
    id: str
    sock: socket.socket
    tel_topic: bytes
    asr_topic: bytes
    tel: tuple[bytes, bytes]
    asr: list[dict[str, Any]]
    signer: protocol.Signer
    buf: bytearray = field(default_factory=bytearray)
    pid: int = 0
    rid: int = 0
    last_at: int = 0


def _generator_child() -> None:
    """Entry point of a generator process: its control connection's fd is argv[1]."""
    conn = Connection(int(sys.argv[1]))
    port, nodes, asrun_share = conn.recv()
    try:
        _generator_main(conn, port, nodes, asrun_share)
    finally:
        conn.close()


def _generator_main(conn: Connection, port: int, nodes: list[tuple[str, str, str]],
                    asrun_share: float) -> None:
    """Connect every node, then run phases on command: ("run", seconds, rate) sends the mix
    for that long; ("drain", seconds) only reads; ("stop",) leaves. Replies with counters."""
    raise_fd_limit()
    sel = selectors.DefaultSelector()
    gen: list[_GenNode] = []
    for node_id, password, key in nodes:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n = _GenNode(node_id, sock, _string(protocol.topic(node_id, protocol.TELEMETRY)),
                     _string(protocol.topic(node_id, protocol.ASRUN)), _telemetry_parts(node_id),
                     [_asrun_record(node_id, i) for i in range(len(_ITEMS))],
                     protocol.Signer(protocol.node_key(key)))
        sock.sendall(connect_packet(node_id, node_id, password))
        first, body = _read_packet(sock, n.buf)
        if first != 0x20 or body[1] != 0:
            raise ConnectionError(f"{node_id}: CONNACK {body!r}")
        # As the firmware does: the node takes its as-run acks at QoS 1.
        sock.sendall(subscribe_packet(1, [protocol.topic(node_id, protocol.ASRUN_ACK)]))
        first, body = _read_packet(sock, n.buf)
        if first != 0x90 or body[2:] != b"\x01":
            raise ConnectionError(f"{node_id}: SUBACK {body!r}")
        sel.register(sock, selectors.EVENT_READ, n)
        gen.append(n)
    counts = {"telemetry": 0, "asrun": 0, "pubacks": 0, "acked": 0}

    def read(timeout: float) -> None:
        for key, _ in sel.select(timeout):
            n: _GenNode = key.data
            data = n.sock.recv(262144)
            if not data:
                raise ConnectionError(f"{n.id}: broker closed the connection")
            n.buf += data
            replies = []
            for first, body in split_packets(n.buf):
                kind = first >> 4
                if kind == 4:  # PUBACK of an as-run record
                    counts["pubacks"] += 1
                elif kind == 3:  # the headend's as-run ack, QoS 1
                    tlen = struct.unpack_from("!H", body)[0]
                    pid = body[2 + tlen:4 + tlen]
                    counts["acked"] += len(json.loads(body[4 + tlen:])["rids"])
                    replies.append(b"\x40\x02" + pid)
            if replies:
                n.sock.sendall(b"".join(replies))

    conn.send(("ready", len(gen)))
    tel_i, asr_i = 0, len(gen) // 2
    now_ms = int(time.time() * 1000)
    while True:
        cmd = conn.recv()
        if cmd[0] == "stop":
            break
        if cmd[0] == "drain":
            end = time.perf_counter() + cmd[1]
            while time.perf_counter() < end:
                read(0.05)
            conn.send(dict(counts))
            continue
        seconds, rate = cmd[1], cmd[2]
        before = dict(counts)
        t0 = time.perf_counter()
        sent, share = 0, 0.0
        while True:
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
            due = int(elapsed * rate) - sent
            if due > 0:
                out: dict[int, list[bytes]] = defaultdict(list)
                for _ in range(due):
                    share += asrun_share
                    if share >= 1.0:
                        share -= 1.0
                        asr_i = (asr_i + 1) % len(gen)
                        n = gen[asr_i]
                        n.rid += 1
                        n.pid = n.pid % 65535 + 1
                        rec = dict(n.asr[n.rid % len(n.asr)], rid=n.rid)
                        body = (n.asr_topic + struct.pack("!H", n.pid)
                                + protocol.sign_report(n.signer, rec))
                        out[asr_i].append(b"\x32" + _varint(len(body)) + body)
                        counts["asrun"] += 1
                    else:
                        tel_i = (tel_i + 1) % len(gen)
                        n = gen[tel_i]
                        now_ms += 1  # unique and rising per node: the last one sent is known
                        n.last_at = now_ms
                        a, b = n.tel
                        body = n.tel_topic + a + str(now_ms).encode() + b
                        out[tel_i].append(b"\x30" + _varint(len(body)) + body)
                        counts["telemetry"] += 1
                for i, packets in out.items():
                    gen[i].sock.sendall(b"".join(packets))
                sent += due
            read(max(0.0, TICK_S - (time.perf_counter() - t0 - elapsed)))
        result: dict[str, Any] = {k: counts[k] - before[k] for k in counts}
        result["seconds"] = time.perf_counter() - t0
        result["last_at"] = {n.id: n.last_at for n in gen if n.last_at}
        result["rid_last"] = {n.id: n.rid for n in gen}
        result["total"] = dict(counts)
        conn.send(result)
    for n in gen:
        n.sock.close()


class Generators:
    """The load generator processes; nodes and offered rate are split evenly among them."""

    def __init__(self, port: int, nodes: list[tuple[str, str, str]], processes: int,
                 asrun_share: float) -> None:
        # Plain child interpreters rather than multiprocessing's spawn, which would re-run the
        # caller's main module; each talks over a socket pair wrapped in a Connection.
        self.conns: list[Connection] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        processes = max(1, min(processes, len(nodes)))
        for k in range(processes):
            ours, theirs = socket.socketpair()
            p = subprocess.Popen(
                [sys.executable, "-c", "import headend.bench.ingest as b; b._generator_child()",
                 str(theirs.fileno())], pass_fds=[theirs.fileno()])
            theirs.close()
            conn = Connection(ours.detach())
            conn.send((port, nodes[k::processes], asrun_share))
            self.conns.append(conn)
            self.procs.append(p)

    def wait_ready(self, timeout: float) -> None:
        for c in self.conns:
            if not c.poll(timeout):
                raise TimeoutError("the load generator did not connect its nodes")
            c.recv()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def run(self, seconds: float, rate: float) -> list[dict[str, Any]]:
        for c in self.conns:
            c.send(("run", seconds, rate / len(self.conns)))
        return [c.recv() for c in self.conns]

    def drain(self, seconds: float) -> dict[str, int]:
        for c in self.conns:
            c.send(("drain", seconds))
        got = [c.recv() for c in self.conns]
        return {k: sum(g[k] for g in got) for k in got[0]}

    def stop(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.send(("stop",))
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def _sum(parts: list[dict[str, Any]], key: str) -> int:
    return sum(int(p[key]) for p in parts)


# --- the reference subscriber ------------------------------------------------------------------


class ReferenceSubscriber(asyncio.Protocol):
    """Takes the headend's node-report topics at QoS 1, counts and PUBACKs; nothing else."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.count = 0
        self.transport: asyncio.Transport | None = None
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        replies = []
        for first, body in split_packets(self.buf):
            kind = first >> 4
            if kind == 3:
                self.count += 1
                if first & 0x06:
                    tlen = struct.unpack_from("!H", body)[0]
                    replies.append(b"\x40\x02" + body[2 + tlen:4 + tlen])
            elif kind == 9 and not self.subscribed.done():
                self.subscribed.set_result(None)
            elif kind == 2 and body[1] != 0:
                raise ConnectionError(f"reference subscriber refused: {body!r}")
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))

    @classmethod
    async def connect(cls, port: int, user: str, password: str) -> ReferenceSubscriber:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(cls, "127.0.0.1", port)
        assert proto.transport is not None
        proto.transport.write(connect_packet("loaxa-bench-reference", user, password))
        proto.transport.write(subscribe_packet(1, [protocol.PREFIX + "+/" + leaf for leaf in
                                                   (protocol.TELEMETRY, protocol.ASRUN)]))
        await asyncio.wait_for(proto.subscribed, 10)
        return proto

    def close(self) -> None:
        if self.transport is not None:
            self.transport.write(b"\xe0\x00")  # DISCONNECT
            self.transport.close()


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    seconds: float = 0.0  # how long the generator offered load
    offered: int = 0
    offered_asrun: int = 0
    delivered: int = 0  # reached the subscriber during the window
    stored: int = 0  # committed during the window (headend only)
    backlog: int = 0  # received but not yet committed at the window's end (headend only)
    undelivered: int = 0  # offered but not yet received at the window's end
    drain_s: float = 0.0  # after the window, until everything offered was stored
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, stored so far)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def offered_rate(self) -> float:
        return self.offered / self.seconds if self.seconds else 0.0

    @property
    def delivered_rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def stored_rate(self) -> float:
        return self.stored / self.seconds if self.seconds else 0.0

    def worst_window(self, width: float = 10.0) -> float:
        """The lowest stored rate over any `width`-second stretch of the window."""
        worst = float("inf")
        for i, (t0, s0) in enumerate(self.samples):
            for t1, s1 in self.samples[i + 1:]:
                if t1 - t0 >= width - 1e-6:
                    worst = min(worst, (s1 - s0) / (t1 - t0))
                    break
        return worst if worst != float("inf") else self.stored_rate


@dataclass
class IngestResult:
    nodes: int
    rate: float
    asrun_share: float
    generators: int
    reference: Phase = field(default_factory=lambda: Phase("reference"))
    headend: Phase = field(default_factory=lambda: Phase("headend"))
    connect_s: float = 0.0
    asrun_rows: int = 0
    asrun_acked: int = 0
    telemetry_ok: int = 0
    telemetry_expected: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        ref = self.reference.delivered_rate
        return self.headend.stored_rate / ref if ref else 0.0

    @property
    def meets_target(self) -> bool:
        return self.headend.stored_rate >= TARGET_RATE

    def report(self) -> str:
        r, h = self.reference, self.headend
        cpu = "  ".join(f"{k} {v:.1f}" for k, v in h.cpu.items())
        rcpu = "  ".join(f"{k} {v:.1f}" for k, v in r.cpu.items())
        verdict = "MET" if self.meets_target else "NOT MET"
        exact = "yes" if not self.problems else "NO: " + "; ".join(self.problems)
        return "\n".join([
            f"loaxa bench ingest: {self.nodes} nodes (one MQTT connection and broker login each,"
            f" real Mosquitto), {self.generators} generator process(es)",
            f"  mix: {100 - self.asrun_share * 100:.0f}% telemetry (QoS 0), "
            f"{self.asrun_share * 100:.0f}% as-run records (QoS 1); offered "
            f"{self.rate:.0f} msg/s for {h.seconds:.0f} s per phase; nodes connected in "
            f"{self.connect_s:.1f} s",
            f"  reference: plain subscriber   offered {r.offered_rate:8.0f}/s  delivered "
            f"{r.delivered_rate:8.0f}/s   ({r.offered} offered, {r.delivered} delivered)",
            f"  headend: stored in SQLite     offered {h.offered_rate:8.0f}/s  delivered "
            f"{h.delivered_rate:8.0f}/s  stored {h.stored_rate:8.0f}/s  "
            f"(worst 10 s: {h.worst_window():.0f}/s)",
            f"  at the window's end: backlog in the headend {h.backlog}, not yet delivered "
            f"{h.undelivered}; " + (f"all stored {h.drain_s:.1f} s later" if h.drain_s <
                                    DRAIN_TIMEOUT_S else "NOT all stored after the drain"),
            f"  CPU s in the window: reference: {rcpu}",
            f"                       headend:   {cpu}",
            f"  stored exactly once: {exact} (as-run rows {self.asrun_rows} of "
            f"{h.offered_asrun} offered, {self.asrun_acked} acked to their nodes; latest "
            f"telemetry right for {self.telemetry_ok} of {self.telemetry_expected} nodes)",
            f"  ratio stored/reference: {self.ratio:.2f}; stored {h.stored_rate:.0f} msg/s "
            f"(target >= {TARGET_RATE}): {verdict}",
        ])


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def _window(phase: Phase, gens: Generators, seconds: float, rate: float,
                  meter: CpuMeter, progress: Callable[[], int]) -> list[dict[str, Any]]:
    """Offer the load for `seconds`; sample `progress` once a second meanwhile."""
    loop = asyncio.get_running_loop()
    meter.start()
    t0 = loop.time()
    job = asyncio.ensure_future(_in_thread(gens.run, seconds, rate))
    phase.samples.append((0.0, progress()))
    while not job.done():
        await asyncio.wait([job], timeout=SAMPLE_S)
        phase.samples.append((loop.time() - t0, progress()))
    parts: list[dict[str, Any]] = job.result()
    phase.cpu = meter.stop()
    phase.seconds = max(p["seconds"] for p in parts)
    phase.offered = _sum(parts, "telemetry") + _sum(parts, "asrun")
    phase.offered_asrun = _sum(parts, "asrun")
    return parts


async def measure(nodes: int = 1000, rate: float = 12_000, seconds: float = 60,
                  asrun_share: float = 0.2, generators: int = 1,
                  root: Path | None = None) -> IngestResult:
    tmp = tempfile.TemporaryDirectory(prefix="loaxa-bench-ingest-") if root is None else None
    base = Path(tmp.name) if tmp else root
    assert base is not None
    home = Home.create(base / "home")
    engine = open_db(home.db_url)
    secrets = provision_commune(engine, home, bench_commune(nodes))
    password = headend_password(home)
    broker = Broker(home.broker_dir, port=find_free_port(), headend_password=password)
    broker.write_config({s.id: s.password for s in secrets})
    result = IngestResult(nodes, rate, asrun_share, generators)
    headend = Gateway(engine, broker.port, password)
    gens: Generators | None = None
    task: asyncio.Task[None] | None = None
    try:
        broker.start()
        assert broker.pid is not None
        t0 = time.perf_counter()
        gens = Generators(broker.node_port, [(s.id, s.password, s.key) for s in secrets],
                          generators, asrun_share)
        await _in_thread(gens.wait_ready, 120)
        result.connect_s = time.perf_counter() - t0
        meter = CpuMeter({"bench process": [os.getpid()], "broker": [broker.pid],
                          "generator": gens.pids()})

        # (a) reference: the same traffic to one plain subscriber.
        ref = await ReferenceSubscriber.connect(broker.port, broker.headend_user, password)
        await asyncio.sleep(1)
        r = result.reference
        await _window(r, gens, seconds, rate, meter, lambda: ref.count)
        r.delivered = ref.count
        r.undelivered = r.offered - ref.count
        await asyncio.sleep(1)
        ref.close()
        r.cpu = {("subscriber" if k == "bench process" else k): v for k, v in r.cpu.items()}
        if ref.count != r.offered:
            result.problems.append(f"reference got {ref.count} of {r.offered}")

        # (b) the headend, from an empty inbox, on the same connections.
        task = asyncio.create_task(headend.run())
        await headend.wait_connected(15)
        await asyncio.sleep(1)
        h = result.headend
        acked_before = (await _in_thread(gens.drain, 0.1))["acked"]
        stored0, received0 = headend.stored, headend.received
        parts = await _window(h, gens, seconds, rate, meter, lambda: headend.stored - stored0)
        h.cpu = {("headend" if k == "bench process" else k): v for k, v in h.cpu.items()}
        h.stored = headend.stored - stored0
        h.delivered = headend.received - received0
        h.backlog = h.delivered - h.stored
        h.undelivered = h.offered - h.delivered
        # Until everything offered is stored (or the drain times out).
        t_end = time.perf_counter()
        while headend.stored - stored0 < h.offered and \
                time.perf_counter() - t_end < DRAIN_TIMEOUT_S:
            await asyncio.sleep(0.05)
        h.drain_s = time.perf_counter() - t_end
        if headend.stored - stored0 < h.offered:
            result.problems.append(f"only {headend.stored - stored0} of {h.offered} stored "
                                   f"{DRAIN_TIMEOUT_S:.0f} s after the window")
        else:
            await headend.flush()
            counts = await _in_thread(gens.drain, 1.0)
            result.asrun_acked = counts["acked"] - acked_before
            await _check(result, engine, parts, headend.stored - stored0)
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if gens is not None:
            await _in_thread(gens.stop)
        broker.stop()
        engine.dispose()
        if tmp:
            tmp.cleanup()
    return result


async def _check(result: IngestResult, engine: Any, parts: list[dict[str, Any]],
                 stored: int) -> None:
    h = result.headend
    last_at: dict[str, int] = {}
    for p in parts:
        last_at.update(p["last_at"])

    def read() -> tuple[int, dict[str, Any]]:
        with engine.connect() as c:
            rows = c.scalar(select(func.count()).select_from(AsRunRecord)) or 0
            tel = dict(c.execute(select(Node.id, Node.telemetry)).all())
        return rows, tel

    result.asrun_rows, tel = await asyncio.to_thread(read)
    for node_id, at in last_at.items():
        doc = tel.get(node_id)
        if doc and json.loads(doc).get("at") == at:
            result.telemetry_ok += 1
    result.telemetry_expected = len(last_at)
    if stored != h.offered:
        result.problems.append(f"{stored} messages stored of {h.offered} offered")
    if result.asrun_rows != h.offered_asrun:
        result.problems.append(f"{result.asrun_rows} as-run rows for {h.offered_asrun} records")
    if result.asrun_acked != h.offered_asrun:
        result.problems.append(f"{result.asrun_acked} as-run acks for {h.offered_asrun} records")
    if result.telemetry_ok != result.telemetry_expected:
        result.problems.append(f"latest telemetry wrong for "
                               f"{result.telemetry_expected - result.telemetry_ok} nodes")


# --- command line ------------------------------------------------------------------------------


def _percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be within 0..100, not {text}")
    return value


def add_parser(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = bench_sub.add_parser(
        "ingest", help="telemetry and as-run records stored per second, sustained")
    ingest.add_argument("--nodes", type=positive_int, default=1000,
                        help="node identities, one MQTT connection each (default 1000)")
    ingest.add_argument("--rate", type=positive_float, default=12_000,
                        help="offered messages per second (default 12000)")
    ingest.add_argument("--seconds", type=positive_float, default=60,
                        help="length of each phase (default 60)")
    ingest.add_argument("--asrun", type=_percent, default=20,
                        help="percent of messages that are as-run records (default 20)")
    ingest.add_argument("--generators", type=positive_int, default=1,
                        help="load generator processes (default 1)")


def run_ingest(args: argparse.Namespace) -> int:
    """Run the benchmark and print its report; 1 when something offered was not stored
    exactly once (the target itself is reported, not turned into an exit code)."""
    result = asyncio.run(measure(args.nodes, args.rate, args.seconds, args.asrun / 100,
                                 args.generators))
    print(result.report(), flush=True)
    return 1 if result.problems else 0

"""`loaxa demo`: a whole commune on one machine.

Mosquitto (configured by LoaXa), the headend with SQLite in the state directory, a simulated
commune whose nodes run the real firmware under MicroPython, the web page, and a test
announcement to every node shortly after start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import signal
import socket
import time
from pathlib import Path

from sqlalchemy import Engine

from firmware.plan import in_quiet
from headend.core import auth
from headend.core.home import Home
from headend.core.paths import example_commune
from headend.media.store import TEST_TONE, write_test_tone
from headend.nodes.gateway import Gateway
from headend.planning.publishing import quiet_window
from headend.planning.schedule import QUIET_FLOOR_ENV, hhmm, load_schedule
from headend.planning.schedule import in_quiet as slot_in_quiet
from headend.runtime.serve import Runtime
from hwsim.fleet import Fleet, SimNode, quiet_away_from_now
from hwsim.stations import Stations, tone_pattern

log = logging.getLogger("loaxa.demo")
DEFAULT_COMMUNE = example_commune()
ANNOUNCE_AFTER_S = 3.0


class DemoError(Exception):
    pass


def check_port_free(port: int) -> None:
    """Fail early when something listens on the port. SO_REUSEADDR as uvicorn uses it, so the
    TIME_WAIT connections a stopped server leaves behind do not count as "in use"."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(
                f"port {port} on 127.0.0.1 is already in use (another `loaxa demo` or "
                "`loaxa web`?); choose another with --port"
            ) from None


DEMO_LOGIN = "demo-login.txt"
DEMO_USERS = (("admin", "admin", "Quản trị tỉnh"), ("canbo", "officer", "Cán bộ văn hóa xã"),
              ("truongban", "approver", "Trưởng ban biên tập"),
              ("kythuat", "technician", "Kỹ thuật viên"))


def demo_users(engine: Engine, home: Home, commune_id: str) -> str:
    """One user of each role for the demo, sharing a password kept in the state directory
    (made once, readable by its owner only)."""
    path = home.root / DEMO_LOGIN
    password = path.read_text().split()[-1] if path.exists() else secrets.token_urlsafe(9)
    known = {u.username for u in auth.list_users(engine)}
    now = time.time_ns() // 1_000_000
    for username, role, name in DEMO_USERS:
        if username not in known:
            auth.add_user(engine, username, password, role, [commune_id], now, name)
    if not path.exists():  # written once the users exist: whoever reads it can log in
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(f"password {password}\n")
        tmp.replace(path)
    return password


async def run_demo(home: Home, commune_file: Path, duration: float | None, port: int) -> None:
    check_port_free(port)
    stations = Stations().start()
    # The schedule's relay sources are internet streams; the demo relays local stand-ins.
    source_urls: dict[str, tuple[str, str | None]] = {}
    runtime: Runtime | None = None
    fleet: Fleet | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        runtime = Runtime(home, _playable_now(home, commune_file), port)
        for i, source in enumerate(sorted(runtime.schedule.sources)):
            for role in ("primary", "backup"):
                stations.add(f"{source}-{role}", tone_pattern(440 + 110 * i))
            source_urls[source] = (stations.url(f"{source}-primary"),
                                   stations.url(f"{source}-backup"))
        runtime.source_urls = source_urls
        write_test_tone(home.media_dir)
        secrets = runtime.secrets
        fleet = Fleet(root=home.sim_dir, broker_port=runtime.broker.node_port,
                      media_hosts=[runtime.media_host, stations.host], telemetry_s=10,
                      nodes=[SimNode(s.id, s.key, s.password, s.village) for s in secrets])
        await runtime.start()
        await asyncio.to_thread(fleet.start)
        spec = runtime.schedule.commune
        password = await asyncio.to_thread(demo_users, runtime.engine, home, spec.id)
        print(f"LoaXa demo: {len(secrets)} nodes of {spec.name}; open http://127.0.0.1:{port}",
              flush=True)
        print(f"LoaXa demo: log in as canbo (officer), truongban (approver), kythuat "
              f"(technician) or admin, password {password} (also in {home.root / DEMO_LOGIN})",
              flush=True)
        announce = asyncio.create_task(
            _announce(runtime.headend, [s.id for s in secrets], port,
                      home.media_dir / TEST_TONE))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
        announce.cancel()
    finally:
        print("LoaXa demo: stopping", flush=True)
        if fleet is not None:
            await asyncio.to_thread(fleet.stop)
        if runtime is not None:
            await runtime.stop()
        stations.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _playable_now(home: Home, commune_file: Path) -> Path:
    """The commune file the demo runs. Inside its quiet hours nothing would play, so the demo
    then runs a copy in its state directory with the quiet hours moved 12 hours away."""
    schedule = load_schedule(commune_file)
    now = time.time_ns() // 1_000_000
    quiet = quiet_window(schedule, now)
    if not in_quiet(quiet, now):
        return commune_file
    start, end, _ = quiet_away_from_now(quiet[2])
    # The first hour-long window no slot falls in (the rule load_schedule checks)
    windows = (((start + shift) % 1440, (end + shift) % 1440) for shift in range(0, 660, 60))
    fit = next(((a, b) for a, b in windows if not any(
        slot_in_quiet(s.start, s.end, a, b) and not s.quiet_ok for s in schedule.slots)), None)
    if fit is None:
        return commune_file  # nothing fits: the demo runs in quiet hours and plays nothing
    a, b = fit
    # This process only: the province's night-time floor would refuse an hour-long window.
    os.environ[QUIET_FLOOR_ENV] = "off"
    text = commune_file.read_text(encoding="utf-8")
    text = re.sub(r'(?ms)^\[quiet_hours\]\n.*?(?=^\[|\Z)', "", text).rstrip()
    copy = home.root / "demo-commune.toml"
    copy.write_text(text + f'\n\n[quiet_hours]\nstart = "{hhmm(a)}"\nend = "{hhmm(b)}"\n',
                    encoding="utf-8")
    print(f"LoaXa demo: đang là giờ nghỉ ({hhmm(schedule.quiet_start)}–"
          f"{hhmm(schedule.quiet_end)}); bản demo dời giờ nghỉ sang {hhmm(a)}–{hhmm(b)} "
          f"để loa phát được ngay ({copy})", flush=True)
    return copy


async def _announce(headend: Gateway, node_ids: list[str], port: int, tone: Path) -> None:
    await asyncio.sleep(ANNOUNCE_AFTER_S)
    url = f"http://127.0.0.1:{port}/media/{TEST_TONE}"
    data = tone.read_bytes()  # the node plays only these bytes (their SHA-256)
    args = {"url": url, "sha": hashlib.sha256(data).hexdigest(), "size": len(data),
            "title": "Thông báo thử nghiệm"}
    cmds = await headend.send(node_ids, "play", args,
                              operator="loaxa demo", title="Thông báo thử nghiệm")
    print(f"LoaXa demo: test announcement sent to {len(cmds)} nodes", flush=True)

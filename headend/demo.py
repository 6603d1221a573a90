"""`loaxa demo`: a whole commune on one machine.

Mosquitto (configured by LoaXa), the headend with SQLite in the state directory, a simulated
commune whose nodes run the real firmware under MicroPython, the web page, and a test
announcement to every node shortly after start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from pathlib import Path

import uvicorn
from sqlalchemy import update
from sqlalchemy.orm import Session

from headend.broker import Broker, find_free_port
from headend.commune import load_commune
from headend.db import open_db
from headend.home import Home
from headend.media import TEST_TONE, write_test_tone
from headend.models import Node
from headend.registry import all_node_secrets, headend_password, provision_commune
from headend.service import Headend
from hwsim.fleet import Fleet, SimNode

log = logging.getLogger("loaxa.demo")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_COMMUNE = REPO / "schedules" / "tan-lang.toml"
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


async def run_demo(home: Home, commune_file: Path, duration: float | None, port: int) -> None:
    check_port_free(port)
    engine = open_db(home.db_url)
    spec = load_commune(commune_file)
    provision_commune(engine, home, spec)
    secrets = [s for s in all_node_secrets(engine, home) if s.id in set(spec.node_ids)]
    write_test_tone(home.media_dir)

    password = headend_password(home)
    broker = Broker(home.broker_dir, port=find_free_port(), headend_password=password)
    broker.write_config({s.id: s.password for s in secrets})
    fleet = Fleet(root=home.sim_dir, broker_port=broker.port,
                  media_hosts=[f"127.0.0.1:{port}"], telemetry_s=10,
                  nodes=[SimNode(s.id, s.key, s.password, s.village) for s in secrets])
    headend = Headend(engine, broker.port, password)
    from headend.web import make_app  # imported late: FastAPI start-up is the slow part

    server = uvicorn.Server(uvicorn.Config(make_app(engine, home.media_dir), host="127.0.0.1",
                                           port=port, log_level="warning"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    try:
        broker.start()
        await asyncio.to_thread(fleet.start)
        tasks.append(asyncio.create_task(headend.run()))
        tasks.append(asyncio.create_task(server.serve()))
        await headend.wait_connected(15)
        print(f"LoaXa demo: {len(secrets)} nodes of {spec.name}; open http://127.0.0.1:{port}",
              flush=True)
        tasks.append(asyncio.create_task(_announce(headend, [s.id for s in secrets], port)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    finally:
        print("LoaXa demo: stopping", flush=True)
        server.should_exit = True
        await asyncio.to_thread(fleet.stop)
        if len(tasks) > 1:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(tasks[1]), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(headend.flush(), 5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        broker.stop()
        # Nobody watches the nodes any more: do not leave them shown as online.
        with Session(engine) as s, s.begin():
            s.execute(update(Node).values(online=False, playing=None))
        engine.dispose()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _announce(headend: Headend, node_ids: list[str], port: int) -> None:
    await asyncio.sleep(ANNOUNCE_AFTER_S)
    url = f"http://127.0.0.1:{port}/media/{TEST_TONE}"
    cmds = await headend.send(node_ids, "play", {"url": url, "title": "Thông báo thử nghiệm"},
                              operator="loaxa demo", title="Thông báo thử nghiệm")
    print(f"LoaXa demo: test announcement sent to {len(cmds)} nodes", flush=True)

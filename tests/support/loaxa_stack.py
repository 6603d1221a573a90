"""A whole LoaXa installation for end-to-end tests: real Mosquitto configured by LoaXa, the
headend (its asyncio service in a background thread), the web/media server, and simulated
nodes running the real firmware under real MicroPython."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hal.sim import SimClock
from headend.communes.files import CommuneSpec, VillageSpec
from headend.communes.registry import NodeSecrets, headend_password, provision_commune
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import AsRunRecord, Command, Node
from headend.core.tls import ensure as ensure_tls
from headend.media.library import MediaLibrary
from headend.media.store import write_test_tone
from headend.nodes.broker import Broker, find_free_port
from headend.nodes.gateway import Gateway, SentCommand
from headend.nodes.health import HealthPolicy
from headend.planning.publishing import PlanPublisher, SourceWatch
from headend.web.app import make_app
from hwsim.fleet import Fleet, SimNode, quiet_away_from_now

T = TypeVar("T")


def small_commune(n: int, commune_id: str = "test-xa") -> CommuneSpec:
    villages = tuple(
        VillageSpec(f"v{i}", f"Thôn {i}", (f"n{i:04d}",)) for i in range(1, n + 1)
    )
    return CommuneSpec(commune_id, "Xã Thử", "Lạng Sơn", "Asia/Ho_Chi_Minh", villages)


def wait_until(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class Stack:
    def __init__(self, root: Path, nodes: int = 5, session: dict[str, Any] | None = None,
                 per_process: int = 250, commune: CommuneSpec | None = None,
                 clock: SimClock | None = None, media_hosts: Sequence[str] = (),
                 fleet_options: dict[str, Any] | None = None, tls: bool = False) -> None:
        self.home = Home.create(root / "home")
        # With tls, nodes reach the broker and the media server as over 4G: TLS, checked
        # against the installation's CA (headend/core/tls.py) that each node pins.
        self.tls = ensure_tls(self.home, ["127.0.0.1", "localhost"]) if tls else None
        self.engine: Engine = open_db(self.home.db_url)
        # A controlled clock shared by the headend and every node (hal.sim.SimClock).
        self.clock = clock or SimClock()
        # On the real clock, the nodes' quiet hours until a plan: never the hour of the test
        # (a stack plays what it is told whatever the hour CI runs it; the rule itself is
        # tested on controlled clocks)
        self.node_quiet = None if clock else quiet_away_from_now()
        self.secrets: list[NodeSecrets] = provision_commune(
            self.engine, self.home, commune or small_commune(nodes))
        self.node_ids = [s.id for s in self.secrets]
        self.tone = write_test_tone(self.home.media_dir)
        self.password = headend_password(self.home)
        self.broker = Broker(self.home.broker_dir, port=find_free_port(),
                             headend_password=self.password, tls=self.tls)
        self.broker.write_config({s.id: s.password for s in self.secrets})
        self.web_port = find_free_port()
        self.media_host = f"127.0.0.1:{self.web_port}"
        self.media_base = f"{'https' if tls else 'http'}://{self.media_host}"
        options = dict(fleet_options or {})
        if self.node_quiet:
            options["extra"] = {"quiet": self.node_quiet, **options.get("extra", {})}
        self.fleet = Fleet(
            root=self.home.sim_dir, broker_port=self.broker.node_port,
            media_hosts=[self.media_base if tls else self.media_host, *media_hosts],
            broker_ca=self.tls.ca_der() if self.tls else None,
            keepalive=10, per_process=per_process,
            nodes=[SimNode(s.id, s.key, s.password, s.village) for s in self.secrets],
            # Small backoff so reconnect tests run in seconds, still jittered.
            session=session if session is not None else {
                "backoff_min_ms": 200, "backoff_max_ms": 2000, "initial_jitter_ms": 300},
            clock=None if clock is None else clock.config(),
            **options,
        )
        self.loop = asyncio.new_event_loop()
        self.headend = self._new_headend()
        self.publisher: PlanPublisher | None = None
        self._planning: asyncio.Future[None] | None = None
        self._watch: asyncio.Future[None] | None = None
        self._loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._headend_task: asyncio.Future[None] | None = None
        self.web = uvicorn.Server(uvicorn.Config(
            make_app(self.engine, self.home.media_dir, secure_cookies=tls), host="127.0.0.1",
            port=self.web_port, log_level="warning",
            ssl_certfile=str(self.tls.cert) if self.tls else None,
            ssl_keyfile=str(self.tls.key) if self.tls else None))
        self._web_thread = threading.Thread(target=self.web.run, daemon=True)

    def start(self) -> Stack:
        self.broker.start()
        self._web_thread.start()
        self._loop_thread.start()
        self._headend_task = asyncio.run_coroutine_threadsafe(self.headend.run(), self.loop)
        self.run(self.headend.wait_connected(15))
        wait_until(lambda: self.web.started, 10, "web server")
        self.fleet.start()
        self.fleet.wait_connected(30)
        wait_until(lambda: self.online_count() == len(self.node_ids), 15, "births stored")
        return self

    def _new_headend(self) -> Gateway:
        headend = Gateway(self.engine, self.broker.port, self.password, clock=self.clock.time_ms)
        if self.clock.rate != 1:
            # Delivery takes real milliseconds, which a fast clock turns into simulated
            # seconds: allow for half a real second of it before calling a clock wrong.
            headend.health = HealthPolicy(clock_offset_ms=2000 + int(500 * self.clock.rate))
        return headend

    def start_planning(self, schedule: Path, source_urls: dict[str, tuple[str, str | None]],
                       fallback: bytes | None = None, watch: bool = False) -> PlanPublisher:
        """Publish every node's plan now and keep them current (on the headend's loop);
        with watch, also probe relay sources before their slots."""
        library = MediaLibrary(self.home.media_dir, self.media_base)
        self.publisher = PlanPublisher(
            self.engine, schedule, library, self.headend.publish_plan, self.clock.time_ms,
            self.clock.sleep_ms, library.add_bytes(fallback) if fallback else None,
            source_urls)
        self.publisher.load()
        self._planning = asyncio.run_coroutine_threadsafe(self.publisher.run(), self.loop)
        if watch:
            w = SourceWatch(self.engine, self.publisher, self.clock.time_ms, self.clock.sleep_ms)
            self._watch = asyncio.run_coroutine_threadsafe(w.run(), self.loop)
        return self.publisher

    def stop_headend(self) -> None:
        """The headend process dies: its MQTT service and plan publisher stop."""
        for fut in (self._headend_task, self._planning):
            if fut is not None:
                self.loop.call_soon_threadsafe(fut.cancel)
        self.run(self.headend.flush())

    def restart_headend(self) -> None:
        self.headend = self._new_headend()
        self._headend_task = asyncio.run_coroutine_threadsafe(self.headend.run(), self.loop)
        self.run(self.headend.wait_connected(15))
        if self.publisher is not None:
            self.publisher.publish = self.headend.publish_plan
            self._planning = asyncio.run_coroutine_threadsafe(self.publisher.run(), self.loop)

    def online_count(self) -> int:
        with Session(self.engine) as s:
            return len(s.scalars(select(Node.id).where(Node.online)).all())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the headend's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def media_url(self, name: str | None = None) -> str:
        return f"{self.media_base}/media/{name or self.tone.name}"

    def play(self, node_ids: list[str] | None = None, title: str = "Bản tin thử",
             name: str | None = None) -> list[str]:
        cmds = self.run(self.headend.send(node_ids or self.node_ids, "play",
                                          {"url": self.media_url(name), "title": title},
                                          operator="test", title=title))
        return [c.id for c in cmds]

    async def run_async_prepare(self, op: str, args: dict[str, Any],
                                node: str = "n0004") -> list[SentCommand]:
        """Prepare one signed command (call on the headend's loop)."""
        return await asyncio.to_thread(self.headend.prepare, [node], op, args)

    def asrun(self) -> list[AsRunRecord]:
        with Session(self.engine) as s:
            return list(s.scalars(select(AsRunRecord).order_by(AsRunRecord.node_id,
                                                               AsRunRecord.rid)))

    def command(self, cmd_id: str) -> Command:
        with Session(self.engine) as s:
            cmd = s.get(Command, cmd_id)
            assert cmd is not None
            return cmd

    def stop(self) -> None:
        self.fleet.stop()
        for fut in (self._headend_task, self._planning, self._watch):
            if fut is not None:
                self.loop.call_soon_threadsafe(fut.cancel)
        self.web.should_exit = True
        self._web_thread.join(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(10)
        self.broker.stop()
        self.engine.dispose()

"""A running headend: what `loaxa serve` starts and `loaxa demo` builds on.

Mosquitto configured by LoaXa, the MQTT service that signs commands and stores reports, the web
and media server, the plan publisher that keeps every node's plan current, and the relay source
watch. It writes running.json in the state directory so `loaxa broadcast` can reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from headend.communes.registry import NodeSecrets, headend_password, provision_commune
from headend.core import tls
from headend.core.db import open_db
from headend.core.home import Home
from headend.core.models import Node
from headend.core.tls import TlsError, TlsFiles
from headend.media.library import Media, MediaLibrary
from headend.media.store import StoredMedia, wav_for_nodes, write_test_tone
from headend.media.tts import TtsError, default_engine
from headend.nodes import health
from headend.nodes.broker import LOOPBACK, Broker, find_free_port
from headend.nodes.emergency import TTL_MS, find_target, send
from headend.nodes.gateway import Gateway, wall_clock_ms
from headend.planning.publishing import PlanPublisher, SourceWatch, real_sleep
from headend.planning.schedule import Schedule, load_schedule

log = logging.getLogger("loaxa.runtime")

FALLBACK_TEXT = ("Xin lỗi bà con, chương trình tiếp sóng đang tạm thời gián đoạn. "
                 "Mời bà con đón nghe lại sau ít phút.")


def fallback_announcement(library: MediaLibrary) -> Media:
    """What a node plays when neither relay stream can be reached: spoken (TTS) if the
    engine is installed, else a short tone so the village still hears that something is wrong."""
    try:
        try:
            return library.add_bytes(wav_for_nodes(default_engine().synthesize(FALLBACK_TEXT)))
        except TtsError as e:
            log.warning("fallback announcement as a tone: %s", e)
    except ImportError:
        pass
    path = write_test_tone(library.media_dir, "fallback-tone.wav", freq=660, seconds=2.0)
    return library.add_bytes(path.read_bytes())


@dataclass
class Runtime:
    home: Home
    schedule_path: Path
    web_port: int
    clock: Callable[[], int] = wall_clock_ms
    sleep_ms: Callable[[int], Awaitable[Any]] = real_sleep
    source_urls: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    fallback: Media | None = None
    watch_sources: bool = True
    # Where nodes and officers reach the headend. Off loopback everything is TLS with the
    # certificate for `names` (headend/core/tls.py): MQTT on node_port, the web and media on
    # web_port. With names on loopback, TLS too (how the tests run it).
    listen: str = "127.0.0.1"
    names: Sequence[str] = ()
    node_port: int | None = None
    engine: Engine = field(init=False)
    schedule: Schedule = field(init=False)
    secrets: list[NodeSecrets] = field(init=False)
    broker: Broker = field(init=False)
    tls: TlsFiles | None = field(init=False)
    headend: Gateway = field(init=False)
    library: MediaLibrary = field(init=False)
    publisher: PlanPublisher = field(init=False)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _waiting: set[asyncio.Task[Any]] = field(default_factory=set)  # emergencies being answered
    _server: uvicorn.Server | None = None

    def __post_init__(self) -> None:
        self.schedule = load_schedule(self.schedule_path)
        self.engine = open_db(self.home.db_url)
        self.secrets = provision_commune(self.engine, self.home, self.schedule.commune)
        self._remember_schedule()
        self.library = MediaLibrary(self.home.media_dir, self.media_base)
        password = headend_password(self.home)
        if self.listen not in LOOPBACK and not self.names:
            raise TlsError(f"trên {self.listen} mọi kết nối phải mã hoá: hãy cho --name "
                           "(the name nodes and officers dial, for its TLS certificate)")
        self.tls = tls.ensure(self.home, self.names) if self.names else None
        self.broker = Broker(self.home.broker_dir, port=find_free_port(),
                             headend_password=password, node_port=self.node_port,
                             node_host=self.listen, tls=self.tls)
        self.broker.write_config({s.id: s.password for s in self.secrets})
        self.headend = Gateway(self.engine, self.broker.port, password, clock=self.clock)

    def _remember_schedule(self) -> None:
        path = self.home.communes_path
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        known[self.schedule.commune.id] = str(self.schedule_path.resolve())
        path.write_text(json.dumps(known, indent=1))

    @property
    def host(self) -> str:
        """The name nodes dial (the certificate's first name), else loopback."""
        return self.names[0] if self.names else "127.0.0.1"

    @property
    def media_host(self) -> str:
        return f"{self.host}:{self.web_port}"

    @property
    def media_base(self) -> str:
        return f"{'https' if self.names else 'http'}://{self.media_host}"

    async def start(self) -> None:
        from headend.web.app import make_app  # FastAPI start-up is the slow part
        from headend.web.context import proxy_options

        for where in self.home.loose_permissions():
            log.warning("người khác trên máy đọc được tệp chứa khoá bí mật: %s; hãy chạy "
                        "chmod 700 cho thư mục, chmod 600 cho tệp (secrets readable by "
                        "others)", where)
        self.broker.start()
        self._tasks.append(asyncio.create_task(self.headend.run()))
        loop = asyncio.get_running_loop()

        def replan() -> None:
            loop.call_soon_threadsafe(self._replan)

        self._server = uvicorn.Server(uvicorn.Config(
            make_app(self.engine, self.home.media_dir, self.clock,
                     schedule_paths={self.schedule.commune.id: self.schedule_path},
                     emergency=self.send_emergency,
                     on_schedule_change=replan, secure_cookies=self.tls is not None),
            host=self.listen, port=self.web_port, log_level="warning",
            ssl_certfile=str(self.tls.cert) if self.tls else None,
            ssl_keyfile=str(self.tls.key) if self.tls else None, **proxy_options()))
        self._tasks.append(asyncio.create_task(self._server.serve()))
        await self.headend.wait_connected(15)
        if self.fallback is None:
            self.fallback = await asyncio.to_thread(fallback_announcement, self.library)
        self.publisher = PlanPublisher(
            self.engine, self.schedule_path, self.library, self.headend.publish_plan,
            self.clock, self.sleep_ms, self.fallback, self.source_urls, self.schedule)
        self._tasks.append(asyncio.create_task(self.publisher.run()))
        if self.watch_sources:
            watch = SourceWatch(self.engine, self.publisher, self.clock, self.sleep_ms)
            self._tasks.append(asyncio.create_task(watch.run()))
        self._tasks.append(asyncio.create_task(health.watch(
            self.engine, self.clock, self.sleep_ms, self.headend.health)))
        self.home.running_path.write_text(json.dumps({
            "pid": os.getpid(), "broker_port": self.broker.port,
            "node_port": self.broker.node_port, "host": self.host, "tls": self.tls is not None,
            "web_port": self.web_port, "media_base": self.media_base}))

    def _replan(self) -> None:
        if hasattr(self, "publisher"):
            self.publisher.wake()

    async def send_emergency(self, commune_id: str, villages: list[str], media: StoredMedia,
                             title: str, text: str | None, sent_by: str, sent_from: str,
                             key: str | None = None) -> int:
        """The web app's emergency button: to every node of the villages (all when empty),
        once per key. Returns the broadcast's id at once (AlreadySent: the key's earlier
        one); the nodes' answers are counted in the background for the status page."""
        target = await asyncio.to_thread(find_target, self.engine, commune_id, villages or None)
        wire = Media(f"{self.media_base}/media/{media.name}", media.sha256, media.size)
        sent = await send(self.headend, self.engine, target, wire, title, sent_by, sent_from,
                          text, key)
        task = asyncio.create_task(sent.wait(TTL_MS / 1000))
        self._waiting.add(task)  # referenced until done, or the loop may drop it
        task.add_done_callback(self._waiting.discard)
        return sent.broadcast_id

    async def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.home.running_path.unlink()
        if self._server is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._tasks[1]), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.headend.flush(), 5)
        for t in [*self._tasks, *self._waiting]:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.broker.stop()
        # Nobody watches the nodes any more: do not leave them shown as online.
        with Session(self.engine) as s, s.begin():
            s.execute(update(Node).values(online=False, playing=None))
        self.engine.dispose()


async def serve(home: Home, schedule_path: Path, port: int, listen: str = "127.0.0.1",
                names: Sequence[str] = (), node_port: int | None = None) -> None:
    """`loaxa serve`: run until Ctrl-C or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime = Runtime(home, schedule_path, port, listen=listen, names=names,
                      node_port=node_port)
    try:
        await runtime.start()
        web = f"{'https' if names else 'http'}://{runtime.host}:{port}"
        print(f"LoaXa: {len(runtime.secrets)} nodes of {runtime.schedule.commune.name}; "
              f"nodes' MQTT on {listen}:{runtime.broker.node_port}"
              f"{' (TLS)' if names else ''}, web page on {web}", flush=True)
        await stop.wait()
    finally:
        print("LoaXa: stopping", flush=True)
        await runtime.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

"""The headend's MQTT side: signs and publishes commands, and stores what nodes report
(acks, availability, telemetry, as-run records) in the database.

Incoming messages are applied in batches by one writer, in a worker thread, so 2,000 acks
arriving together cost a few transactions rather than 2,000. As-run records are acknowledged
to the node only after the transaction that stored them has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from firmware import protocol
from headend.core.models import Command, Node
from headend.diary.reasons import OFFLINE_WHEN_SENT
from headend.media.access import node_args
from headend.nodes.admission import RAW
from headend.nodes.health import DEFAULT_POLICY
from headend.nodes.ingest import Answers, Report, receive_reports

log = logging.getLogger("loaxa.headend")
# aiomqtt warns on every publish beyond ten in flight; a fan-out to 2,000 nodes is normal here.
_mqtt_log = logging.getLogger("loaxa.headend.mqtt")
_mqtt_log.setLevel(logging.ERROR)

Clock = Callable[[], int]


BATCH_QUIET_S = 0.05  # a burst of reports is stored once it pauses this long,
BATCH_MAX_WAIT_S = 2.0  # or after this long,
BATCH_MAX = 10000  # or at this size
PUBLISH_WINDOW = 100  # QoS 1 publishes awaiting their PUBACK at once


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class HeadendOffline(Exception):
    """The headend is not connected to the broker, so it cannot send commands."""


@dataclass
class SentCommand:
    id: str
    node_id: str
    seq: int
    payload: bytes


@dataclass
class _Waiters:
    """Futures waiting for command acks (used by `loaxa bench` and the tests)."""

    by_cmd: dict[str, list[tuple[frozenset[str], asyncio.Future[dict[str, Any]]]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, cmd_id: str, statuses: Iterable[str]) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.by_cmd[cmd_id].append((frozenset(statuses), fut))
        return fut

    def drop(self, cmd_ids: Iterable[str]) -> None:
        """Stop waiting for these commands (they expired unanswered, or never went out)."""
        for cmd_id in cmd_ids:
            for _, fut in self.by_cmd.pop(cmd_id, ()):
                fut.cancel()

    def notify(self, msg: dict[str, Any]) -> None:
        cmd_id = msg.get("id")
        if not isinstance(cmd_id, str):
            return
        entries = self.by_cmd.get(cmd_id)
        if not entries:
            return
        keep = []
        for statuses, fut in entries:
            if msg.get("status") in statuses and not fut.done():
                fut.set_result(msg)
            elif not fut.done():
                keep.append((statuses, fut))
        if keep:
            self.by_cmd[cmd_id] = keep
        else:
            del self.by_cmd[cmd_id]


class Gateway:
    """The headend's one MQTT client: signs and publishes commands and plans, batches what
    nodes report into the database (nodes/ingest.py) and wakes whoever awaits an ack."""

    def __init__(
        self,
        engine: Engine,
        broker_port: int,
        password: str,
        broker_host: str = "127.0.0.1",
        user: str = "headend",
        clock: Clock = wall_clock_ms,
        client_id: str = "loaxa-headend",
        persistent: bool = True,
    ) -> None:
        self.engine = engine
        self.broker = (broker_host, broker_port)
        self.user, self.password = user, password
        self.clock = clock
        self.client_id = client_id
        # The service keeps a persistent session (the broker queues reports while it is
        # down); a one-off tool such as `loaxa broadcast` connects with a clean one.
        self.persistent = persistent
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.waiters = _Waiters()
        self.echo_waiters: dict[str, asyncio.Future[float]] = {}
        self._inbox: asyncio.Queue[Report] = asyncio.Queue()
        self._signers: dict[str, protocol.Signer] = {}
        self._report_signers: dict[str, protocol.Signer] = {}  # by hex key (the writer's)
        self._storing = 0  # messages taken from the inbox and not yet committed
        # Counters for `loaxa bench ingest`: messages received from the broker, and messages
        # done with (committed, or dropped as unstorable) by the writer.
        self.received = 0
        self.stored = 0
        self._acking: asyncio.Task[None] | None = None  # as-run acks of the last batch stored
        self._window = asyncio.Semaphore(PUBLISH_WINDOW)
        self.health = DEFAULT_POLICY  # alarm thresholds (a fast simulated clock widens them)
        # Recent rejections reported by nodes, newest last (also logged; counted in telemetry).
        self.rejections: deque[dict[str, Any]] = deque(maxlen=1000)

    # --- connection ------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected to the broker until cancelled; reconnect after any outage."""
        writer = asyncio.create_task(self._writer())
        delay = 0.2
        try:
            while True:
                try:
                    await self._session()
                except aiomqtt.MqttError as e:
                    log.warning("broker connection lost: %s", e)
                if self.connected.is_set():
                    delay = 0.2  # it was up: start the backoff afresh
                self.client = None
                self.connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        finally:
            writer.cancel()
            if self._acking is not None:
                self._acking.cancel()

    async def _session(self) -> None:
        headend = self

        class Handoff(asyncio.Queue[aiomqtt.Message]):
            """aiomqtt's queue of incoming messages, replaced: each message is handled as soon
            as paho has read it, instead of costing an asyncio task and three turns of the
            event loop in `client.messages` (at 10,000 messages/s the loop fell behind the
            socket; measured with `loaxa bench ingest`)."""

            def put_nowait(self, item: aiomqtt.Message) -> None:
                headend._on_message(str(item.topic), item.payload, bool(item.retain))

        async with aiomqtt.Client(
            self.broker[0], self.broker[1], username=self.user, password=self.password,
            identifier=self.client_id, clean_session=not self.persistent, keepalive=20,
            logger=_mqtt_log,
            max_inflight_messages=1000, max_queued_outgoing_messages=0, queue_type=Handoff,
        ) as client:
            # A persistent session: while the headend is down the broker keeps QoS 1 messages.
            # A one-off tool only follows acks; the service stores everything.
            leaves = (protocol.ACK, protocol.STATE, protocol.TELEMETRY, protocol.ASRUN,
                      protocol.ECHO_REPLY) if self.persistent else (protocol.ACK,)
            for leaf in leaves:
                await client.subscribe(protocol.PREFIX + "+/" + leaf, qos=1)
            self.client = client
            self.connected.set()
            # What exists now lives as long as the service (models, signers, the app): keep
            # it out of the cyclic collector's way, so a burst of 2,000 acks is not slowed by
            # rescans of it (measured in `loaxa bench fanout`).
            gc.freeze()
            log.info("connected to broker %s:%d", *self.broker)
            # Messages are handled by Handoff; this only waits for the connection to end.
            async for _ in client.messages:
                pass

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    def _on_message(self, topic: str, payload: Any, retained: bool = False) -> None:
        self.received += 1
        try:
            self._receive(topic, payload, retained)
        except Exception:
            # Whatever a node sends, the headend stays up for the others.
            log.exception("could not handle a message on %s", topic)

    def _receive(self, topic: str, payload: Any, retained: bool = False) -> None:
        parts = protocol.split_topic(topic)
        if parts is None or not isinstance(payload, bytes | bytearray):
            return
        node_id, leaf = parts
        # A node's messages are small (a full report stays under MAX_PAYLOAD, the broker's
        # max_packet_size bounds the rest), and only its availability is retained: anything
        # else retained would come back to the headend on every reconnect.
        if len(payload) > protocol.MAX_PAYLOAD or (retained and leaf != protocol.STATE):
            log.warning("node %s: %s on %s refused (%d bytes)", node_id,
                        "retained message" if retained else "oversized message", leaf,
                        len(payload))
            return
        if leaf == protocol.ECHO_REPLY:
            fut = self.echo_waiters.pop(node_id, None)
            if fut and not fut.done():
                fut.set_result(time.perf_counter())
            return
        msg = protocol.decode(payload)
        if msg is None:
            log.warning("undecodable message on %s", topic)
            return
        if msg.get("node") not in (None, node_id):
            # The broker ACL makes this impossible; refuse it anyway.
            log.warning("node %s sent a message naming %s", node_id, msg.get("node"))
            return
        if leaf in (protocol.ACK, protocol.ASRUN):
            msg[RAW] = bytes(payload)  # signed: checked over these bytes (nodes/admission.py)
        if leaf == protocol.ACK:
            # Only a command this gateway sent has a waiter, and then its signer is known;
            # an ack that does not verify wakes nobody. (The writer checks every ack against
            # the key in the database, and keeps and logs the rejections among them.)
            signer = self._signers.get(node_id)
            if signer is not None and protocol.report_signed(signer, bytes(payload), msg):
                self.waiters.notify(msg)
        if leaf == protocol.TELEMETRY:
            msg["_rx"] = self.clock()  # for the node's clock offset (headend/nodes/health.py)
        if self.persistent:
            self._inbox.put_nowait((node_id, leaf, msg))

    # --- storing what nodes report ----------------------------------------------------------

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._inbox.get()]
            # Gather a burst (2,000 acks arrive within a second) and store it once it pauses,
            # so the database work does not compete with receiving the rest of it.
            started = loop.time()
            while len(batch) < BATCH_MAX:
                while not self._inbox.empty() and len(batch) < BATCH_MAX:
                    batch.append(self._inbox.get_nowait())
                if loop.time() - started >= BATCH_MAX_WAIT_S:
                    break
                await asyncio.sleep(BATCH_QUIET_S)
                if self._inbox.empty():
                    break
            self._storing = len(batch)
            try:
                acks = await asyncio.to_thread(self._store, batch)
            except OperationalError:
                # The database is unavailable (locked, disk full, I/O): keep everything, retry.
                log.exception("could not store %d messages; retrying", len(batch))
                for item in batch:
                    self._inbox.put_nowait(item)
                await asyncio.sleep(1)
                continue
            finally:
                self._storing = 0
            self.stored += len(batch)
            for msg in acks.rejections:
                self.rejections.append(msg)
                log.warning("node %s rejected command %s: %s %s", msg.get("node"),
                            msg.get("id"), msg.get("reason"), msg.get("detail", ""))
            # Acknowledged only now that the records are committed. The acks of one batch go
            # out while the next batch is gathered and stored (under sustained load, waiting
            # for them held up storing; `loaxa bench ingest`); at most one batch's acks at once.
            if self._acking is not None:
                await self._acking
            self._acking = asyncio.create_task(self._send_acks(acks))

    async def _send_acks(self, answers: Answers) -> None:
        # A lost ack only means the node sends the record again; the writer carries on.
        nodes = set(answers.stored) | set(answers.refused)
        results = await asyncio.gather(*(
            self._publish(node_id, protocol.ASRUN_ACK, protocol.encode(protocol.asrun_ack(
                answers.stored.get(node_id, []), answers.refused.get(node_id))))
            for node_id in nodes), return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            log.warning("%d as-run acks not sent (%s); nodes will resend", len(failed),
                        failed[0])

    def _store(self, batch: Sequence[Report]) -> Answers:
        try:
            # (copies: admission takes the raw bytes out, and a retry needs them again)
            return receive_reports(self.engine, [(n, leaf, dict(m)) for n, leaf, m in batch],
                                   self.clock(), self.health, self._report_signers)
        except OperationalError:
            raise
        except Exception:
            if len(batch) == 1:
                log.exception("dropping a report that cannot be stored: %r", batch[0])
                return Answers()
        # One bad message must not hold up the rest: store them one by one.
        answers = Answers()
        for item in batch:
            one = self._store([item])
            for node_id, rids in one.stored.items():
                answers.stored.setdefault(node_id, []).extend(rids)
            for node_id, refused in one.refused.items():
                answers.refused.setdefault(node_id, []).extend(refused)
            answers.rejections += one.rejections
        return answers

    async def flush(self) -> None:
        """Wait until everything received so far is stored (tests, shutdown)."""
        while not self._inbox.empty() or self._storing:
            await asyncio.sleep(0.02)
        if self._acking is not None:
            await self._acking

    # --- sending commands -------------------------------------------------------------------

    def _signer(self, node_id: str, key: str) -> protocol.Signer:
        signer = self._signers.get(node_id)
        if signer is None:
            signer = self._signers[node_id] = protocol.Signer(protocol.node_key(key))
        return signer

    def prepare(
        self, node_ids: Sequence[str], op: str, args: dict[str, Any], ttl_ms: int = 120_000,
        operator: str = "", title: str = "",
    ) -> list[SentCommand]:
        """Allocate sequence numbers, sign and record one command per node (no I/O to nodes)."""
        now = self.clock()
        out: list[SentCommand] = []
        with Session(self.engine) as s, s.begin():
            rows = s.execute(
                update(Node).where(Node.id.in_(node_ids), Node.revoked_ms.is_(None))
                .values(seq=Node.seq + 1)
                .returning(Node.id, Node.seq, Node.key, Node.online)
            ).all()
            found = {r[0] for r in rows}
            missing = sorted(set(node_ids) - found)
            if missing:
                raise KeyError(f"unknown or revoked node(s): {', '.join(missing[:5])}")
            offline = {r[0] for r in rows if not r[3]}
            for node_id, seq, key, _ in rows:
                cmd_id = "c" + secrets.token_hex(10)
                # A media URL carries this node's token (media/access.py); the record keeps
                # the URL as given, alike for every node of one broadcast.
                cmd = protocol.make_command(self._signer(node_id, key), cmd_id, node_id, seq,
                                            now, now + ttl_ms, op, node_args(args, node_id, key))
                out.append(SentCommand(cmd_id, node_id, seq, protocol.encode_command(cmd)))
            s.execute(insert(Command), [
                {"id": c.id, "node_id": c.node_id, "seq": c.seq, "op": op,
                 "args": json.dumps(args, ensure_ascii=False), "title": title[:300],
                 "issued_ms": now, "expires_ms": now + ttl_ms, "operator": operator[:100],
                 "status": "sent", "updated_ms": now,
                 # Kept until the node answers: the diary says why a village never aired it.
                 "reason": OFFLINE_WHEN_SENT if c.node_id in offline else None}
                for c in out
            ])
        return out

    async def publish_commands(self, commands: Sequence[SentCommand]) -> None:
        await asyncio.gather(*(
            self._publish(c.node_id, protocol.CMD, c.payload, required=True) for c in commands
        ))

    async def send(
        self, node_ids: Sequence[str], op: str, args: dict[str, Any], ttl_ms: int = 120_000,
        operator: str = "", title: str = "",
    ) -> list[SentCommand]:
        if self.client is None:
            raise HeadendOffline("not connected to the broker")
        commands = await asyncio.to_thread(self.prepare, node_ids, op, args, ttl_ms, operator,
                                           title)
        await self.publish_commands(commands)
        return commands

    async def publish(self, node_id: str, leaf: str, payload: bytes) -> None:
        """Publish to one node's topic at QoS 1; HeadendOffline when not connected."""
        await self._publish(node_id, leaf, payload, required=True)

    async def publish_plan(self, node_id: str, payload: bytes) -> None:
        """A node's plan, retained: a node that boots or reconnects while the headend is
        down still gets its newest plan from the broker."""
        await self._publish(node_id, protocol.PLAN, payload, required=True, retain=True)

    async def _publish(self, node_id: str, leaf: str, payload: bytes,
                       required: bool = False, retain: bool = False) -> None:
        # A bounded window of publishes in flight: aiomqtt and paho do per-publish work that
        # grows with the number outstanding, so 2,000 at once would cost quadratic time.
        async with self._window:
            await self._publish_now(node_id, leaf, payload, required, retain)

    async def _publish_now(self, node_id: str, leaf: str, payload: bytes,
                           required: bool, retain: bool = False) -> None:
        client = self.client
        if client is None:
            if required:
                raise HeadendOffline("not connected to the broker")
            return  # as-run acks are re-earned: the node resends unacked records
        # Commands are QoS 1 and never retained (a retained command would replay on reconnect);
        # only plans are retained, and a node refuses a plan older than the one it holds.
        await client.publish(protocol.topic(node_id, leaf), payload, qos=1, retain=retain)


@contextlib.asynccontextmanager
async def tool_session(engine: Engine, broker_port: int, password: str,
                       name: str) -> AsyncIterator[Gateway]:
    """A one-off client of the running headend's broker (`loaxa broadcast`, `loaxa node`): it
    sends commands and follows their acks; the running headend stores them."""
    headend = Gateway(engine, broker_port, password, persistent=False,
                      client_id=f"loaxa-{name}-{secrets.token_hex(4)}")
    task = asyncio.create_task(headend.run())
    try:
        try:
            await headend.wait_connected(10)
        except TimeoutError:
            raise HeadendOffline("không kết nối được broker của LoaXa "
                                 "(cannot reach the headend's broker)") from None
        yield headend
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

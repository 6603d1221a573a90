"""Emergency broadcasts (TT39 class "emergency"): played at once on the target nodes,
interrupting everything, in quiet hours too; the nodes resume their plan afterwards.

Who sent it, from where, to which villages and with what audio is kept in the broadcasts table;
each node's airing reaches the diary through its as-run record like any other item.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydub.exceptions import CouldntDecodeError
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from firmware import protocol
from headend.core.models import (
    NODE_VILLAGE,
    AsRunRecord,
    Broadcast,
    Command,
    Commune,
    Node,
    Village,
)
from headend.diary.reasons import NO_ANSWER, reason_vi
from headend.media.library import Media, MediaLibrary, node_audio
from headend.media.store import wav_for_nodes
from headend.media.tts import TtsError, default_engine
from headend.nodes.gateway import Gateway, HeadendOffline, tool_session

TTL_MS = 60_000  # an emergency not received within a minute is stale
MAX_TEXT = 5000


class EmergencyError(Exception):
    """A broadcast that cannot be sent; the message says why, in Vietnamese and English."""


@dataclass(frozen=True)
class Target:
    commune_id: str
    villages: list[str]
    node_ids: list[str]


@dataclass
class EmergencyResult:
    broadcast_id: int
    nodes: list[str]
    started: dict[str, int] = field(default_factory=dict)  # node -> start ms it reported
    refused: dict[str, str] = field(default_factory=dict)  # node -> reason

    @property
    def silent(self) -> list[str]:
        return [n for n in self.nodes if n not in self.started and n not in self.refused]


def find_target(engine: Engine, commune_id: str, villages: list[str] | None) -> Target:
    with Session(engine) as s:
        if s.get(Commune, commune_id) is None:
            known = ", ".join(s.scalars(select(Commune.id).order_by(Commune.id))) or "(none)"
            raise EmergencyError(f"không có xã '{commune_id}' (unknown commune; known: {known})")
        all_villages = list(s.scalars(
            select(Village.id).where(Village.commune_id == commune_id).order_by(Village.id)))
        chosen = villages or all_villages
        unknown = [v for v in chosen if v not in all_villages]
        if unknown:
            raise EmergencyError(
                f"xã '{commune_id}' không có thôn/bản {', '.join(unknown)} "
                f"(unknown villages; the commune has: {', '.join(all_villages)})")
        nodes = list(s.scalars(select(Node.id).where(
            Node.commune_id == commune_id, Node.village_id.in_(chosen),
            Node.revoked_ms.is_(None)).order_by(Node.id)))
    if not nodes:
        raise EmergencyError("các thôn đã chọn chưa có cụm loa nào (no nodes in those villages)")
    return Target(commune_id, chosen, nodes)


def emergency_audio(library: MediaLibrary, file: Path | None, text: str | None) -> Media:
    """The announcement in the node format, from an audio file or from text (TTS)."""
    if (file is None) == (text is None):
        raise EmergencyError("cần đúng một trong hai: --file hoặc --text (one of --file/--text)")
    if file is not None:
        try:
            data = file.read_bytes()
        except OSError as e:
            raise EmergencyError(f"không đọc được tệp {file}: {e.strerror}") from None

        try:
            return library.add_bytes(node_audio(data))
        except (CouldntDecodeError, IndexError, ValueError):
            raise EmergencyError(f"tệp {file} không phải âm thanh đọc được "
                                 "(not an audio file ffmpeg can decode)") from None
    assert text is not None
    if not text.strip():
        raise EmergencyError("nội dung thông báo trống (empty text)")
    if len(text) > MAX_TEXT:
        raise EmergencyError(f"nội dung quá dài: tối đa {MAX_TEXT} ký tự (text too long)")

    try:
        speech = default_engine().synthesize(text, "vi")
    except TtsError as e:
        raise EmergencyError(str(e)) from None
    return library.add_bytes(wav_for_nodes(speech))


class AlreadySent(Exception):
    """The idempotency key was used before: that broadcast, not a new one."""

    def __init__(self, broadcast_id: int) -> None:
        super().__init__(broadcast_id)
        self.broadcast_id = broadcast_id


@dataclass
class Sent:
    """A broadcast whose commands are out; wait() learns which nodes started it."""

    headend: Gateway
    engine: Engine
    broadcast_id: int
    waits: dict[str, asyncio.Future[dict[str, Any]]]
    command_ids: list[str] = field(default_factory=list)

    async def wait(self, wait_s: float = 15.0) -> EmergencyResult:
        result = EmergencyResult(self.broadcast_id, list(self.waits))
        node_of = {fut: node_id for node_id, fut in self.waits.items()}
        pending = set(node_of)
        deadline = asyncio.get_running_loop().time() + wait_s
        while pending:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=left,
                                               return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                msg = fut.result()
                node_id = node_of[fut]
                if msg.get("status") in (protocol.STARTED, protocol.DONE) \
                        and msg.get("reason") != protocol.R_AMP_FAULT:
                    result.started[node_id] = int(msg.get("start") or msg.get("at") or 0)
                else:  # refused, failed, or started on an amplifier that drives nothing
                    result.refused[node_id] = str(msg.get("reason") or msg.get("status"))
            # Counted as the answers come: the history list is right while others wait.
            await asyncio.to_thread(_count_started, self.engine, self.broadcast_id,
                                    len(result.started))
        self.headend.waiters.drop(self.command_ids)  # those still silent
        return result


async def send(headend: Gateway, engine: Engine, target: Target, media: Media, title: str,
               sent_by: str, sent_from: str, text: str | None = None,
               key: str | None = None) -> Sent:
    """Send the emergency to every target node, once per idempotency key: a key already
    used raises AlreadySent with that broadcast's id (nothing is sent again). The row is
    written before the commands go, so two requests with one key cannot both send; once
    the commands are recorded the row stays, even if publishing them fails (some may be out:
    the status page shows who answered, and the key never sends a second time)."""
    if headend.client is None:
        raise HeadendOffline("not connected to the broker")
    row_id = await asyncio.to_thread(_log, engine, target, media, title, text, sent_by,
                                     sent_from, headend.clock(), key)
    args = {"url": media.url, "sha": media.sha, "size": media.size, "title": title[:120]}
    try:
        cmds = await asyncio.to_thread(headend.prepare, target.node_ids, "emergency", args,
                                       TTL_MS, sent_by, title)
    except BaseException:
        await asyncio.to_thread(_forget, engine, row_id)  # nothing recorded: the key may retry
        raise
    await asyncio.to_thread(_sent, engine, row_id, [c.id for c in cmds])
    # Waiting before publishing: an answer that comes back at once is not missed.
    waits = {c.node_id: headend.waiters.add(
        c.id, (protocol.STARTED, protocol.REJECTED, protocol.FAILED, protocol.DONE))
        for c in cmds}
    try:
        await headend.publish_commands(cmds)
    except BaseException:
        headend.waiters.drop(c.id for c in cmds)
        raise
    return Sent(headend, engine, row_id, waits, [c.id for c in cmds])


async def broadcast(headend: Gateway, engine: Engine, target: Target, media: Media, title: str,
                    sent_by: str, sent_from: str, text: str | None = None,
                    wait_s: float = 15.0) -> EmergencyResult:
    """Send the emergency to every target node and wait (up to wait_s) for them to start."""
    sent = await send(headend, engine, target, media, title, sent_by, sent_from, text)
    return await sent.wait(wait_s)


def _log(engine: Engine, target: Target, media: Media, title: str, text: str | None,
         sent_by: str, sent_from: str, now: int, key: str | None) -> int:
    try:
        with Session(engine) as s, s.begin():
            row = Broadcast(commune_id=target.commune_id, kind="emergency", title=title[:300],
                            text=text, media=media.url.rsplit("/", 1)[-1][:200],
                            villages=json.dumps(target.villages), sent_by=sent_by[:100],
                            sent_from=sent_from[:200], sent_ms=now, nodes=0, started=0,
                            idem_key=scoped_key(target.commune_id, key), commands="[]")
            s.add(row)
            s.flush()
            return row.id
    except IntegrityError:
        with Session(engine) as s:
            first = s.scalar(select(Broadcast.id).where(
                Broadcast.idem_key == scoped_key(target.commune_id, key)))
        if first is None:
            raise
        raise AlreadySent(first) from None


def scoped_key(commune_id: str, key: str | None) -> str | None:
    """The key as stored: per commune, so one commune's key never finds another's broadcast."""
    if key is None:
        return None
    return hashlib.sha256(f"{commune_id}\0{key}".encode()).hexdigest()


def _sent(engine: Engine, row_id: int, command_ids: list[str]) -> None:
    with Session(engine) as s, s.begin():
        row = s.get(Broadcast, row_id)
        if row is not None:
            row.commands = json.dumps(command_ids)
            row.nodes = len(command_ids)


def _forget(engine: Engine, row_id: int) -> None:
    with Session(engine) as s, s.begin():
        row = s.get(Broadcast, row_id)
        if row is not None:
            s.delete(row)


@dataclass(frozen=True)
class VillageState:
    village: str  # name
    state: str  # SENT, PLAYING, AIRED, PARTIAL, REFUSED, SILENT
    reason: str | None = None


SENT, PLAYING, AIRED, PARTIAL, REFUSED, SILENT = (
    "sent", "playing", "aired", "partial", "refused", "silent")
STATE_VI = {SENT: "Đã gửi, đang chờ cụm loa", PLAYING: "Đang phát", AIRED: "Đã phát",
            PARTIAL: "Phát không trọn", REFUSED: "Không phát", SILENT: "Không trả lời"}
HEARD = (PLAYING, AIRED)  # the villages counted as hearing it
ANSWERING = (SENT, PLAYING)  # the page keeps refreshing while any village is here
_RANK = {AIRED: 5, PLAYING: 4, PARTIAL: 3, SENT: 2, REFUSED: 1, SILENT: 0}


def village_states(engine: Engine, broadcast_id: int, now_ms: int) -> list[VillageState]:
    """Each target village's state, from its nodes: what the node's as-run record says once
    it came (aired, partial, not aired); before that from the command's answer: playing
    (unless on an amplifier that drives nothing), refused with the reason, silent once the
    command expired, else sent. A village takes the best state among its nodes."""
    with Session(engine) as s:
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            return []
        ids = json.loads(b.commands or "[]")
        rows = s.execute(select(Village.id, Village.name, Command.id, Command.status,
                                Command.reason, Command.expires_ms)
                         .join(Node, NODE_VILLAGE)
                         .join(Command, Command.node_id == Node.id)
                         .where(Command.id.in_(ids))).all() if ids else []
        heard = {cid: (outcome, reason) for cid, outcome, reason in s.execute(
            select(AsRunRecord.command_id, AsRunRecord.outcome, AsRunRecord.reason)
            .where(AsRunRecord.command_id.in_(ids), AsRunRecord.rid.is_not(None)))} \
            if ids else {}
        names = dict(s.execute(select(Village.id, Village.name)
                               .where(Village.commune_id == b.commune_id,
                                      Village.id.in_(json.loads(b.villages) or
                                                     [r[0] for r in rows]))).all())
    best: dict[str, VillageState] = {}
    for vid, name, cid, status, reason, expires in rows:
        st = _state(name, status, reason, expires, heard.get(cid), now_ms)
        if vid not in best or _RANK[st.state] > _RANK[best[vid].state]:
            best[vid] = st
    order = sorted(names, key=lambda v: names[v])
    return [best.get(v, VillageState(names[v], SILENT)) for v in order if v in names] + [
        st for v, st in best.items() if v not in names]


def _state(name: str, status: str, reason: str | None, expires: int,
           asrun: tuple[str, str | None] | None, now_ms: int) -> VillageState:
    if asrun is not None:  # what the node says it aired (and was heard) is the last word
        outcome, why = asrun
        if outcome == protocol.AIRED:
            return VillageState(name, AIRED)
        if outcome == protocol.PARTIAL:
            return VillageState(name, PARTIAL, reason_vi(why))
        return VillageState(name, REFUSED, reason_vi(why or outcome))
    if status in (protocol.STARTED, protocol.DONE):
        if reason == protocol.R_AMP_FAULT:
            return VillageState(name, REFUSED, reason_vi(reason))
        return VillageState(name, PLAYING)
    if status in (protocol.REJECTED, protocol.FAILED):
        return VillageState(name, REFUSED, reason_vi(reason))
    if now_ms <= expires:
        return VillageState(name, SENT, reason_vi(reason))
    return VillageState(name, SILENT, reason_vi(reason or NO_ANSWER))


def _count_started(engine: Engine, row_id: int, started: int) -> None:
    with Session(engine) as s, s.begin():
        row = s.get(Broadcast, row_id)
        if row is not None:
            row.started = started


async def send_from_cli(engine: Engine, broker_port: int, password: str, target: Target,
                        media: Media, title: str, sent_by: str, sent_from: str,
                        text: str | None, wait_s: float) -> EmergencyResult:
    """Connect to the running headend's broker as a one-off client and broadcast."""
    try:
        async with tool_session(engine, broker_port, password, "broadcast") as headend:
            return await broadcast(headend, engine, target, media, title, sent_by, sent_from,
                                   text, wait_s)
    except HeadendOffline as e:
        raise EmergencyError(str(e)) from None

"""Emergency broadcasts (TT39 class "emergency"): played at once on the target nodes,
interrupting everything, in quiet hours too; the nodes resume their plan afterwards.

Who sent it, from where, to which villages and with what audio is kept in the broadcasts table;
each node's airing reaches the diary through its as-run record like any other item.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from pydub.exceptions import CouldntDecodeError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from firmware import protocol
from headend.core.models import Broadcast, Commune, Node, Village
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
        nodes = list(s.scalars(select(Node.id).where(Node.village_id.in_(chosen))
                               .order_by(Node.id)))
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


async def broadcast(headend: Gateway, engine: Engine, target: Target, media: Media, title: str,
                    sent_by: str, sent_from: str, text: str | None = None,
                    wait_s: float = 15.0) -> EmergencyResult:
    """Send the emergency to every target node and wait (up to wait_s) for them to start."""
    args = {"url": media.url, "title": title[:120]}
    cmds = await headend.send(target.node_ids, "emergency", args, ttl_ms=TTL_MS,
                              operator=sent_by, title=title)
    waits = {c.node_id: headend.waiters.add(
        c.id, (protocol.STARTED, protocol.REJECTED, protocol.FAILED, protocol.DONE))
        for c in cmds}
    row_id = await asyncio.to_thread(_log, engine, target, media, title, text, sent_by,
                                     sent_from, headend.clock(), len(cmds))
    result = EmergencyResult(row_id, [c.node_id for c in cmds])
    done, _ = await asyncio.wait(list(waits.values()), timeout=wait_s)
    for node_id, fut in waits.items():
        if fut not in done:
            fut.cancel()
            continue
        msg = fut.result()
        if msg.get("status") in (protocol.STARTED, protocol.DONE):
            result.started[node_id] = int(msg.get("start") or msg.get("at") or 0)
        else:
            result.refused[node_id] = str(msg.get("reason") or msg.get("status"))
    await asyncio.to_thread(_count_started, engine, row_id, len(result.started))
    return result


def _log(engine: Engine, target: Target, media: Media, title: str, text: str | None,
         sent_by: str, sent_from: str, now: int, nodes: int) -> int:
    with Session(engine) as s, s.begin():
        row = Broadcast(commune_id=target.commune_id, kind="emergency", title=title[:300],
                        text=text, media=media.url.rsplit("/", 1)[-1][:200],
                        villages=json.dumps(target.villages), sent_by=sent_by[:100],
                        sent_from=sent_from[:200], sent_ms=now, nodes=nodes, started=0)
        s.add(row)
        s.flush()
        return row.id


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

"""What a node's report must be before the headend believes it: signed with the node's own
key over the exact bytes received, of the shape the firmware writes, with times that make sense.

As-run records (topic `asrun`) and acks (topic `ack`) carry `sig`, HMAC-SHA256 under the node's
key over the canonical bytes of every other field (firmware/protocol.py `sign_report`). The
broker's ACL lets only the node (or whoever has its password) publish there; the signature makes
a stolen password alone useless for writing the diary or settling commands.

- A report without a valid signature is dropped and logged, and never answered: a refusal is
  only ever sent for a record the node itself signed, naming its signature, so an answer to a
  forged copy cannot make the node drop its real record with the same id.
- A signed record of the wrong shape or with impossible times is refused: the as-run ack names
  it (rid, sig, why) so the node stops resending it, and the node's `asrun_refused` alarm is
  raised (headend/nodes/ingest.py `receive_reports`).
- A signed ack of the wrong shape is dropped (acks are not resent).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from firmware import protocol
from headend.core.models import Command, Node

log = logging.getLogger("loaxa.headend")

RAW = "_raw"  # the bytes a report arrived as, kept beside its decoded fields by the gateway
MAX_RID = 2 ** 53  # record ids are below this (exact in every JSON reader)
SLACK_MS = 3600_000  # how far a time may stray from its plan item, its command or the receipt
MAX_AGE_MS = 400 * 86_400_000  # a record older than this at receipt is not a week's backlog
MAX_SPAN_MS = 86_400_000  # one airing lasts at most a day
# Record fields: their type and the longest text the firmware can write (anything longer is
# not a record of ours). Unknown fields of a newer firmware pass if they are plain values.
TEXT_FIELDS = {"node": 40, "cmd": 64, "trigger": 16, "item": 64, "kind": 24, "lang": 16,
               "src": 16, "outcome": 16, "title": 1000, "media": 1000, "reason": 1000,
               "t": 16}
TIME_FIELDS = ("start", "end", "planned", "planned_end")
ACK_TEXT = {"node": 40, "id": 64, "status": 16, "reason": 300, "detail": 300, "version": 32,
            "stopped": 64, "outcome": 16, "t": 16}


@dataclass(frozen=True)
class Refusal:
    node_id: str
    rid: Any
    sig: str
    why: str  # protocol.R_BAD_FIELD, R_BAD_TIME or R_CONFLICT
    detail: str

    def wire(self) -> dict[str, Any]:
        return {"rid": self.rid, "sig": self.sig, "why": self.why}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, str))


def record_problem(msg: Mapping[str, Any], now: int,
                   command: tuple[int, int] | None = None) -> tuple[str, str] | None:
    """(reason, detail) when a signed as-run record cannot be a true one, else None.
    command: (issued_ms, expires_ms) of the command the record names, when known."""
    rid = msg.get("rid")
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 < rid < MAX_RID:
        return protocol.R_BAD_FIELD, "rid"
    if msg.get("v") != protocol.VERSION or msg.get("t") != "asrun":
        return protocol.R_BAD_FIELD, "v/t"
    for k, v in msg.items():
        if k == RAW:
            continue
        if not _scalar(v):  # no floats, lists or objects
            return protocol.R_BAD_FIELD, k
        if isinstance(v, int) and not isinstance(v, bool) and not -MAX_RID < v < MAX_RID:
            return protocol.R_BAD_FIELD, k
    for k, limit in TEXT_FIELDS.items():
        v = msg.get(k)
        if v is not None and (not isinstance(v, str) or len(v) > limit):
            return protocol.R_BAD_FIELD, k
    p = msg.get("p")
    if p is not None and (not _is_int(p) or p not in protocol.PRIORITIES):
        return protocol.R_BAD_FIELD, "p"
    for k in TIME_FIELDS:
        v = msg.get(k)
        if v is not None and not _is_int(v):
            return protocol.R_BAD_FIELD, k
    times = [msg[k] for k in TIME_FIELDS if msg.get(k) is not None]
    for t in times:
        if not now - MAX_AGE_MS <= t <= now + SLACK_MS:
            return protocol.R_BAD_TIME, "far from its receipt"
    start, end = msg.get("start"), msg.get("end")
    if start is not None and end is not None:
        if start > end:
            return protocol.R_BAD_TIME, "start after end"
        if end - start > MAX_SPAN_MS:
            return protocol.R_BAD_TIME, "longer than a day"
    planned, planned_end = msg.get("planned"), msg.get("planned_end")
    if planned is not None and planned_end is not None and planned > planned_end:
        return protocol.R_BAD_TIME, "planned start after planned end"
    if msg.get("trigger") == "plan" and planned is not None:
        last = planned_end if planned_end is not None else planned + MAX_SPAN_MS
        for t in (start, end):
            if t is not None and not planned - SLACK_MS <= t <= last + SLACK_MS:
                return protocol.R_BAD_TIME, "far from its plan item"
    if command is not None and start is not None:
        issued, expires = command
        if not issued - SLACK_MS <= start <= expires + SLACK_MS:
            return protocol.R_BAD_TIME, "far from its command"
    return None


def ack_problem(msg: Mapping[str, Any]) -> str | None:
    """Why a signed ack is not one of ours, or None."""
    if msg.get("v") != protocol.VERSION or msg.get("t") != "ack":
        return "v/t"
    for k, v in msg.items():
        if k == RAW:
            continue
        if not _scalar(v):
            return k
        if _is_int(v) and not -MAX_RID < v < MAX_RID:
            return k
    for k, limit in ACK_TEXT.items():
        v = msg.get(k)
        if v is not None and (not isinstance(v, str) or len(v) > limit):
            return k
    return None


Report = tuple[str, str, dict[str, Any]]


def admit(conn: Connection, batch: Sequence[Report], now: int,
          signers: dict[str, protocol.Signer] | None = None,
          ) -> tuple[list[Report], list[Refusal]]:
    """The reports of a batch the headend may store, and the refusals to send (signers: a
    cache of Signer by hex key, kept by the caller across batches). Acks and
    as-run records must carry the bytes they arrived as (RAW) and verify under their node's
    key; the other leaves (availability, telemetry) pass as they are (checked in ingest)."""
    signed = [(n, leaf, m) for n, leaf, m in batch if leaf in (protocol.ASRUN, protocol.ACK)]
    keys: dict[str, str] = {}
    if signed:
        # A revoked node has no key here: nothing it sends is taken.
        keys = {nid: key for nid, key in conn.execute(select(Node.id, Node.key).where(
            Node.id.in_({n for n, _, _ in signed}), Node.revoked_ms.is_(None)))}
    cmd_ids = {m["cmd"] for _, leaf, m in signed
               if leaf == protocol.ASRUN and isinstance(m.get("cmd"), str)}
    commands: dict[tuple[str, str], tuple[int, int]] = {}
    if cmd_ids:
        for cid, nid, iat, exp in conn.execute(select(
                Command.id, Command.node_id, Command.issued_ms, Command.expires_ms)
                .where(Command.id.in_(cmd_ids))):
            commands[(cid, nid)] = (iat, exp)
    signers = {} if signers is None else signers
    out: list[Report] = []
    refused: list[Refusal] = []
    for node_id, leaf, msg in batch:
        if leaf not in (protocol.ASRUN, protocol.ACK):
            out.append((node_id, leaf, msg))
            continue
        raw = msg.pop(RAW, None)
        key = keys.get(node_id)
        if key is None:
            continue  # not a node of ours
        signer = signers.get(key)  # by key: a node given a new key is checked with it
        if signer is None:
            signer = signers[key] = protocol.Signer(protocol.node_key(key))
        if not isinstance(raw, bytes | bytearray) or msg.get("node") != node_id \
                or not protocol.report_signed(signer, bytes(raw), msg):
            log.warning("node %s: %s without a valid signature dropped (rid %r, id %r)",
                        node_id, leaf, msg.get("rid"), msg.get("id"))
            continue
        if leaf == protocol.ACK:
            why = ack_problem(msg)
            if why:
                log.warning("node %s: ack with a bad %s dropped", node_id, why)
                continue
            out.append((node_id, leaf, msg))
            continue
        cmd = msg.get("cmd")
        problem = record_problem(
            msg, now, commands.get((cmd, node_id)) if isinstance(cmd, str) else None)
        if problem is not None:
            log.warning("node %s: as-run record %r refused: %s (%s)", node_id,
                        msg.get("rid"), *problem)
            refused.append(Refusal(node_id, msg.get("rid"), str(msg["sig"]), *problem))
            continue
        out.append((node_id, leaf, msg))
    return out, refused

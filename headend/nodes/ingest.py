"""Storing what nodes report (availability, acks, telemetry, as-run records), a batch at a time.

Set-based SQL (one executemany per kind of change) rather than ORM objects: 2,000 nodes acking
one command arrive within a second, and this runs beside the event loop that receives them.
Portable SQL only (SQLite and PostgreSQL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    bindparam,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)

from firmware import protocol
from headend.core.alarms import (
    ASRUN_CONFLICT,
    ASRUN_REFUSED,
    DETAIL_ASRUN_CONFLICT,
    DETAIL_ASRUN_REFUSED,
    RELAY_FAILED,
    Decision,
    raise_on,
    settle,
)
from headend.core.models import AsRunRecord, Command, Node, NodePlan
from headend.diary import chain
from headend.diary.reasons import reason_vi
from headend.media.access import without_token
from headend.nodes.admission import Refusal, admit
from headend.nodes.health import DEFAULT_POLICY, HealthPolicy, broadcast_alarms, telemetry_alarms

Report = tuple[str, str, dict[str, Any]]  # (node id, topic leaf, decoded message)
log = logging.getLogger("loaxa.headend")

# An ack may only move a command forward; a late "rejected" (a QoS 1 redelivery the node
# refused as a replay) never undoes an "accepted".
STATUS_RANK = {"sent": 0, "rejected": 1, "accepted": 2, "started": 3, "done": 4, "failed": 4}
FINAL = ("done", "failed")
OUTCOMES = (protocol.AIRED, protocol.PARTIAL, protocol.OUTCOME_FAILED, protocol.MISSED)
RELAY_KINDS = ("vov_relay", "province_relay")
PLAN_ACK_PREFIX = "plan-"


def _may_replace(status: str) -> list[str]:
    """The statuses a command may have for `status` to replace it."""
    rank = STATUS_RANK[status]
    return [s for s, r in STATUS_RANK.items() if r <= rank]


def _status_in(statuses: Sequence[str]) -> ColumnElement[bool]:
    # Inline literals (our own constants): executemany cannot take an expanding IN parameter.
    return Command.status.in_([literal_column(f"'{st}'") for st in statuses])


def _text(value: Any, limit: int) -> str | None:
    return str(value)[:limit] if value not in (None, "") else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class Answers:
    """What to tell the nodes once a batch has committed: per node, the as-run record ids
    stored (or stored before), and the records refused for good ({"rid", "sig", "why"})."""

    stored: dict[str, list[int]] = field(default_factory=dict)
    refused: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)  # acks "rejected", signed


def receive_reports(engine: Engine, batch: Sequence[Report], now: int,
                    policy: HealthPolicy = DEFAULT_POLICY,
                    signers: dict[str, protocol.Signer] | None = None) -> Answers:
    """Reports as they came from the broker (acks and as-run records with the bytes they
    arrived as): admitted first (headend/nodes/admission.py: signature, shape, times), then
    stored in one transaction with their alarms."""
    with engine.begin() as conn:
        admitted, refusals = admit(conn, batch, now, signers)
        stored, conflicts = _apply(conn, admitted, now, policy)
        refusals += conflicts
        _refusal_alarms(conn, refusals, stored, now)
    answers = Answers(stored=stored, rejections=[
        m for _, leaf, m in admitted
        if leaf == protocol.ACK and m.get("status") == protocol.REJECTED])
    for r in refusals:
        answers.refused.setdefault(r.node_id, []).append(r.wire())
    return answers


def store_reports(engine: Engine, batch: Sequence[Report], now: int,
                  policy: HealthPolicy = DEFAULT_POLICY) -> dict[str, list[int]]:
    """Apply a batch of reports already admitted (the gateway's go through `receive_reports`)
    in one transaction; return the as-run record ids stored (or already stored) per node,
    which the caller acknowledges once this has committed."""
    with engine.begin() as conn:
        return _apply(conn, batch, now, policy)[0]


def _apply(conn: Connection, batch: Sequence[Report], now: int,
           policy: HealthPolicy) -> tuple[dict[str, list[int]], list[Refusal]]:
    by_leaf: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for node_id, leaf, msg in batch:
        by_leaf[leaf].append((node_id, msg))
    # Every provisioned node is in a village: this finds the known ones and their commune.
    communes = chain.node_communes(conn, [node_id for node_id, _, _ in batch])
    known = set(communes)
    seen = [{"nid": n, "now": now} for n in known]
    if seen:
        conn.execute(update(Node).where(Node.id == bindparam("nid"))
                     .values(last_seen_ms=bindparam("now")), seen)
    _states(conn, [(n, m) for n, m in by_leaf[protocol.STATE] if n in known])
    _telemetry(conn, [(n, m) for n, m in by_leaf[protocol.TELEMETRY] if n in known],
               communes, now, policy)
    _acks(conn, [(n, m) for n, m in by_leaf[protocol.ACK] if n in known], now)
    return _asrun(conn, [(n, m) for n, m in by_leaf[protocol.ASRUN] if n in known],
                  communes, now)


def _refusal_alarms(conn: Connection, refusals: list[Refusal], stored: dict[str, list[int]],
                    now: int) -> None:
    """A node whose signed record was refused raises its asrun_refused alarm (a bug in its
    firmware, or its key in other hands); its next record stored clears it. A conflict
    raises asrun_conflict once per record id, and stays for a technician to look at."""
    communes = chain.node_communes(conn, [r.node_id for r in refusals] + list(stored))
    decisions: dict[str, Decision] = {n: (False, "", communes.get(n)) for n in stored}
    for r in refusals:
        if r.why == protocol.R_CONFLICT:
            raise_on(conn, ASRUN_CONFLICT, f"{r.node_id}:{r.rid}",
                     DETAIL_ASRUN_CONFLICT.format(rid=r.rid), now, communes.get(r.node_id))
        else:
            decisions[r.node_id] = (True, DETAIL_ASRUN_REFUSED.format(
                rid=r.rid, why=r.why, detail=r.detail), communes.get(r.node_id))
    settle(conn, ASRUN_REFUSED, decisions, now)


def _states(conn: Connection, items: list[tuple[str, dict[str, Any]]]) -> None:
    # A last-will counts only if its session is not older than the newest seen, so a will
    # delivered after the node's next birth cannot mark it offline. Applied in arrival order.
    rows = []
    for node_id, msg in items:
        session = _int(msg.get("session"))
        if session is None:
            continue
        online = bool(msg.get("online"))
        rows.append({"nid": node_id, "session": session, "online": online,
                     "fw": _text(msg.get("fw"), 32)})
    for row in rows:
        stmt = update(Node).where(Node.id == row["nid"])
        if not row["online"]:
            # A birth always counts (the node is there now, even if its flash was wiped and
            # its session counter restarted); a will only if it is not from an older session.
            stmt = stmt.where(Node.session <= row["session"])
        stmt = stmt.values(session=row["session"], online=row["online"])
        if row["fw"]:
            stmt = stmt.values(fw=row["fw"])
        if not row["online"]:
            stmt = stmt.values(playing=None)
        conn.execute(stmt)


def _telemetry(conn: Connection, items: list[tuple[str, dict[str, Any]]],
               communes: dict[str, str], now: int, policy: HealthPolicy) -> None:
    latest: dict[str, dict[str, Any]] = {}
    short = {n for n, m in items if m.get("part")}
    stored: dict[str, dict[str, Any]] = {}
    if short:
        for nid, tel in conn.execute(select(Node.id, Node.telemetry)
                                     .where(Node.id.in_(short))):
            with contextlib.suppress(ValueError, TypeError):
                stored[nid] = dict(json.loads(tel)) if tel else {}
    for node_id, msg in items:
        reading = _reading(msg)
        if msg.get("part"):
            # A short message (firmware: only the readings that move, when nothing else
            # has changed) updates the full one the node sent last.
            base = latest.get(node_id) or stored.get(node_id) or {}
            reading = {**base, **reading}
            reading.pop("part", None)
        latest[node_id] = reading
    rows = [{"nid": n, "tel": json.dumps(m), "fw": _text(m.get("fw"), 32),
             "playing": _text(m.get("playing"), 64)} for n, m in latest.items()]
    if rows:
        conn.execute(update(Node).where(Node.id == bindparam("nid")).values(
            telemetry=bindparam("tel"), fw=bindparam("fw"), playing=bindparam("playing"),
            online=True), rows)
        telemetry_alarms(conn, latest, communes, now, policy)


# What a node's telemetry may hold (firmware/health.py: telemetry, full_report): known fields
# only, each a scalar or a small, shallow list or table. Anything else is dropped, so a
# node (or whoever has its password) cannot make the pages fail or the database grow.
TELEMETRY_FIELDS = frozenset({
    "v", "t", "node", "at", "fw", "board", "telemetry_s", "uptime_s", "heap_free", "link",
    "signal_dbm", "volume", "amp", "playing", "seq", "session", "asrun_pending", "rejections",
    "plan", "plan_to", "on_air", "emergency", "cache_used", "cache_full", "cache_error",
    "clock", "temp_c", "amp_ma", "amp_fault", "safe_mode", "safe_why", "reset", "reset_why",
    "ota", "link_info", "part", "full", "cache", "cache_n", "config", "pending_rids",
})
TELEMETRY_DEPTH = 3  # config.broker.port is the deepest the firmware sends
TELEMETRY_ITEMS = 64  # entries of one list or table
TELEMETRY_TEXT = 300  # characters of one text
BIG_INT = 2 ** 53  # beyond this, not a reading (and not exact in the browser's JSON)


class _Unfit(ValueError):
    pass


def _bounded(value: Any, depth: int) -> Any:
    """value if it is a reading of the shape telemetry has; _Unfit otherwise."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -BIG_INT < value < BIG_INT:
            return value
        raise _Unfit("integer out of range")
    if isinstance(value, float):
        if math.isfinite(value) and abs(value) < BIG_INT:
            return value
        raise _Unfit("number out of range")
    if isinstance(value, str):
        if len(value) <= TELEMETRY_TEXT:
            return value
        raise _Unfit("text too long")
    if depth >= TELEMETRY_DEPTH:
        raise _Unfit("nested too deep")
    if isinstance(value, list):
        if len(value) > TELEMETRY_ITEMS:
            raise _Unfit("list too long")
        return [_bounded(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if len(value) > TELEMETRY_ITEMS or not all(
                isinstance(k, str) and len(k) <= 40 for k in value):
            raise _Unfit("table too large")
        return {k: _bounded(v, depth + 1) for k, v in value.items()}
    raise _Unfit("not a reading")


def _reading(msg: dict[str, Any]) -> dict[str, Any]:
    """Telemetry as stored: the known fields of a fitting shape, plus the node's clock
    offset seen on arrival."""
    out = {}
    for k, v in msg.items():
        if k in TELEMETRY_FIELDS:
            with contextlib.suppress(_Unfit):
                out[k] = _bounded(v, 0)
    at, rx = _int(msg.get("at")), _int(msg.get("_rx"))
    if at is not None and rx is not None:
        out["clock_offset_ms"] = at - rx
    return out


def _acks(conn: Connection, items: list[tuple[str, dict[str, Any]]], now: int) -> None:
    by_status: dict[str, list[dict[str, Any]]] = defaultdict(list)
    started, finished = [], []
    plan_acks = []
    for node_id, msg in items:
        cmd_id, status = msg.get("id"), msg.get("status")
        if not isinstance(cmd_id, str) or not isinstance(status, str) \
                or status not in STATUS_RANK:
            continue  # a rejection of something that had no id: logged by the service
        if cmd_id.startswith(PLAN_ACK_PREFIX) and cmd_id[len(PLAN_ACK_PREFIX):].isdigit():
            plan_acks.append({"nid": node_id, "pver": int(cmd_id[len(PLAN_ACK_PREFIX):]),
                              "st": status, "now": now,
                              "reason": _text(msg.get("reason") or msg.get("detail"), 300)})
            continue
        reason = _text(msg.get("reason") or msg.get("detail"), 300)
        by_status[status].append({"cid": cmd_id, "nid": node_id, "st": status,
                                  "reason": reason, "now": now})
        if status == protocol.STARTED:
            started.append({"nid": node_id, "cid": cmd_id})
        elif status in FINAL:
            finished.append({"nid": node_id, "cid": cmd_id})
    for status, rows in by_status.items():
        conn.execute(
            update(Command)
            .where(Command.id == bindparam("cid"), Command.node_id == bindparam("nid"),
                   _status_in(_may_replace(status)))
            .values(status=bindparam("st"), reason=bindparam("reason"),
                    updated_ms=bindparam("now")),
            rows)
    if plan_acks:
        conn.execute(update(NodePlan).where(NodePlan.node_id == bindparam("nid"),
                                            NodePlan.ver == bindparam("pver"))
                     .values(status=bindparam("st"), reason=bindparam("reason"),
                             updated_ms=bindparam("now")), plan_acks)
    if started:
        conn.execute(update(Node).where(Node.id == bindparam("nid"))
                     .values(playing=bindparam("cid")), started)
    if finished:
        conn.execute(update(Node).where(Node.id == bindparam("nid"),
                                        Node.playing == bindparam("cid"))
                     .values(playing=None), finished)


# What a record says, as stored: two copies of one record id must agree on all of it.
CONTENT = ("command_id", "trigger", "media", "title", "start_ms", "end_ms", "outcome", "reason",
           "item_id", "kind", "priority", "language", "planned_start_ms", "planned_end_ms",
           "source")


def _row(node_id: str, rid: int, msg: dict[str, Any], commune_id: str,
         now: int) -> dict[str, Any]:
    outcome = msg.get("outcome")
    reason = _text(msg.get("reason"), 300)
    if outcome not in OUTCOMES:
        reason = _text(f"node reported outcome {outcome!r}", 300)
        outcome = protocol.OUTCOME_FAILED
    return {
        "node_id": node_id, "rid": rid, "command_id": _text(msg.get("cmd"), 64),
        "trigger": _text(msg.get("trigger"), 16) or "command",
        # The URL as the headend wrote it, without the node's token (media/access.py).
        "media": without_token(_text(msg.get("media"), 500) or ""),
        "title": _text(msg.get("title"), 300) or "",
        "start_ms": _int(msg.get("start")), "end_ms": _int(msg.get("end")),
        "outcome": outcome, "reason": reason, "received_ms": now,
        "item_id": _text(msg.get("item"), 64), "kind": _text(msg.get("kind"), 24),
        "priority": _int(msg.get("p")), "language": _text(msg.get("lang"), 16),
        "planned_start_ms": _int(msg.get("planned")),
        "planned_end_ms": _int(msg.get("planned_end")), "source": _text(msg.get("src"), 16),
        "commune_id": commune_id, "corrects_id": None, "operator": None,
        "note": None,
    }


def _content(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in CONTENT)


def _asrun(conn: Connection, items: list[tuple[str, dict[str, Any]]],
           communes: dict[str, str], now: int) -> tuple[dict[str, list[int]], list[Refusal]]:
    """Store the records not stored yet. Idempotent on (node, rid): a copy with the same
    content (a resend after a lost ack) is acknowledged again; one with other content is not
    stored (the first stays), and comes back as a conflict for the node to drop."""
    acks: dict[str, list[int]] = defaultdict(list)
    conflicts: list[Refusal] = []
    copies: list[tuple[tuple[str, int], dict[str, Any], dict[str, Any]]] = []
    for node_id, msg in items:
        rid = _int(msg.get("rid"))
        if rid is None:
            continue
        copies.append(((node_id, rid), msg, _row(node_id, rid, msg, communes[node_id], now)))
    if not copies:
        return acks, conflicts
    keys = list({k for k, _, _ in copies})
    held: dict[tuple[str, int], tuple[Any, ...]] = {}
    for i in range(0, len(keys), 500):
        for r in conn.execute(select(AsRunRecord.node_id, AsRunRecord.rid,
                                     *(getattr(AsRunRecord, c) for c in CONTENT)).where(
                tuple_(AsRunRecord.node_id, AsRunRecord.rid).in_(keys[i:i + 500]))):
            held[(r[0], r[1])] = tuple(r[2:])
    rows, settle = [], []
    for key, msg, row in copies:
        node_id, rid = key
        if key in held:
            if held[key] == _content(row):
                acks[node_id].append(rid)
            else:
                log.warning("node %s: record %d came again with other content", node_id, rid)
                conflicts.append(Refusal(node_id, rid, str(msg.get("sig") or ""),
                                         protocol.R_CONFLICT, "other content stored"))
            continue
        held[key] = _content(row)
        acks[node_id].append(rid)
        rows.append(row)
        if isinstance(msg.get("cmd"), str):
            # The record also settles its command when the final ack was lost in an outage.
            settle.append({"cid": msg["cmd"], "nid": node_id, "reason": row["reason"],
                           "st": "done" if row["outcome"] == protocol.AIRED else "failed",
                           "now": now})
    if rows:
        chain.append(conn, rows)
        conn.execute(insert(AsRunRecord), rows)
        _relay_alarms(conn, rows, now)
        broadcast_alarms(conn, rows, now)
    if settle:
        conn.execute(
            update(Command)
            .where(Command.id == bindparam("cid"), Command.node_id == bindparam("nid"),
                   ~_status_in(FINAL))
            .values(status=bindparam("st"), reason=bindparam("reason"),
                    updated_ms=bindparam("now")),
            settle)
    return acks, conflicts


def _relay_alarms(conn: Connection, rows: list[dict[str, Any]], now: int) -> None:
    """A relay a node could not air from either stream raises the node's relay alarm; the
    next relay it airs from a stream clears it. Per node the newest relay record decides."""
    decisions: dict[str, Decision] = {}
    for row in sorted((r for r in rows if r["kind"] in RELAY_KINDS),
                      key=lambda r: (r["start_ms"] or 0, r["rid"])):
        if row["source"] == "fallback" or row["outcome"] == protocol.OUTCOME_FAILED:
            decisions[row["node_id"]] = (
                True, f"{row['title'] or row['item_id']}: "
                      f"{reason_vi(row['reason'] or 'no stream')}", row["commune_id"])
        elif row["source"] in ("primary", "backup"):
            decisions[row["node_id"]] = (False, "", row["commune_id"])
    settle(conn, RELAY_FAILED, decisions, now)

"""The diary's hash chain: every as-run entry of a commune is numbered and linked to the one
before it by SHA-256, so an edit, an insertion, a deletion or a reordering of entries in the
database is found by `verify` (`loaxa diary verify`), which says where.

Entries are never updated: a correction is a new entry that names the entry it corrects. The
newest number and hash of each commune are kept in `diary_heads`, so cutting entries off the
end is found as well. Chaining happens inside the transaction that stores the entries.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update

from headend.core.models import NODE_VILLAGE, AsRunRecord, DiaryHead, Node, Village

GENESIS = "0" * 64
# The content an entry's hash covers, in this order (the row id is the database's, not ours).
FIELDS = ("commune_id", "chain_seq", "node_id", "rid", "command_id", "trigger", "media", "title",
          "start_ms", "end_ms", "outcome", "reason", "received_ms", "item_id", "kind",
          "priority", "language", "planned_start_ms", "planned_end_ms", "source",
          "corrects_id", "operator", "note")
_COLUMNS = [getattr(AsRunRecord, f) for f in FIELDS]


def entry_hash(prev: str, entry: Mapping[str, Any]) -> str:
    body = json.dumps([entry.get(f) for f in FIELDS], ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(prev.encode() + body.encode()).hexdigest()


def node_communes(conn: Connection, node_ids: Sequence[str]) -> dict[str, str]:
    return dict(conn.execute(select(Node.id, Village.commune_id)
                             .join(Village, NODE_VILLAGE)
                             .where(Node.id.in_(set(node_ids)))).all())


def append(conn: Connection, entries: Sequence[dict[str, Any]]) -> None:
    """Number and hash the new entries (each has its commune_id) after their commune's head
    and move the heads, in the caller's transaction. The caller inserts the entries."""
    communes = {e["commune_id"] for e in entries}
    query = select(DiaryHead.commune_id, DiaryHead.seq, DiaryHead.hash).where(
        DiaryHead.commune_id.in_(communes))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # two writers must not take the same number
    heads = {c: (seq, h) for c, seq, h in conn.execute(query)}
    known = set(heads)
    for e in entries:
        seq, prev = heads.get(e["commune_id"], (0, GENESIS))
        e["chain_seq"] = seq + 1
        e["hash"] = entry_hash(prev, e)
        heads[e["commune_id"]] = (seq + 1, e["hash"])
    moved = [{"c": c, "seq": s, "h": h} for c, (s, h) in heads.items() if c in known]
    if moved:
        conn.execute(update(DiaryHead).where(DiaryHead.commune_id == bindparam("c"))
                     .values(seq=bindparam("seq"), hash=bindparam("h")), moved)
    new = [{"commune_id": c, "seq": s, "hash": h} for c, (s, h) in heads.items()
           if c not in known]
    if new:
        conn.execute(insert(DiaryHead), new)


@dataclass(frozen=True)
class ChainProblem:
    commune_id: str
    seq: int | None
    entry_id: int | None
    message: str

    def __str__(self) -> str:
        where = f"entry #{self.seq}" if self.seq is not None else "entry"
        if self.entry_id is not None:
            where += f" (row id {self.entry_id})"
        return f"{self.commune_id}: {where}: {self.message}"


def _rows(conn: Connection, commune_id: str) -> Iterator[Any]:
    stmt = (select(AsRunRecord.id, AsRunRecord.hash, *_COLUMNS)
            .where(AsRunRecord.commune_id == commune_id)
            .order_by(AsRunRecord.chain_seq, AsRunRecord.id)
            .execution_options(yield_per=20_000))
    yield from conn.execute(stmt)


def chain_size(engine: Engine, commune_id: str | None = None) -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(AsRunRecord)
        if commune_id is not None:
            q = q.where(AsRunRecord.commune_id == commune_id)
        return int(conn.scalar(q) or 0)


def verify(engine: Engine, commune_ids: Sequence[str],
           progress: Callable[[int], None] | None = None,
           limit: int = 100) -> list[ChainProblem]:
    """Walk each commune's chain; the problems found (at most `limit`), none when intact."""
    with engine.connect() as conn:
        found = (p for cid in commune_ids for p in _walk(conn, cid, progress))
        problems = list(itertools.islice(found, limit))
        if len(problems) < limit:
            # Entries of no commune at all cannot belong to any chain.
            stray = conn.execute(select(AsRunRecord.id).where(
                AsRunRecord.commune_id.is_(None)).limit(limit - len(problems))).scalars()
            problems += [ChainProblem("?", None, i, "belongs to no commune (inserted)")
                         for i in stray]
    return problems


def _walk(conn: Connection, cid: str,
          progress: Callable[[int], None] | None) -> Iterator[ChainProblem]:
    head = conn.execute(select(DiaryHead.seq, DiaryHead.hash)
                        .where(DiaryHead.commune_id == cid)).first()
    expect, prev, done = 1, GENESIS, 0
    for row in _rows(conn, cid):
        entry = row._mapping
        seq = entry["chain_seq"]
        done += 1
        if progress and done % 10_000 == 0:
            progress(10_000)
        if seq is None:
            yield ChainProblem(cid, None, row.id, "inserted outside the chain (it has no "
                               "entry number)")
            continue
        if seq < expect:
            yield ChainProblem(cid, seq, row.id, "a second entry with this number (inserted)")
            continue
        if seq > expect:
            gap = f"#{expect}" if seq == expect + 1 else f"#{expect} to #{seq - 1}"
            yield ChainProblem(cid, seq, row.id, f"entries {gap} are missing (deleted)")
        elif entry_hash(prev, entry) != row.hash:  # (after a gap the link cannot be checked)
            yield ChainProblem(cid, seq, row.id, "does not match its hash: it was edited, "
                               "moved, or the entry before it was replaced")
        prev, expect = row.hash or "", seq + 1
    if progress:
        progress(done % 10_000)
    last = expect - 1
    if head is None:
        if last:
            yield ChainProblem(cid, None, None, "the chain head is missing")
    elif head.seq > last:
        gap = f"#{last + 1}" if head.seq == last + 1 else f"#{last + 1} to #{head.seq}"
        yield ChainProblem(cid, head.seq, None, f"the last entries {gap} are missing (deleted)")
    elif head.seq < last or head.hash != prev:
        yield ChainProblem(cid, last, None, "the newest entry is not the one the chain head "
                           "records (edited or inserted at the end)")


class CorrectionError(ValueError):
    pass


CORRECTABLE = ("aired", "partial", "failed", "missed")


def correct(engine: Engine, entry_id: int, outcome: str, note: str, operator: str,
            now_ms: int) -> int:
    """Add a correction of entry `entry_id` (its outcome, with a note saying why); returns the
    new entry's id. The corrected entry stays as it was."""
    if outcome not in CORRECTABLE:
        raise CorrectionError(f"outcome must be one of {', '.join(CORRECTABLE)}")
    if not note.strip() or not operator.strip():
        raise CorrectionError("a correction needs a note saying why and who makes it")
    with engine.begin() as conn:
        old = conn.execute(select(*_COLUMNS).where(AsRunRecord.id == entry_id)).first()
        if old is None:
            raise CorrectionError(f"no diary entry with id {entry_id}")
        entry = dict(old._mapping)
        entry.update(rid=None, trigger="correction", corrects_id=entry_id, outcome=outcome,
                     note=note.strip()[:2000], operator=operator.strip()[:100],
                     received_ms=now_ms)
        append(conn, [entry])
        return int(conn.execute(insert(AsRunRecord).returning(AsRunRecord.id), [entry])
                   .scalar_one())

"""The headend's tables. Times are UTC milliseconds since the epoch (BigInteger), which keeps the
schema identical on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Commune(Base):
    __tablename__ = "communes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    province: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Ho_Chi_Minh")
    terrain: Mapped[str] = mapped_column(String(16), default="mountainous")  # or "lowland"


class Village(Base):
    """A village, known by its id within its commune: communes made from one template all
    have a "thon-1", and none may take another's."""

    __tablename__ = "villages"
    commune_id: Mapped[str] = mapped_column(ForeignKey("communes.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Node(Base):
    """A loudspeaker node. Its id is its broker username, so unique across the installation;
    its village is one of its own commune's."""

    __tablename__ = "nodes"
    __table_args__ = (
        ForeignKeyConstraint(["commune_id", "village_id"],
                             ["villages.commune_id", "villages.id"], name="fk_nodes_village"),
        Index("ix_nodes_commune_village", "commune_id", "village_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    commune_id: Mapped[str] = mapped_column(ForeignKey("communes.id", name="fk_nodes_commune"))
    village_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))  # HMAC key, hex
    seq: Mapped[int] = mapped_column(BigInteger, default=0)  # last sequence number issued
    online: Mapped[bool] = mapped_column(default=False)
    session: Mapped[int] = mapped_column(BigInteger, default=0)  # newest session seen
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger)
    fw: Mapped[str | None] = mapped_column(String(32))
    playing: Mapped[str | None] = mapped_column(String(64))  # command id now on air
    telemetry: Mapped[str | None] = mapped_column(Text)  # last telemetry message, JSON
    # `loaxa node revoke`: its broker login and key are gone; nothing it sends is taken.
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)


# Node -> its village: the same commune and village id.
NODE_VILLAGE = and_(Village.commune_id == Node.commune_id, Village.id == Node.village_id)


class Command(Base):
    __tablename__ = "commands"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    op: Mapped[str] = mapped_column(String(16))
    args: Mapped[str] = mapped_column(Text)  # JSON
    title: Mapped[str] = mapped_column(String(300), default="")
    issued_ms: Mapped[int] = mapped_column(BigInteger, index=True)  # the diary reads by day
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    operator: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default="sent")
    reason: Mapped[str | None] = mapped_column(String(300))
    updated_ms: Mapped[int | None] = mapped_column(BigInteger)


class AsRunRecord(Base):
    """What a node reports it actually aired: the diary's entries, hash-chained per commune
    (headend/diary/chain.py). A correction is a new entry (trigger "correction") naming the entry
    it corrects; entries are never updated."""

    __tablename__ = "asrun"
    __table_args__ = (
        UniqueConstraint("node_id", "rid", name="uq_asrun_node_rid"),
        UniqueConstraint("commune_id", "chain_seq", name="uq_asrun_commune_seq"),
        Index("ix_asrun_commune_start", "commune_id", "start_ms"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    rid: Mapped[int | None] = mapped_column(BigInteger)  # the node's record id (None: correction)
    command_id: Mapped[str | None] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(16), default="command")
    media: Mapped[str] = mapped_column(String(500), default="")
    title: Mapped[str] = mapped_column(String(300), default="")
    start_ms: Mapped[int | None] = mapped_column(BigInteger, index=True)
    end_ms: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(300))
    received_ms: Mapped[int] = mapped_column(BigInteger)
    # Plan items (trigger "plan"): which item of the plan this airing was, and its plan times.
    item_id: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str | None] = mapped_column(String(24))
    priority: Mapped[int | None] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(16))
    planned_start_ms: Mapped[int | None] = mapped_column(BigInteger)
    planned_end_ms: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str | None] = mapped_column(String(16))  # primary, backup, fallback, cache
    # The chain: entry number within the commune and SHA-256 over the previous hash and this
    # entry's content. Corrections name the entry they correct, who made them and why.
    commune_id: Mapped[str | None] = mapped_column(String(64))
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)
    hash: Mapped[str | None] = mapped_column(String(64))
    corrects_id: Mapped[int | None] = mapped_column(Integer)
    operator: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)


class DiaryHead(Base):
    """The newest entry of each commune's chain: truncating the diary cannot go unnoticed."""

    __tablename__ = "diary_heads"
    commune_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class Programme(Base):
    """A planned programme item of a commune (one occurrence of a slot): what the diary
    reconciles the nodes' records against. Written when plans are built."""

    __tablename__ = "programme"
    __table_args__ = (UniqueConstraint("commune_id", "occurrence", name="uq_programme_occ"),
                      Index("ix_programme_commune_start", "commune_id", "start_ms"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    commune_id: Mapped[str] = mapped_column(String(64))
    occurrence: Mapped[str] = mapped_column(String(64))  # "<slot>@<local date>"
    kind: Mapped[str] = mapped_column(String(24))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    language: Mapped[str] = mapped_column(String(16), default="vi")
    title: Mapped[str] = mapped_column(String(300), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(300), default="")  # relay source or media file
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    villages: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of village ids
    operator: Mapped[str] = mapped_column(String(100), default="")
    approver: Mapped[str] = mapped_column(String(100), default="")


class NodePlan(Base):
    """The newest plan published to each node (the broker retains it for the node)."""

    __tablename__ = "node_plans"
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    ver: Mapped[int] = mapped_column(BigInteger)
    issued_ms: Mapped[int] = mapped_column(BigInteger)
    from_ms: Mapped[int] = mapped_column(BigInteger)
    to_ms: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))  # of the content, to skip identical re-sends
    items: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="sent")  # sent, accepted, rejected
    reason: Mapped[str | None] = mapped_column(String(300))
    updated_ms: Mapped[int | None] = mapped_column(BigInteger)


class Alarm(Base):
    """Raised once and cleared once: at most one open alarm per (kind, subject)."""

    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    commune_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    raised_ms: Mapped[int] = mapped_column(BigInteger)
    cleared_ms: Mapped[int | None] = mapped_column(BigInteger, index=True)


class Broadcast(Base):
    """An emergency broadcast: who sent what, to which villages, and when."""

    __tablename__ = "broadcasts"
    __table_args__ = (UniqueConstraint("idem_key", name="uq_broadcasts_idem_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    commune_id: Mapped[str] = mapped_column(ForeignKey("communes.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="emergency")
    title: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str | None] = mapped_column(Text)
    media: Mapped[str] = mapped_column(String(200))
    villages: Mapped[str] = mapped_column(Text)  # JSON list of village ids
    sent_by: Mapped[str] = mapped_column(String(100))
    sent_from: Mapped[str] = mapped_column(String(200), default="")
    sent_ms: Mapped[int] = mapped_column(BigInteger)
    nodes: Mapped[int] = mapped_column(Integer, default=0)
    started: Mapped[int] = mapped_column(Integer, default=0)  # nodes that acked "started"
    # The sender's idempotency key (a hash of commune and key, emergency.scoped_key): a reload,
    # back or second tap finds this row and sends nothing.
    idem_key: Mapped[str | None] = mapped_column(String(64))
    commands: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of command ids


class User(Base):
    """A person who logs in: admin (province), technician (listed communes or the province),
    officer and approver (one commune). `communes` is a JSON list; ["*"] is the province."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    communes: Mapped[str] = mapped_column(Text, default="[]")
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class WebSession(Base):
    """A logged-in browser. Only the SHA-256 of the cookie is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    ip: Mapped[str] = mapped_column(String(64), default="")


class ApiToken(Base):
    """A token for the REST API (HTTTN and other tools); acts as its user. Only the SHA-256
    of the token is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_used_ms: Mapped[int | None] = mapped_column(BigInteger)
    revoked: Mapped[bool] = mapped_column(default=False)
    scopes: Mapped[str] = mapped_column(String(64), default="read")  # auth.TOKEN_SCOPES, ","


class AuditEntry(Base):
    """Who did what, when, from where. Written with the action, never changed."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_commune_at", "commune_id", "at_ms"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default="")
    action: Mapped[str] = mapped_column(String(32))
    commune_id: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    ip: Mapped[str] = mapped_column(String(64), default="")


class Bulletin(Base):
    """A locally produced item (bulletin, notice, emergency text), prepared for every node
    profile. Drafts need an approver's approval before they can be scheduled."""

    __tablename__ = "bulletins"
    __table_args__ = (Index("ix_bulletins_commune_created", "commune_id", "created_ms"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    commune_id: Mapped[str] = mapped_column(ForeignKey("communes.id"))
    title: Mapped[str] = mapped_column(String(300))
    summary: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(16), default="vi")
    kind: Mapped[str] = mapped_column(String(24), default="local_bulletin")
    origin: Mapped[str] = mapped_column(String(16))  # upload, record, tts, httttn
    text: Mapped[str | None] = mapped_column(Text)  # what text-to-speech read
    status: Mapped[str] = mapped_column(String(16), default="draft")  # approved, rejected
    duration_ms: Mapped[int] = mapped_column(BigInteger)
    lufs: Mapped[float | None] = mapped_column()
    media: Mapped[str] = mapped_column(Text, default="{}")  # JSON: profile -> media file name
    created_by: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_ms: Mapped[int | None] = mapped_column(BigInteger)
    decision_note: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(100))  # the HTTTN's id


class CalendarItem(Base):
    """An item an officer put on the calendar (a one-off slot on one day), added to the
    schedule file's slots when plans are built."""

    __tablename__ = "calendar_items"
    __table_args__ = (Index("ix_calendar_commune_day", "commune_id", "day"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    commune_id: Mapped[str] = mapped_column(ForeignKey("communes.id"))
    bulletin_id: Mapped[int | None] = mapped_column(ForeignKey("bulletins.id"))
    kind: Mapped[str] = mapped_column(String(24))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    language: Mapped[str] = mapped_column(String(16), default="vi")
    title: Mapped[str] = mapped_column(String(300))
    summary: Mapped[str] = mapped_column(Text, default="")
    villages: Mapped[str] = mapped_column(Text)  # JSON list of village ids
    day: Mapped[str] = mapped_column(String(10))  # local date, ISO
    start_min: Mapped[int] = mapped_column(Integer)  # minutes after local midnight
    end_min: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str] = mapped_column(String(64), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    removed: Mapped[bool] = mapped_column(default=False)


class SlotChange(Base):
    """One occurrence of a schedule-file slot moved or cancelled from the calendar."""

    __tablename__ = "slot_changes"
    __table_args__ = (UniqueConstraint("commune_id", "slot_id", "day", name="uq_slot_change"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    commune_id: Mapped[str] = mapped_column(ForeignKey("communes.id"))
    slot_id: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))  # the occurrence's local date, ISO
    action: Mapped[str] = mapped_column(String(8))  # "skip" or "move"
    new_day: Mapped[str | None] = mapped_column(String(10))
    start_min: Mapped[int | None] = mapped_column(Integer)
    end_min: Mapped[int | None] = mapped_column(Integer)
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_ms: Mapped[int] = mapped_column(BigInteger)

"""The headend's tables. Times are UTC milliseconds since the epoch (BigInteger), which keeps the
schema identical on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Commune(Base):
    __tablename__ = "communes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    province: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Ho_Chi_Minh")


class Village(Base):
    __tablename__ = "villages"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    commune_id: Mapped[str] = mapped_column(ForeignKey("communes.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))


class Node(Base):
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    village_id: Mapped[str] = mapped_column(ForeignKey("villages.id"), index=True)
    key: Mapped[str] = mapped_column(String(128))  # HMAC key, hex
    seq: Mapped[int] = mapped_column(BigInteger, default=0)  # last sequence number issued
    online: Mapped[bool] = mapped_column(default=False)
    session: Mapped[int] = mapped_column(BigInteger, default=0)  # newest session seen
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger)
    fw: Mapped[str | None] = mapped_column(String(32))
    playing: Mapped[str | None] = mapped_column(String(64))  # command id now on air
    telemetry: Mapped[str | None] = mapped_column(Text)  # last telemetry message, JSON


class Command(Base):
    __tablename__ = "commands"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    op: Mapped[str] = mapped_column(String(16))
    args: Mapped[str] = mapped_column(Text)  # JSON
    title: Mapped[str] = mapped_column(String(300), default="")
    issued_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    operator: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default="sent")
    reason: Mapped[str | None] = mapped_column(String(300))
    updated_ms: Mapped[int | None] = mapped_column(BigInteger)


class AsRunRecord(Base):
    """What a node reports it actually aired: the diary's raw material."""

    __tablename__ = "asrun"
    __table_args__ = (UniqueConstraint("node_id", "rid", name="uq_asrun_node_rid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    rid: Mapped[int] = mapped_column(BigInteger)  # the node's own record id
    command_id: Mapped[str | None] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(16), default="command")
    media: Mapped[str] = mapped_column(String(500), default="")
    title: Mapped[str] = mapped_column(String(300), default="")
    start_ms: Mapped[int | None] = mapped_column(BigInteger, index=True)
    end_ms: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(300))
    received_ms: Mapped[int] = mapped_column(BigInteger)

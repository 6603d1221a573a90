"""The audit log: who did what, when and from where, for every action that changes something
(log-ins too). An entry is added in the same transaction as the change it describes, so there
is never a change without its entry or an entry for a change that did not happen."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from headend.core.models import AuditEntry

ACTION_VI = {
    "login": "Đăng nhập", "login_failed": "Đăng nhập sai", "logout": "Đăng xuất",
    "bulletin_create": "Tạo bản tin", "bulletin_approve": "Duyệt bản tin",
    "bulletin_reject": "Không duyệt bản tin", "bulletin_delete": "Xóa bản tin",
    "bulletin_import": "Nhận bản tin từ hệ thống thông tin nguồn",
    "calendar_add": "Thêm vào lịch", "calendar_move": "Dời giờ phát",
    "calendar_remove": "Bỏ khỏi lịch", "emergency": "Phát khẩn cấp",
    "user_add": "Thêm người dùng", "token_add": "Cấp mã truy cập API",
    "token_revoke": "Thu hồi mã truy cập API",
}


@dataclass(frozen=True)
class Actor:
    """Who acts, and from where (the client address, or "cli@host")."""

    username: str
    role: str
    ip: str


def entry(actor: Actor, action: str, now_ms: int, commune_id: str | None = None,
          target: str = "", detail: str = "") -> AuditEntry:
    """A row to add to the session that makes the change."""
    return AuditEntry(at_ms=now_ms, username=actor.username[:64], role=actor.role[:16],
                      action=action[:32], commune_id=commune_id, target=target[:200],
                      detail=detail, ip=actor.ip[:64])


def record(engine: Engine, actor: Actor, action: str, now_ms: int,
           commune_id: str | None = None, target: str = "", detail: str = "") -> None:
    """An entry on its own, for actions that change nothing else (log-ins)."""
    with Session(engine) as s, s.begin():
        s.add(entry(actor, action, now_ms, commune_id, target, detail))


def entries(engine: Engine, commune_ids: list[str] | None, limit: int = 200,
            before_id: int | None = None) -> list[AuditEntry]:
    """Newest first; `commune_ids` None means all, including province-level entries."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if commune_ids is not None:
        q = q.where(AuditEntry.commune_id.in_(commune_ids))
    if before_id is not None:
        q = q.where(AuditEntry.id < before_id)
    with Session(engine) as s:
        rows = list(s.scalars(q))
        s.expunge_all()
        return rows

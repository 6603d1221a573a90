"""The audit log: who did what, when and from where, for every action that changes something
(log-ins too). An entry is added in the same transaction as the change it describes, so there
is never a change without its entry or an entry for a change that did not happen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from headend.core.auth import PROVINCE
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


def filed_under(communes: Iterable[str]) -> list[str | None]:
    """Where an entry about a user (a log-in, a failed one, a log-out) is filed: under each of
    the user's communes, so each commune's page shows it; a province-wide user's (and an
    unknown name's) under none, which only the province's admin reads."""
    scope = sorted(set(communes))
    return [None] if not scope or PROVINCE in scope else list(scope)


def record_for(engine: Engine, actor: Actor, action: str, now_ms: int,
               commune_ids: Sequence[str | None], target: str = "",
               detail: str = "") -> None:
    """One entry per commune of `commune_ids`, in one transaction."""
    with Session(engine) as s, s.begin():
        s.add_all([entry(actor, action, now_ms, c, target, detail) for c in commune_ids])


def merged(rows: Sequence[AuditEntry]) -> list[tuple[AuditEntry, list[str | None]]]:
    """For a list of every commune's entries: one line for what `record_for` filed under
    several communes (neighbours with the same time, user, action and address), with its
    communes."""
    out: list[tuple[AuditEntry, list[str | None]]] = []
    for e in rows:
        if out and _same(out[-1][0], e) and e.commune_id not in out[-1][1]:
            out[-1][1].append(e.commune_id)
        else:
            out.append((e, [e.commune_id]))
    for _, communes in out:
        communes.sort(key=lambda c: c or "")
    return out


def _same(a: AuditEntry, b: AuditEntry) -> bool:
    return (a.at_ms, a.username, a.role, a.action, a.target, a.detail, a.ip) == (
        b.at_ms, b.username, b.role, b.action, b.target, b.detail, b.ip)


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

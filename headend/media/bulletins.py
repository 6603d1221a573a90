"""Bulletins: locally produced items, from draft to approved (or not), with the audit log.

The officer (or the HTTTN, through the API) creates a draft from audio the pipeline prepared
(headend/media/pipeline.py); only an approver decides on it; only approved bulletins go on the
calendar (headend/planning/calendar.py). Emergencies are sent at once and need no approval.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from headend.core.audit import Actor, entry
from headend.core.models import Bulletin, CalendarItem

if TYPE_CHECKING:
    from headend.media.pipeline import PreparedAudio

BULLETIN_KINDS = ("local_bulletin", "notice")
KIND_VI = {"local_bulletin": "Bản tin địa phương", "notice": "Thông báo",
           "emergency": "Khẩn cấp"}
LANGUAGES = {"vi": "Tiếng Việt", "tay": "Tiếng Tày", "nung": "Tiếng Nùng", "dao": "Tiếng Dao"}
STATUS_VI = {"draft": "Chờ duyệt", "approved": "Đã duyệt", "rejected": "Không duyệt"}
ORIGIN_VI = {"upload": "Tải lên", "record": "Ghi âm", "tts": "Đọc từ văn bản",
             "httttn": "Hệ thống thông tin nguồn"}
_LANGUAGE = re.compile(r"^[a-z]{2,8}$")


class BulletinError(ValueError):
    """A bulletin that cannot be created or changed; the message says why, in Vietnamese."""


@dataclass(frozen=True)
class Meta:
    """What the officer writes about a bulletin."""

    title: str
    summary: str = ""
    language: str = "vi"
    kind: str = "local_bulletin"

    def checked(self) -> Meta:
        title = " ".join(self.title.split())
        if not title:
            raise BulletinError("Hãy ghi tiêu đề cho bản tin.")
        if len(title) > 300:
            raise BulletinError("Tiêu đề dài quá (tối đa 300 ký tự).")
        if self.kind not in BULLETIN_KINDS:
            raise BulletinError(f"Loại không đúng: {self.kind!r} (bản tin hoặc thông báo).")
        if not _LANGUAGE.match(self.language):
            raise BulletinError(f"Ngôn ngữ không đúng: {self.language!r}.")
        if len(self.summary) > 2000:
            raise BulletinError("Tóm tắt dài quá (tối đa 2000 ký tự).")
        return Meta(title, self.summary.strip(), self.language, self.kind)


def create(engine: Engine, commune_id: str, actor: Actor, meta: Meta, audio: PreparedAudio,
           origin: str, now_ms: int, text: str | None = None,
           external_id: str | None = None) -> int:
    """A draft from prepared audio; returns its id. The audit entry is in the same
    transaction."""
    meta = meta.checked()
    with Session(engine) as s, s.begin():
        b = Bulletin(commune_id=commune_id, title=meta.title, summary=meta.summary,
                     language=meta.language, kind=meta.kind, origin=origin, text=text,
                     status="draft", duration_ms=audio.duration_ms, lufs=audio.lufs,
                     media=json.dumps({p: f.name for p, f in audio.files.items()}),
                     created_by=actor.username, created_ms=now_ms, external_id=external_id)
        s.add(b)
        s.flush()
        action = "bulletin_import" if origin == "httttn" else "bulletin_create"
        s.add(entry(actor, action, now_ms, commune_id, f"bản tin #{b.id}",
                    f"“{meta.title}” ({ORIGIN_VI.get(origin, origin)}, "
                    f"{audio.duration_ms / 1000:.0f} s)"))
        return b.id


def get(engine: Engine, commune_id: str, bulletin_id: int) -> Bulletin:
    with Session(engine) as s:
        b = s.get(Bulletin, bulletin_id)
        if b is None or b.commune_id != commune_id:
            raise BulletinError("Không có bản tin này.")
        s.expunge(b)
        return b


def listing(engine: Engine, commune_id: str, status: str | None = None,
            limit: int = 200) -> list[Bulletin]:
    q = (select(Bulletin).where(Bulletin.commune_id == commune_id)
         .order_by(Bulletin.created_ms.desc(), Bulletin.id.desc()).limit(limit))
    if status:
        q = q.where(Bulletin.status == status)
    with Session(engine) as s:
        rows = list(s.scalars(q))
        s.expunge_all()
        return rows


def decide(engine: Engine, commune_id: str, bulletin_id: int, actor: Actor, approve: bool,
           now_ms: int, note: str = "") -> None:
    """The approver's decision on a draft (a rejected one may be approved later)."""
    with Session(engine) as s, s.begin():
        b = s.get(Bulletin, bulletin_id)
        if b is None or b.commune_id != commune_id:
            raise BulletinError("Không có bản tin này.")
        if b.status == "approved":
            raise BulletinError("Bản tin này đã được duyệt rồi.")
        if approve and b.created_by == actor.username:
            raise BulletinError("Người làm (hoặc nhập) bản tin không tự duyệt bản tin của mình: "
                                "cần một người khác duyệt.")
        if not approve and not note.strip():
            raise BulletinError("Hãy ghi lý do không duyệt, để người làm bản tin sửa lại.")
        b.status = "approved" if approve else "rejected"
        b.decided_by, b.decided_ms, b.decision_note = actor.username, now_ms, note.strip()
        s.add(entry(actor, "bulletin_approve" if approve else "bulletin_reject", now_ms,
                    commune_id, f"bản tin #{b.id}",
                    f"“{b.title}”" + (f": {note.strip()}" if note.strip() else "")))


def delete(engine: Engine, commune_id: str, bulletin_id: int, actor: Actor,
           now_ms: int) -> None:
    """Drafts and rejected bulletins only, and none that is on the calendar."""
    with Session(engine) as s, s.begin():
        b = s.get(Bulletin, bulletin_id)
        if b is None or b.commune_id != commune_id:
            raise BulletinError("Không có bản tin này.")
        if b.status == "approved":
            raise BulletinError("Bản tin đã duyệt thì không xóa được (nó có thể đã phát và "
                                "có trong sổ nhật ký).")
        if s.scalar(select(CalendarItem.id).where(CalendarItem.bulletin_id == b.id)):
            raise BulletinError("Bản tin đang có trong lịch phát.")
        s.add(entry(actor, "bulletin_delete", now_ms, commune_id, f"bản tin #{b.id}",
                    f"“{b.title}”"))
        s.delete(b)


def media_names(b: Bulletin) -> dict[str, str]:
    return dict(json.loads(b.media or "{}"))

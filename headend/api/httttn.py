"""The HTTTN adapter: LoaXa as the provincial information-source system (Hệ thống thông tin
nguồn) sees it, under /api/httttn/v1.

Each province runs an HTTTN that sends bulletins down to the commune stations and collects
their programme, statistics and status (Decree 49/2024/NĐ-CP). No public field-level spec of
it exists, so everything HTTTN-specific lives in this module: the field names and codes below
are a documented guess in the style Vietnamese e-government systems use (camelCase Vietnamese
field names, upper-case codes without diacritics). The mapping functions are pure (LoaXa rows
in, HTTTN models out, and back for imports), so a real spec replaces this module's tables
and models, not the rest of LoaXa.

Endpoints (every one takes an API token, `Authorization: Bearer ...`, like /api/v1):

| method and path | permission | what |
| --- | --- | --- |
| GET  /xa/{maXa}/lich-phat?tuNgay&denNgay | view | the plan (default a week from today) |
| GET  /xa/{maXa}/thong-ke?tuNgay&denNgay | view | diary statistics (default the past week) |
| GET  /xa/{maXa}/trang-thai | view | loudspeaker clusters' status |
| POST /xa/{maXa}/ban-tin | make | import a bulletin as a draft (idempotent by maBanTin) |
| GET  /xa/{maXa}/ban-tin/{maBanTin} | view | an imported bulletin's approval status |

Field mapping (HTTTN ← LoaXa):

| HTTTN | LoaXa |
| --- | --- |
| maXa | commune id (e.g. "tan-lang") |
| tenXa | commune name |
| maMucPhat | programme occurrence "<slot>@<date>" |
| loaiChuongTrinh | kind, by `LOAI_CHUONG_TRINH`: vov_relay TIEP_SONG_TRUNG_UONG, ... |
| mucUuTien | class (Circular 39/2020): THUONG, UU_TIEN, KHAN_CAP |
| tieuDe, tomTat, ngonNgu, nguon | title, summary, language (vi, tay, nung, dao), source |
| thoiGianBatDau, thoiGianKetThuc | start, end: ISO 8601 with the commune's offset |
| thoiLuongGiay | duration in seconds |
| maThon, tenThon | village ids, names |
| choAmThanh | a planned recorded item that has no audio yet |
| ketQua | outcome: DA_PHAT, PHAT_MOT_PHAN, KHONG_PHAT_DUOC, BO_LO, CHUA_BAO_CAO, THEO_LICH |
| maCum, trucTuyen, lanLienLacCuoi | node id, online, last seen |
| phienBanPhanMem, amLuong, doManhTinHieu, dangPhat | firmware, volume, signal dBm, playing |
| canhBao | open alarms: MAT_KET_NOI, LOI_AMPLI, SONG_YEU, LECH_GIO, BO_LO_PHAT, ... |

Import (HTTTN → LoaXa), JSON body `BanTinNhap`:

| HTTTN | LoaXa |
| --- | --- |
| maBanTin (required) | bulletin.external_id; the same maBanTin again returns the same bulletin |
| maXa (optional, must equal the path) | commune id |
| tieuDe, tomTat | title, summary |
| ngonNgu | language (default vi) |
| loaiBanTin | BAN_TIN_DIA_PHUONG (or BAN_TIN) → local_bulletin, THONG_BAO → notice |
| tepAmThanh | audio, base64 (a data: URL prefix is allowed), at most MAX_BYTES decoded |
| tenTep | the audio's file name: its suffix gives the type, else the bytes are sniffed |
| noiDung | text to speak when there is no audio |
| coNhacHieu | a chime before and after |
| trangThai (answer) | CHO_DUYET (draft), DA_DUYET (approved), KHONG_DUYET (rejected) |

Imports are always drafts with origin "httttn": the commune's approver decides on them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePath
from typing import Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from headend.api.common import (
    ERRORS,
    PLAN_MAX_DAYS,
    SECURITY,
    ErrorOut,
    PlanItemOut,
    day_range,
    diary_lines,
    iso,
    known_commune,
    plan_items,
    store_bulletin,
)
from headend.core.auth import MAKE, VIEW, Principal
from headend.core.models import Bulletin
from headend.diary.reading import NodeRow, commune_timezone, node_rows
from headend.diary.reconciliation import (
    AIRED,
    FAILED,
    MISSED,
    NO_REPORT,
    PARTIAL,
    PLANNED,
    CommuneInfo,
    ProgrammeLine,
)
from headend.diary.reconciliation import MAX_DAYS as DIARY_MAX_DAYS
from headend.media import bulletins
from headend.media.bulletins import Meta
from headend.media.probe import MAX_BYTES
from headend.web.context import WebContext
from headend.web.uploads import declared_too_large, temp_dir, too_large_vi

PREFIX: Final = "/api/httttn/v1"
TAG: Final = "HTTTN (hệ thống thông tin nguồn)"
# Base64 of the largest audio, and room for the other fields.
BODY_MAX: Final = 4 * math.ceil(MAX_BYTES / 3) + 256 * 1024

LOAI_CHUONG_TRINH: Final = {
    "vov_relay": "TIEP_SONG_TRUNG_UONG", "province_relay": "TIEP_SONG_TINH",
    "local_bulletin": "BAN_TIN_DIA_PHUONG", "notice": "THONG_BAO", "emergency": "KHAN_CAP",
    "test": "THU_LOA"}
MUC_UU_TIEN: Final = ("THUONG", "UU_TIEN", "KHAN_CAP")  # index = LoaXa priority
KET_QUA: Final = {AIRED: "DA_PHAT", PARTIAL: "PHAT_MOT_PHAN", FAILED: "KHONG_PHAT_DUOC",
                  MISSED: "BO_LO", NO_REPORT: "CHUA_BAO_CAO", PLANNED: "THEO_LICH"}
CANH_BAO: Final = {
    "node_offline": "MAT_KET_NOI", "amp_fault": "LOI_AMPLI", "weak_signal": "SONG_YEU",
    "clock_offset": "LECH_GIO", "broadcast_missed": "BO_LO_PHAT",
    "relay_failed": "LOI_TIEP_SONG", "plan_rejected": "LICH_BI_TU_CHOI",
    "village_silent": "THON_MAT_LOA", "temperature": "QUA_NHIET"}
TRANG_THAI_BAN_TIN: Final = {"draft": "CHO_DUYET", "approved": "DA_DUYET",
                             "rejected": "KHONG_DUYET"}
LOAI_BAN_TIN_NHAP: Final = {"BAN_TIN_DIA_PHUONG": "local_bulletin",
                            "BAN_TIN": "local_bulletin", "THONG_BAO": "notice"}
IMPORT_FIELDS: Final = frozenset({"maXa", "maBanTin", "tieuDe", "tomTat", "ngonNgu",
                                  "loaiBanTin", "noiDung", "tepAmThanh", "tenTep",
                                  "coNhacHieu"})
EXTERNAL_ID_MAX: Final = 100  # bulletins.external_id


class HttttnError(ValueError):
    """An HTTTN request LoaXa cannot take: the status and a Vietnamese message."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# --- The HTTTN's shapes ------------------------------------------------------------------------

class MucPhat(BaseModel):
    maMucPhat: str
    loaiChuongTrinh: str
    mucUuTien: str
    tieuDe: str
    tomTat: str
    ngonNgu: str
    nguon: str
    thoiGianBatDau: str
    thoiGianKetThuc: str
    thoiLuongGiay: int
    maThon: list[str]
    tenThon: list[str]
    choAmThanh: bool


class LichPhat(BaseModel):
    maXa: str
    tuNgay: date
    denNgay: date
    muiGio: str
    soMucPhat: int
    danhSachMucPhat: list[MucPhat]


class ThongKeLoai(BaseModel):
    loaiChuongTrinh: str
    soMuc: int
    soMucDaPhat: int = Field(description="Đã phát hoặc phát một phần")
    soGioDaPhat: float


class ThongKeNgonNgu(BaseModel):
    ngonNgu: str
    soMucDaPhat: int
    soGioDaPhat: float


class ThongKeThon(BaseModel):
    maThon: str
    tenThon: str
    soMucCanPhat: int = Field(description="Mục đã đến giờ phát ở thôn")
    soMucDaPhat: int


class ThongKe(BaseModel):
    maXa: str
    tenXa: str
    tuNgay: date
    denNgay: date
    tongSoMuc: int
    soMucDaPhat: int
    soMucPhatMotPhan: int
    soMucKhongPhat: int = Field(description="Không phát được hoặc bỏ lỡ")
    soMucChuaBaoCao: int
    soMucSapPhat: int = Field(description="Chưa đến giờ")
    soGioDaPhat: float
    soBanTinDiaPhuongDaPhat: int
    theoLoai: list[ThongKeLoai]
    theoNgonNgu: list[ThongKeNgonNgu]
    theoThon: list[ThongKeThon]


class CumLoa(BaseModel):
    maCum: str
    maThon: str
    tenThon: str
    trucTuyen: bool
    lanLienLacCuoi: str | None
    phienBanPhanMem: str | None
    amLuong: int | None
    doManhTinHieu: int | None = Field(description="dBm")
    dangPhat: str | None
    canhBao: list[str]


class TrangThai(BaseModel):
    maXa: str
    tenXa: str
    thoiDiem: str
    tongSoCum: int
    soCumTrucTuyen: int
    tongSoThon: int
    soThonCoCumTrucTuyen: int
    danhSachCum: list[CumLoa]


class BanTinNhap(BaseModel):
    """The import body (documentation; `parse_import` reads it)."""

    maBanTin: str = Field(max_length=EXTERNAL_ID_MAX, description="Mã bản tin của HTTTN")
    maXa: str | None = Field(None, description="Nếu có, phải trùng với xã trên đường dẫn")
    tieuDe: str = Field(max_length=300)
    tomTat: str = Field("", max_length=2000)
    ngonNgu: str = Field("vi", description="vi, tay, nung, dao")
    loaiBanTin: str = Field("BAN_TIN_DIA_PHUONG", description="BAN_TIN_DIA_PHUONG, THONG_BAO")
    tepAmThanh: str | None = Field(None, description=f"Âm thanh, base64 (tối đa "
                                                     f"{MAX_BYTES // 2**20} MB)")
    tenTep: str | None = Field(None, description="Tên tệp (đuôi mp3, wav, m4a, ogg, ...)")
    noiDung: str | None = Field(None, description="Văn bản để đọc khi không có âm thanh")
    coNhacHieu: bool = Field(False, description="Nhạc hiệu trước và sau")


class KetQuaNhap(BaseModel):
    maBanTin: str
    maXa: str
    maBanTinLoaXa: int
    trangThai: str
    daTonTai: bool = Field(description="Đã nhận trước đó: không tạo bản tin mới")


class TrangThaiBanTin(BaseModel):
    maBanTin: str
    maXa: str
    maBanTinLoaXa: int
    tieuDe: str
    trangThai: str
    nguoiDuyet: str | None
    thoiGianDuyet: str | None
    ghiChu: str | None


# --- Mapping (pure) ------------------------------------------------------------------------

def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def muc_phat(item: PlanItemOut) -> MucPhat:
    return MucPhat(
        maMucPhat=item.occurrence,
        loaiChuongTrinh=LOAI_CHUONG_TRINH.get(item.kind, item.kind.upper()),
        mucUuTien=MUC_UU_TIEN[min(max(item.priority, 0), 2)], tieuDe=item.title,
        tomTat=item.summary, ngonNgu=item.language, nguon=item.source,
        thoiGianBatDau=item.start_local, thoiGianKetThuc=item.end_local,
        thoiLuongGiay=max(0, round((item.end_ms - item.start_ms) / 1000)),
        maThon=list(item.villages), tenThon=list(item.village_names),
        choAmThanh=item.placeholder)


def lich_phat(commune_id: str, first: date, last: date, timezone: str,
              items: Sequence[PlanItemOut]) -> LichPhat:
    rows = [muc_phat(i) for i in items]
    return LichPhat(maXa=commune_id, tuNgay=first, denNgay=last, muiGio=timezone,
                    soMucPhat=len(rows), danhSachMucPhat=rows)


def thong_ke(info: CommuneInfo, first: date, last: date,
             lines: Sequence[ProgrammeLine]) -> ThongKe:
    """Statistics of the diary lines of first..last: items by outcome, hours aired by kind and
    language, and per village how many of the items due there it aired."""
    outcomes = Counter(line.outcome for line in lines)
    kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])  # items, aired, seconds
    languages: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    village_id = {name: vid for vid, name in info.villages.items()}
    due: Counter[str] = Counter()
    aired_in: Counter[str] = Counter()
    seconds = 0.0
    for line in lines:
        k = kinds[line.kind]
        k[0] += 1
        if line.outcome in (AIRED, PARTIAL):
            s = line.duration_s or 0
            seconds += s
            k[1] += 1
            k[2] += s
            languages[line.language][0] += 1
            languages[line.language][1] += s
        for v in line.villages:
            if v.outcome == PLANNED:
                continue
            due[v.village] += 1
            aired_in[v.village] += v.outcome in (AIRED, PARTIAL)
    order = list(info.villages.values()) + sorted(set(due) - set(info.villages.values()))
    return ThongKe(
        maXa=info.id, tenXa=info.name, tuNgay=first, denNgay=last, tongSoMuc=len(lines),
        soMucDaPhat=outcomes[AIRED], soMucPhatMotPhan=outcomes[PARTIAL],
        soMucKhongPhat=outcomes[FAILED] + outcomes[MISSED],
        soMucChuaBaoCao=outcomes[NO_REPORT], soMucSapPhat=outcomes[PLANNED],
        soGioDaPhat=_hours(seconds),
        soBanTinDiaPhuongDaPhat=int(kinds.get("local_bulletin", [0, 0, 0.0])[1]),
        theoLoai=[ThongKeLoai(loaiChuongTrinh=LOAI_CHUONG_TRINH.get(kind, kind.upper()),
                              soMuc=int(v[0]), soMucDaPhat=int(v[1]), soGioDaPhat=_hours(v[2]))
                  for kind, v in sorted(kinds.items())],
        theoNgonNgu=[ThongKeNgonNgu(ngonNgu=lang, soMucDaPhat=int(v[0]),
                                    soGioDaPhat=_hours(v[1]))
                     for lang, v in sorted(languages.items())],
        theoThon=[ThongKeThon(maThon=village_id.get(name, ""), tenThon=name,
                              soMucCanPhat=due[name], soMucDaPhat=aired_in[name])
                  for name in order])


def cum_loa(node: NodeRow, tz: ZoneInfo) -> CumLoa:
    dbm = node.telemetry.get("signal_dbm")
    return CumLoa(
        maCum=node.id, maThon=node.village_id, tenThon=node.village, trucTuyen=node.online,
        lanLienLacCuoi=iso(node.last_seen_ms, tz), phienBanPhanMem=node.fw, amLuong=node.volume,
        doManhTinHieu=dbm if isinstance(dbm, int) and not isinstance(dbm, bool) else None,
        dangPhat=node.playing,
        canhBao=[CANH_BAO.get(kind, kind.upper()) for kind in node.alarms])


def trang_thai(commune_id: str, name: str, now_ms: int, tz: ZoneInfo,
               nodes: Sequence[NodeRow]) -> TrangThai:
    villages = {n.village_id for n in nodes}
    return TrangThai(
        maXa=commune_id, tenXa=name, thoiDiem=iso(now_ms, tz) or "", tongSoCum=len(nodes),
        soCumTrucTuyen=sum(n.online for n in nodes), tongSoThon=len(villages),
        soThonCoCumTrucTuyen=len({n.village_id for n in nodes if n.online}),
        danhSachCum=[cum_loa(n, tz) for n in nodes])


@dataclass(frozen=True)
class ImportRequest:
    """An HTTTN bulletin, in LoaXa's terms."""

    external_id: str
    meta: Meta
    audio_b64: str | None  # without any data: prefix or whitespace
    filename: str
    text: str | None
    chime: bool


def _text(payload: Mapping[str, Any], key: str, default: str = "") -> str:
    value = payload.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise HttttnError(f"Trường “{key}” phải là chuỗi ký tự.")
    return value


def parse_import(payload: object, commune_id: str) -> ImportRequest:
    """The import body as LoaXa's bulletin; HttttnError says in Vietnamese what is wrong.
    The metadata is checked by bulletins.Meta when the draft is made."""
    if not isinstance(payload, Mapping):
        raise HttttnError("Dữ liệu phải là một đối tượng JSON.")
    unknown = sorted(set(payload) - IMPORT_FIELDS)
    if unknown:
        raise HttttnError(f"Trường không có trong đặc tả: {', '.join(unknown)[:200]}.")
    external_id = _text(payload, "maBanTin").strip()
    if not external_id:
        raise HttttnError("Thiếu mã bản tin (maBanTin).")
    if len(external_id) > EXTERNAL_ID_MAX:
        raise HttttnError(f"Mã bản tin dài quá (tối đa {EXTERNAL_ID_MAX} ký tự).")
    ma_xa = _text(payload, "maXa").strip()
    if ma_xa and ma_xa != commune_id:
        raise HttttnError(f"Mã xã trong dữ liệu ({ma_xa[:40]}) khác xã trên đường dẫn "
                          f"({commune_id}).")
    loai = _text(payload, "loaiBanTin", "BAN_TIN_DIA_PHUONG").strip().upper()
    if loai not in LOAI_BAN_TIN_NHAP:
        raise HttttnError(f"Loại bản tin không đúng: {loai[:40]!r} (BAN_TIN_DIA_PHUONG hoặc "
                          "THONG_BAO).")
    meta = Meta(_text(payload, "tieuDe"), _text(payload, "tomTat"),
                _text(payload, "ngonNgu", "vi").strip().lower() or "vi", LOAI_BAN_TIN_NHAP[loai])
    audio = _text(payload, "tepAmThanh").strip() or None
    if audio is not None and audio.startswith("data:"):
        audio = audio.partition(",")[2]
    if audio is not None:
        audio = "".join(audio.split())
    text = _text(payload, "noiDung").strip() or None
    if (audio is None) == (text is None):
        raise HttttnError("Hãy gửi đúng một trong hai: tệp âm thanh (tepAmThanh, base64) "
                          "hoặc văn bản để đọc (noiDung).")
    chime = payload.get("coNhacHieu", False)
    if not isinstance(chime, bool):
        raise HttttnError("Trường “coNhacHieu” phải là true hoặc false.")
    filename = PurePath(_text(payload, "tenTep").replace("\\", "/")).name[:200]
    return ImportRequest(external_id, meta, audio, filename, text, chime)


_MAGIC: Final = ((b"RIFF", 0, ".wav"), (b"ID3", 0, ".mp3"), (b"OggS", 0, ".ogg"),
                 (b"ftyp", 4, ".m4a"), (b"\x1a\x45\xdf\xa3", 0, ".webm"))


def guess_suffix(head: bytes) -> str:
    """The file type from its first bytes, for an import without a file name ("" if none)."""
    for magic, at, suffix in _MAGIC:
        if head[at:at + len(magic)] == magic:
            return suffix
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return ".mp3"  # an MPEG audio frame header
    return ""


def decode_audio(b64: str, path: Path, limit: int = MAX_BYTES) -> int:
    """Base64 to `path`, a block at a time; the number of bytes written. HttttnError for what
    is not base64 (422) or decodes to more than `limit` bytes (413)."""
    if len(b64) % 4 or not b64.isascii():
        raise HttttnError("Tệp âm thanh (tepAmThanh) không phải base64 hợp lệ.")
    if len(b64) // 4 * 3 - b64[-2:].count("=") > limit:
        raise HttttnError(too_large_vi(limit), 413)
    block = 4 * 256 * 1024
    size = 0
    with path.open("wb") as out:
        for i in range(0, len(b64), block):
            try:
                data = base64.b64decode(b64[i:i + block], validate=True)
            except (binascii.Error, ValueError):
                raise HttttnError("Tệp âm thanh (tepAmThanh) không phải base64 hợp lệ.") \
                    from None
            size += len(data)
            out.write(data)
    return size


def ket_qua_nhap(b: Bulletin, existed: bool) -> KetQuaNhap:
    return KetQuaNhap(maBanTin=b.external_id or "", maXa=b.commune_id, maBanTinLoaXa=b.id,
                      trangThai=TRANG_THAI_BAN_TIN.get(b.status, b.status.upper()),
                      daTonTai=existed)


def trang_thai_ban_tin(b: Bulletin, tz: ZoneInfo) -> TrangThaiBanTin:
    return TrangThaiBanTin(
        maBanTin=b.external_id or "", maXa=b.commune_id, maBanTinLoaXa=b.id, tieuDe=b.title,
        trangThai=TRANG_THAI_BAN_TIN.get(b.status, b.status.upper()), nguoiDuyet=b.decided_by,
        thoiGianDuyet=iso(b.decided_ms, tz), ghiChu=b.decision_note)


# --- The router ------------------------------------------------------------------------------

def imported(engine: Engine, commune_id: str, external_id: str) -> Bulletin | None:
    """The bulletin the HTTTN sent with this maBanTin, if LoaXa has it."""
    with Session(engine) as s:
        b = s.scalars(select(Bulletin).where(
            Bulletin.commune_id == commune_id, Bulletin.origin == "httttn",
            Bulletin.external_id == external_id).order_by(Bulletin.id).limit(1)).first()
        if b is not None:
            s.expunge(b)
        return b


async def _read_json(request: Request) -> object:
    if declared_too_large(request.headers.get("content-length"), BODY_MAX, slack=0):
        raise HttttnError(too_large_vi(MAX_BYTES), 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_MAX:
            raise HttttnError(too_large_vi(MAX_BYTES), 413)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HttttnError("Dữ liệu gửi lên không phải JSON hợp lệ.", 400) from None


def httttn_router(ctx: WebContext) -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=[TAG], dependencies=SECURITY, responses=ERRORS)
    me_dep = Depends(ctx.user)
    first_q = Query(None, alias="tuNgay", description="YYYY-MM-DD")
    last_q = Query(None, alias="denNgay", description="YYYY-MM-DD")
    # One import at a time, so the same maBanTin sent twice at once makes one draft.
    import_lock = asyncio.Lock()

    @r.get("/xa/{maXa}/lich-phat", summary="Lịch phát của xã (the plan, HTTTN shape)")
    def plan(maXa: str, tuNgay: str | None = first_q, denNgay: str | None = last_q,
             me: Principal = me_dep) -> LichPhat:
        me.check(VIEW, maXa)
        tz = commune_timezone(ctx.engine, maXa)
        d0, d1 = day_range(tuNgay, denNgay, ctx.today(tz), PLAN_MAX_DAYS, ahead=True)
        tz, items = plan_items(ctx, maXa, d0, d1)
        return lich_phat(maXa, d0, d1, tz.key, items)

    @r.get("/xa/{maXa}/thong-ke", summary="Thống kê sổ nhật ký (diary statistics)")
    def stats(maXa: str, tuNgay: str | None = first_q, denNgay: str | None = last_q,
              me: Principal = me_dep) -> ThongKe:
        me.check(VIEW, maXa)
        tz = commune_timezone(ctx.engine, maXa)
        d0, d1 = day_range(tuNgay, denNgay, ctx.today(tz), DIARY_MAX_DAYS, ahead=False)
        info, lines = diary_lines(ctx, maXa, d0, d1)
        return thong_ke(info, d0, d1, lines)

    @r.get("/xa/{maXa}/trang-thai", summary="Trạng thái cụm loa (node status)")
    def status(maXa: str, me: Principal = me_dep) -> TrangThai:
        me.check(VIEW, maXa)
        name = known_commune(ctx, maXa)
        return trang_thai(maXa, name, ctx.now(), commune_timezone(ctx.engine, maXa),
                          node_rows(ctx.engine, [maXa]))

    @r.post("/xa/{maXa}/ban-tin", status_code=201,
            summary="Nhận bản tin từ HTTTN (import as a draft; idempotent by maBanTin)",
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": BanTinNhap.model_json_schema()}}}},
            responses={200: {"model": KetQuaNhap, "description": "Already imported"},
                       413: {"model": ErrorOut}, 422: {"model": ErrorOut}})
    async def import_bulletin(request: Request, response: Response, maXa: str,
                              me: Principal = me_dep) -> KetQuaNhap:
        me.check(MAKE, maXa)
        ctx.check_csrf(request, me, None)  # a session needs X-CSRF-Token; a token none
        await run_in_threadpool(known_commune, ctx, maXa)
        try:
            req = parse_import(await _read_json(request), maXa)
            async with import_lock:
                old = await run_in_threadpool(imported, ctx.engine, maXa, req.external_id)
                if old is not None:
                    response.status_code = 200
                    return ket_qua_nhap(old, True)
                with temp_dir() as tmp:
                    audio: Path | None = None
                    filename = req.filename
                    if req.audio_b64 is not None:
                        audio = tmp / "audio"
                        await run_in_threadpool(decode_audio, req.audio_b64, audio)
                        if not PurePath(filename).suffix:
                            with audio.open("rb") as f:
                                filename = "httttn" + guess_suffix(f.read(16))
                    bid = await store_bulletin(
                        ctx, request, me, maXa, req.meta, "httttn", audio=audio,
                        filename=filename, text=req.text, chime=req.chime,
                        external_id=req.external_id)
        except HttttnError as e:
            raise HTTPException(e.status, str(e)) from None
        b = await run_in_threadpool(bulletins.get, ctx.engine, maXa, bid)
        return ket_qua_nhap(b, False)

    @r.get("/xa/{maXa}/ban-tin/{maBanTin}", summary="Trạng thái duyệt của bản tin đã gửi",
           responses={404: {"model": ErrorOut}})
    def bulletin_status(maXa: str, maBanTin: str, me: Principal = me_dep) -> TrangThaiBanTin:
        me.check(VIEW, maXa)
        known_commune(ctx, maXa)
        b = imported(ctx.engine, maXa, maBanTin)
        if b is None:
            raise HTTPException(404, "Không có bản tin với mã này.")
        return trang_thai_ban_tin(b, commune_timezone(ctx.engine, maXa))

    return r

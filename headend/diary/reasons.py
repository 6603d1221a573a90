"""What the diary says about why a village did not air an item, and what aired: in Vietnamese.

Nodes report reasons as short English codes and phrases (firmware/protocol.py's R_* codes,
"pre-empted by emergency", "stream: [Errno 104] ...", "primary: stream ended; backup: ...");
the headend adds its own for commands that never reached a node. The diary is read by an
officer and an assessor, so every known phrase becomes Vietnamese here, once; a technical
detail that has no translation (an OS error) follows in brackets after "chi tiết kỹ thuật".
"""

from __future__ import annotations

import re

from firmware import protocol

# Reasons the headend gives for a command a node never answered.
OFFLINE_WHEN_SENT = "offline_when_sent"  # the node was not connected when it was sent
NO_ANSWER = "no_answer"  # connected, but nothing came back before the command expired
STARTED_NO_REPORT = "started_no_report"  # it started, its record has not arrived yet
AMP_FAULT = protocol.R_AMP_FAULT  # the amplifier did not drive the speakers (current sensor)
NOT_VERIFIED = protocol.R_NOT_VERIFIED  # a board without a current sensor: played, unverified

CODES_VI: dict[str, str] = {
    protocol.R_EXPIRED: "lệnh đã hết hạn khi cụm loa nhận được (mất kết nối lúc gửi)",
    protocol.R_QUIET: "đang trong giờ nghỉ của thôn",
    protocol.R_BUSY: "đang phát tin khẩn cấp",
    protocol.R_ON_AIR: "đang phát",
    protocol.R_SAFE_MODE: "cụm loa đang ở chế độ an toàn (khởi động lại liên tục)",
    protocol.R_REPLAY: "lệnh bị gửi lặp lại, cụm loa từ chối",
    protocol.R_SIGNATURE: "chữ ký lệnh không hợp lệ",
    protocol.R_MALFORMED: "lệnh hỏng",
    protocol.R_OVERSIZED: "lệnh quá lớn",
    protocol.R_VERSION: "phiên bản lệnh không hỗ trợ",
    protocol.R_WRONG_NODE: "lệnh gửi nhầm cụm loa",
    protocol.R_NOT_YET_VALID: "lệnh chưa đến giờ hiệu lực (đồng hồ cụm loa lệch)",
    protocol.R_UNKNOWN_OP: "cụm loa không biết lệnh này",
    protocol.R_BAD_ARGS: "tham số lệnh sai",
    protocol.R_HOST: "địa chỉ âm thanh không được phép",
    OFFLINE_WHEN_SENT: "cụm loa mất kết nối khi gửi lệnh",
    NO_ANSWER: "cụm loa không trả lời",
    STARTED_NO_REPORT: "đã bắt đầu phát, chưa có báo cáo",
    AMP_FAULT: "ampli không đẩy ra loa (lỗi ampli)",
    NOT_VERIFIED: "đã phát, chưa kiểm chứng được ampli (bo mạch không đo dòng)",
    "stopped": "bị dừng giữa chừng",
    "stopped before start": "bị dừng trước khi phát",
    "stopped by reboot": "bị dừng do khởi động lại",
    "stream ended early": "nguồn phát bị ngắt giữa chừng",
    "stream ended": "luồng âm thanh bị ngắt",
    "stream ended before the join point": "luồng âm thanh bị ngắt trước điểm nối",
    "eof": "luồng âm thanh bị ngắt",
    "media shorter than the slot": "bản ghi ngắn hơn khung giờ",
    "media ended early": "bản ghi kết thúc sớm",
    "no stream": "không có luồng",
    "stream": "luồng âm thanh",
}

PREEMPTED_BY_VI: dict[str, str] = {
    "emergency": "tin khẩn cấp", "command": "lệnh phát", "plan item": "mục lịch phát",
    "reboot": "khởi động lại", "local test": "thử loa tại chỗ",
}
SOURCE_ROLE_VI: dict[str, str] = {
    "primary": "luồng chính", "backup": "luồng dự phòng", "fallback": "bản ghi dự phòng",
    "cache": "bản lưu trên cụm loa", "stream": "luồng", "media": "bản ghi",
}
# "<what>: <detail>" phrases whose detail is an error text: the prefix is said in Vietnamese.
_PREFIX_VI = {
    "stream": "lỗi luồng âm thanh", "media": "lỗi bản ghi", "audio": "lỗi phát âm thanh",
    "error": "lỗi", "media not cached": "bản ghi chưa tải về cụm loa",
}
_TECH = "chi tiết kỹ thuật"


def reason_vi(reason: str | None) -> str | None:
    """The reason in Vietnamese (None stays None)."""
    if reason is None:
        return None
    text = reason.strip()
    if not text:
        return None
    if text in CODES_VI:
        return CODES_VI[text]
    if text.startswith("pre-empted by "):
        by = text[len("pre-empted by "):]
        return f"bị ngắt để phát {PREEMPTED_BY_VI.get(by, by)}"
    if "; " in text:  # several sources tried in turn: "primary: ...; backup: ..."
        return "; ".join(reason_vi(part) or part for part in text.split("; "))
    m = re.match(r"^media not cached \((.*)\)$", text)
    if m:
        return f"{_PREFIX_VI['media not cached']} ({_TECH}: {m.group(1)})"
    head, sep, rest = text.partition(": ")
    if sep:
        if head in _PREFIX_VI:  # "stream: [Errno 104] ..."
            said = CODES_VI.get(rest)
            return said if said else f"{_PREFIX_VI[head]} ({_TECH}: {rest})"
        if head in SOURCE_ROLE_VI:  # "primary: stream ended"
            return f"{SOURCE_ROLE_VI[head]}: {reason_vi(rest)}"
    m = re.match(r"^node reported outcome (.*)$", text)
    if m:
        return f"cụm loa báo kết quả không rõ ({_TECH}: {m.group(1)})"
    return text


def tone_vi(media: str) -> str | None:
    """"tone:1000Hz" -> "Âm thử 1 kHz"; None for anything else."""
    m = re.match(r"^tone:(\d+)Hz$", media)
    if not m:
        return None
    hz = int(m.group(1))
    return f"Âm thử {hz / 1000:g} kHz".replace(".", ",") if hz >= 1000 else f"Âm thử {hz} Hz"

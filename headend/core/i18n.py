"""English for the web pages; Vietnamese stays the default.

Templates wrap their Vietnamese text in `_("...")`; in English `_` looks the text up in `EN`
(and falls back to the Vietnamese when an entry is missing). Words the pages get from Python
(a bulletin's status, a role, a kind of programme...) go through `_` too, so they have
entries here; messages composed in Python (a refused form, a calendar conflict) stay
Vietnamese. A few words need a different English in one place: `_("Bản tin", "one")`
finds `EN_CONTEXT[("one", "Bản tin")]` first.

The language is a cookie set by GET /lang/{code}; without it pages are Vietnamese. The
browser's Accept-Language is not used: an officer's phone may well be set to English.
"""

from __future__ import annotations

from typing import Any, Final, Protocol
from urllib.parse import quote

from starlette.requests import Request

LANGUAGES: Final = ("vi", "en")
DEFAULT: Final = "vi"
COOKIE: Final = "loaxa_lang"
COOKIE_MAX_AGE: Final = 365 * 24 * 3600
# Each language's name in itself, for the switch.
NAMES: Final = {"vi": "Tiếng Việt", "en": "English"}


class Translate(Protocol):
    def __call__(self, text: str, context: str = "") -> str: ...


EN: Final[dict[str, str]] = {
    # Header, log-in, home
    "Đài truyền thanh xã": "Commune radio station",
    "Đài truyền thanh {commune}": "Radio station of {commune}",
    "Các xã": "Communes",
    "Lịch phát": "Schedule",
    "Bản tin": "Bulletins",
    "Khẩn cấp": "Emergency",
    "Cụm loa": "Loudspeaker clusters",
    "Sổ nhật ký": "Broadcast diary",
    "Nhật ký thao tác": "Audit log",
    "Tình trạng": "Health",
    "Đăng xuất": "Log out",
    "Đăng nhập": "Log in",
    "Đăng nhập để làm lịch phát, bản tin và xem sổ nhật ký.":
        "Log in to manage the schedule and bulletins and to read the broadcast diary.",
    "Tên đăng nhập": "Username",
    "Mật khẩu": "Password",
    "Quên mật khẩu? Hãy nhờ quản trị viên đặt lại (lệnh":
        "Forgot your password? Ask an administrator to reset it (command",
    "Trang chính": "Home",
    "Về trang chính": "Back to the home page",
    "Mã lỗi {status}": "Error code {status}",
    # Audit log
    "Ai đã làm gì, lúc nào, từ máy nào. Không sửa, không xóa được.":
        "Who did what, when, and from which address. Entries cannot be changed or deleted.",
    "Lúc": "Time",
    "Người": "User",
    "Vai trò": "Role",
    "Việc": "Action",
    "Đối tượng": "Subject",
    "Chi tiết": "Details",
    "Từ máy": "From",
    "Chưa có thao tác nào.": "No actions recorded yet.",
    "Cũ hơn": "Older",
    # Bulletins
    "Trạng thái": "Status",
    "Trạng thái:": "Status:",
    "Loại": "Type",
    "Loại:": "Type:",
    "Ngôn ngữ": "Language",
    "Ngôn ngữ:": "Language:",
    "Dài": "Length",
    "Dài:": "Length:",
    "Cách làm": "Method",
    "Cách làm:": "Method:",
    "Người làm": "Made by",
    "Người làm:": "Made by:",
    "Người duyệt": "Reviewed by",
    "Tóm tắt:": "Summary:",
    "Văn bản đã đọc": "Text that was read",
    "Độ to đã chuẩn hóa: {lufs} LUFS (EBU R128).":
        "Loudness normalised to {lufs} LUFS (EBU R128).",
    "Duyệt bản tin": "Approve bulletin",
    "Đã nghe và đồng ý cho phát bản tin này.":
        "I have listened to this bulletin and agree that it may be broadcast.",
    "Duyệt": "Approve",
    "Lý do không duyệt": "Reason for rejecting",
    "Không duyệt": "Reject",
    "Đưa vào lịch phát": "Add to the schedule",
    "Xóa bản tin này?": "Delete this bulletin?",
    "Xóa bản tin": "Delete bulletin",
    "Tất cả bản tin": "All bulletins",
    "Chưa có bản tin nào.": "No bulletins yet.",
    "Làm bản tin mới": "Make a new bulletin",
    "Tiêu đề": "Title",
    "Tiêu đề:": "Title:",
    "Tóm tắt (ghi vào sổ nhật ký)": "Summary (written into the broadcast diary)",
    "Tải tệp âm thanh lên": "Upload an audio file",
    "Ghi âm bằng micrô": "Record with the microphone",
    "Gõ văn bản, máy đọc": "Type a text for the computer to read out",
    "Tệp âm thanh": "Audio file",
    "MP3, WAV, M4A hoặc OGG; dài tối đa 30 phút, nặng tối đa {mb} MB.":
        "MP3, WAV, M4A or OGG; at most 30 minutes long and {mb} MB in size.",
    "Ghi âm": "Recording",
    "Bắt đầu ghi": "Start recording",
    "Dừng": "Stop",
    "Cần trình duyệt cho phép dùng micrô.":
        "The browser must be allowed to use the microphone.",
    "Văn bản để máy đọc": "Text for the computer to read out",
    "Ví dụ: Kính thưa bà con, ...": "For example: Kính thưa bà con, ... (in Vietnamese)",
    "Giọng đọc tiếng Việt (eSpeak NG). Tối đa 5000 ký tự, khoảng 10 phút.":
        "Vietnamese voice (eSpeak NG). At most 5000 characters, about 10 minutes.",
    "Có nhạc hiệu mở đầu và kết thúc": "Opening and closing jingle",
    "Máy chủ tự chuẩn hóa độ to (EBU R128), cắt khoảng lặng đầu và cuối, và chuyển sang "
    "định dạng cho từng loại cụm loa. Bản tin mới cần trưởng ban biên tập duyệt trước khi "
    "phát.":
        "The server normalises the loudness (EBU R128), trims silence at the start and end, "
        "and converts the audio for each type of loudspeaker cluster. A new bulletin must be "
        "approved by the editorial board head before it can be broadcast.",
    "Tạo bản tin": "Create bulletin",
    "Trình duyệt này không ghi âm được; hãy tải tệp lên.":
        "This browser cannot record; please upload a file instead.",
    "Đã ghi {n} giây. Nghe lại rồi bấm “Tạo bản tin”.":
        "Recorded {n} seconds. Listen to it, then press “Create bulletin”.",
    "Đang ghi… {n} giây": "Recording… {n} seconds",
    "Không mở được micrô (chưa cho phép?).":
        "Could not open the microphone (permission not given?).",
    # Schedule (calendar)
    "Tiêu chí 8.3": "Criterion 8.3",
    "Tiêu chí 8.3 – tuần {first}–{last}": "Criterion 8.3 – week {first}–{last}",
    "Tiếp sóng VOV": "VOV relay",
    "Tiếp sóng VOV:": "VOV relay:",
    "Tiếp sóng Đài tỉnh": "Provincial station relay",
    "Đài tỉnh:": "Provincial station:",
    "Tin tự sản xuất": "Local news",
    "Tin tự sản xuất:": "Local news:",
    "ngày": "days",
    "tin": "items",
    "giờ": "hours",
    "Đạt": "Met",
    "Chưa đạt": "Not met",
    "Tuần trước": "Previous week",
    "Tuần {first} – {last}": "Week {first} – {last}",
    "Tuần sau": "Next week",
    "Tuần này": "This week",
    "Thông báo": "Notice",
    "chưa có bản ghi": "not recorded yet",
    "Dời / bỏ": "Move / remove",
    "Ngày mới": "New date",
    "Giờ mới": "New time",
    "Dời": "Move",
    "Bỏ “{title}” ngày {day} khỏi lịch?": "Remove “{title}” on {day} from the schedule?",
    "Bỏ khỏi lịch": "Remove from the schedule",
    "Không có mục nào.": "Nothing scheduled.",
    "Đưa bản tin đã duyệt vào lịch": "Put an approved bulletin on the schedule",
    "Ngày phát": "Broadcast date",
    "Giờ bắt đầu": "Start time",
    "Thôn nghe": "Villages that will hear it",
    "Không phát được trong giờ yên tĩnh, trùng giờ với mục khác cùng loại ở cùng thôn, hoặc "
    "trong {n} phút tới.":
        "Nothing can be broadcast during quiet hours, at the same time as another item of the "
        "same type in the same village, or within the next {n} minutes.",
    "Đưa vào lịch": "Add to the schedule",
    "Chưa có bản tin nào đã được duyệt.": "No bulletin has been approved yet.",
    ", rồi nhờ trưởng ban biên tập duyệt.": ", then ask the editorial board head to approve it.",
    # Criterion 8.3: what counts as local news (calendar badge, overview)
    "{n} tin, cần ít nhất {need}": "{n} items, at least {need} needed",
    "{n} bản tin thiếu bản ghi, không tính": "{n} bulletins with no recording, not counted",
    "{n} bản tin ngắn dưới {s} giây, không tính":
        "{n} bulletins shorter than {s} seconds, not counted",
    "Theo lịch phát: chỉ tính bản tin có bản ghi dài ít nhất {s} giây; đã phát thực tế: {n} tin":
        "As scheduled: only bulletins with a recording of at least {s} seconds count; actually "
        "aired: {n} items",
    # Communes
    "Tỉnh": "Province",
    "Xã": "Commune",
    "Cụm loa hoạt động": "Clusters online",
    "Chưa có xã nào.": "No communes yet.",
    # Broadcast diary
    "Sổ nhật ký truyền thanh": "Broadcast diary",
    "Tình trạng cụm loa": "Loudspeaker cluster health",
    "Từ ngày": "From",
    "đến ngày": "to",
    "Xem": "Show",
    "Tải về:": "Download:",
    "PDF để in": "PDF for printing",
    "Báo cáo tháng {month} (PDF)": "Monthly report {month} (PDF)",
    "{n} chương trình": "{n} programmes",
    "{n} đã phát ở ít nhất một thôn": "{n} aired in at least one village",
    "Không có chương trình nào trong khoảng này.": "No programmes in this period.",
    "Ngày": "Date",
    "Buổi": "Session",
    "Giờ dự kiến": "Planned time",
    "Giờ thực tế": "Actual time",
    "Tên chương trình": "Programme",
    "Nguồn": "Source",
    "Kết quả": "Result",
    "Thôn đã phát": "Villages aired",
    "Thôn không phát": "Villages not aired",
    "Ghi chú": "Notes",
    "Giờ ghi là {tz}. Sổ được bảo vệ chống sửa đổi: kỹ thuật viên kiểm tra bằng lệnh":
        "Times are in {tz}. The diary is protected against tampering: a technician checks it "
        "with the command",
    # Emergency
    "Phát khẩn cấp": "Emergency broadcast",
    "Dùng khi có thiên tai, cháy, dịch bệnh. Các loa được chọn sẽ":
        "Use this for natural disasters, fires and epidemics. The chosen loudspeakers will",
    "dừng chương trình đang phát và phát ngay": "stop the programme they are playing and play "
                                                "this at once",
    ", kể cả trong giờ yên tĩnh.": ", even during quiet hours.",
    "Máy chủ phát chưa chạy: trang này chỉ xem được, chưa gửi được.":
        "The broadcast server is not running: this page can be viewed, but nothing can be "
        "sent.",
    "Ví dụ: Cảnh báo lũ quét": "For example: Flash flood warning",
    "Nội dung cần đọc (máy đọc tiếng Việt)":
        "Text to be read out (the computer reads it in Vietnamese)",
    "Kính thưa bà con...": "Kính thưa bà con... (in Vietnamese)",
    "… hoặc phát một bản tin có sẵn": "… or broadcast an existing bulletin",
    "(không)": "(none)",
    "Nơi phát": "Broadcast to",
    "Nơi phát:": "Broadcast to:",
    "Toàn xã": "Whole commune",
    "(mọi thôn)": "(every village)",
    "Tiếp tục…": "Continue…",
    "Các lần phát khẩn cấp gần đây": "Recent emergency broadcasts",
    "Người gửi": "Sent by",
    "Cụm loa đã phát": "Clusters that played",
    "Xác nhận phát khẩn cấp": "Confirm the emergency broadcast",
    "Nội dung:": "Content:",
    "Bấm nút dưới đây thì loa sẽ phát": "When you press the button below, the loudspeakers "
                                        "will play",
    "ngay lập tức": "immediately",
    "PHÁT NGAY": "BROADCAST NOW",
    "Quay lại": "Go back",
    "Đã phát khẩn cấp": "Emergency broadcast sent",
    "Đã gửi lệnh phát khẩn cấp": "Emergency broadcast command sent",
    "Đang gửi…": "Sending…",
    "thôn đã bắt đầu phát.": "villages have started playing.",
    "Đang chờ các cụm loa trả lời…": "Waiting for the clusters to answer…",
    "Thôn": "Village",
    "Thôn không trả lời: kỹ thuật viên xem trang":
        "Villages that do not answer: the technician checks the page",
    "Đã gửi, đang chờ cụm loa": "Sent, waiting for the cluster",
    "Không phát": "Not played",
    "Không trả lời": "No answer",
    "Phát không trọn": "Partly aired",
    "Kỹ thuật viên xem trang": "A technician should check",
    "Lần phát này được ghi vào sổ nhật ký và nhật ký thao tác.":
        "This broadcast is recorded in the broadcast diary and in the audit log.",
    "Xem sổ nhật ký": "View the broadcast diary",
    "Về lịch phát": "Back to the schedule",
    # Health, clusters, overview
    "Đang hoạt động:": "Online:",
    "Cảnh báo đang mở:": "Open alarms:",
    "Cảnh báo": "Alarms",
    "Từ lúc": "Since",
    "Thôn / bản": "Village",
    "Liên lạc lần cuối": "Last contact",
    "Sóng": "Signal",
    "Nhiệt độ": "Temperature",
    "Ampli": "Amplifier",
    "Lệch giờ": "Clock offset",
    "Phần mềm": "Firmware",
    "Hoạt động": "Online",
    "Mất kết nối": "Offline",
    "hoạt động": "online",
    "mất kết nối": "offline",
    "Lỗi": "Fault",
    "Bật": "On",
    "Tắt": "Off",
    "Cụm loa đang hoạt động:": "Loudspeaker clusters online:",
    "{n} cụm mất kết nối": "{n} clusters offline",
    "Trang tự cập nhật mỗi 5 giây. Giờ ghi trên trang là {tz}.":
        "This page refreshes every 5 seconds. Times on this page are in {tz}.",
    "Sổ nhật ký truyền thanh (xuất PDF, Excel)": "Broadcast diary (PDF and Excel export)",
    "Tình trạng cụm loa và cảnh báo": "Loudspeaker cluster health and alarms",
    "Giờ phát": "Hours on air",
    "Theo ngôn ngữ": "By language",
    "Đánh giá": "Assessment",
    "Đã phát (theo nhật ký)": "Aired (from the diary)",
    "Theo lịch phát": "As scheduled",
    "Thôn có loa hoạt động trong tuần:": "Villages with working loudspeakers this week:",
    "(cần ít nhất 2/3)": "(at least 2/3 needed)",
    "Chưa phát đủ:": "Not enough broadcasts:",
    "Yêu cầu mỗi tuần: tiếp sóng VOV và Đài tỉnh hằng ngày, ít nhất 3 tin do xã tự sản xuất.":
        "Required every week: relays of VOV and of the provincial station every day, and at "
        "least 3 news items produced by the commune.",
    "Đang phát": "Now playing",
    "Đang phát:": "Now playing:",
    "Mã cụm loa": "Cluster ID",
    "Chưa có cụm loa nào.": "No loudspeaker clusters yet.",
    "Nhật ký truyền thanh ngày {day}": "Broadcast diary for {day}",
    "Ngày trước": "Previous day",
    "Hôm nay": "Today",
    "Ngày sau": "Next day",
    "Xem ngày": "Show the day",
    "Bắt đầu": "Start",
    "Kết thúc": "End",
    "Nội dung": "Content",
    "Thời lượng": "Duration",
    "Người phát": "Operator",
    "Giờ theo lịch / ra lệnh": "Scheduled / ordered time",
    "Hôm nay chưa có buổi phát nào.": "No broadcasts yet today.",
    "Không có buổi phát nào được ghi trong ngày này.": "No broadcasts were recorded on this day.",
    "Thôn có loa hoạt động tốt:": "Villages whose loudspeakers all work:",
    "lần cuối {seen}": "last contact: {seen}",
    "sóng {dbm} dBm": "signal {dbm} dBm",
    "âm lượng {volume}": "volume {volume}",
    "Kỹ thuật viên xem chi tiết ở trang": "Technicians find the details under",

    # --- Words the pages get from Python (see tests/core/test_i18n.py for where they live) ---
    # Roles (auth.ROLE_VI)
    "Quản trị (tỉnh)": "Administrator (province)",
    "Kỹ thuật viên": "Technician",
    "Cán bộ văn hóa xã": "Commune culture officer",
    "Trưởng ban biên tập": "Editorial board head",
    # Audit actions (audit.ACTION_VI)
    "Đăng nhập sai": "Failed login",
    "Không duyệt bản tin": "Reject bulletin",
    "Nhận bản tin từ hệ thống thông tin nguồn":
        "Receive a bulletin from the source information system",
    "Thêm vào lịch": "Add to the schedule",
    "Dời giờ phát": "Move a broadcast",
    "Thêm người dùng": "Add user",
    "Cấp mã truy cập API": "Issue API token",
    "Thu hồi mã truy cập API": "Revoke API tokens",
    # Alarms (alarms.LABELS_VI)
    "Nguồn tiếp sóng không truy cập được": "Relay source unreachable",
    "Nguồn tiếp sóng im lặng": "Relay source silent",
    "Cụm loa không tiếp sóng được (đã phát thông báo dự phòng)":
        "Cluster could not relay (played the fallback announcement)",
    "Cụm loa từ chối lịch phát": "Cluster refused the schedule",
    "Cụm loa mất kết nối": "Cluster offline",
    "Cụm loa không phát được chương trình": "Cluster could not play a programme",
    "Lỗi bộ khuếch đại (ampli)": "Amplifier fault",
    "Sóng 4G yếu": "Weak 4G signal",
    "Đồng hồ cụm loa lệch quá 2 giây": "Cluster clock off by more than 2 seconds",
    "Cả thôn không còn loa hoạt động": "No working loudspeaker left in the village",
    # Bulletins (bulletins.STATUS_VI, KIND_VI, ORIGIN_VI, LANGUAGES)
    "Chờ duyệt": "Awaiting approval",
    "Đã duyệt": "Approved",
    "Bản tin địa phương": "Local bulletin",
    "Tải lên": "Upload",
    "Đọc từ văn bản": "Text to speech",
    "Hệ thống thông tin nguồn": "Source information system",
    "Tiếng Việt": "Vietnamese",
    "Tiếng Tày": "Tày",
    "Tiếng Nùng": "Nùng",
    "Tiếng Dao": "Dao",
    "Tiếng Mông": "Hmong",
    # Diary (commune_diary.OUTCOME_VI, KIND_VI, TRIGGER_VI, session_of; web.REASON_VI)
    "Đã phát": "Aired",
    "Phát dở": "Partly aired",
    "Không phát được": "Failed",
    "Bỏ lỡ": "Missed",
    "Chưa có báo cáo": "No report yet",
    "Theo lịch": "Scheduled",
    "Thử loa": "Loudspeaker test",
    "Lệnh phát": "Play command",
    "Trực tiếp": "Live",
    "Sáng": "Morning",
    "Trưa": "Midday",
    "Chiều": "Afternoon",
    "Tối": "Evening",
    "bị dừng giữa chừng": "stopped midway",
    "bị dừng trước khi phát": "stopped before it started",
    "nguồn phát bị ngắt giữa chừng": "the source cut off midway",
    # Schedule (web_calendar.WEEKDAY_VI, KLASS_VI, DONE_VI)
    "Thứ Hai": "Monday",
    "Thứ Ba": "Tuesday",
    "Thứ Tư": "Wednesday",
    "Thứ Năm": "Thursday",
    "Thứ Sáu": "Friday",
    "Thứ Bảy": "Saturday",
    "Chủ Nhật": "Sunday",
    "ưu tiên": "priority",
    "khẩn cấp": "emergency",
    "Đã đưa bản tin vào lịch. Các cụm loa sẽ nhận lịch mới trong ít phút.":
        "The bulletin is on the schedule. The loudspeaker clusters will receive the new "
        "schedule within a few minutes.",
    "Đã dời giờ phát.": "The broadcast has been moved.",
    "Đã bỏ mục này khỏi lịch.": "The item has been removed from the schedule.",
    # Bulletin page (web_bulletins.DONE_VI)
    "Đã tạo bản tin. Bản tin chờ trưởng ban biên tập duyệt trước khi phát.":
        "Bulletin created. It must be approved by the editorial board head before it can be "
        "broadcast.",
    "Đã duyệt. Bản tin có thể đưa vào lịch phát.":
        "Approved. The bulletin can now be added to the schedule.",
    "Đã ghi ý kiến không duyệt.": "The rejection has been recorded.",
    # Last contact and time zone (web.py, web_commune.py, web_diary.py)
    "Chưa liên lạc": "Never",
    "chưa liên lạc": "never",
    "chưa kết nối": "never connected",
    "giờ Việt Nam": "Vietnam time",
    # Error pages (web.ERROR_VI, CSRF_VI; web_context.LOGIN_ERROR_VI)
    "Yêu cầu không hợp lệ": "Invalid request",
    "Địa chỉ trang có chỗ không đúng.": "Something in the page address is wrong.",
    "Không có quyền": "Not allowed",
    "Tài khoản của bạn không được xem hoặc làm việc này.":
        "Your account is not allowed to see or do this.",
    "Không tìm thấy trang": "Page not found",
    "Trang này không có. Hãy quay về trang chính.":
        "This page does not exist. Please go back to the home page.",
    "Không thực hiện được": "Not possible",
    "Trang này không nhận thao tác đó.": "This page does not accept that action.",
    "Tạm thời không xem được": "Temporarily unavailable",
    "Không đọc được cơ sở dữ liệu của LoaXa. Hãy báo kỹ thuật viên kiểm tra thư mục trạng "
    "thái và tệp loaxa.db.":
        "LoaXa cannot read its database. Please ask a technician to check the state directory "
        "and the loaxa.db file.",
    "Có lỗi xảy ra": "Something went wrong",
    "Hãy thử lại sau ít phút.": "Please try again in a few minutes.",
    "Biểu mẫu đã cũ hoặc phiên làm việc đã hết hạn. Hãy tải lại trang rồi làm lại (không có "
    "gì bị thay đổi).":
        "The form is out of date or your session has expired. Reload the page and try again "
        "(nothing was changed).",
    "Sai tên đăng nhập hoặc mật khẩu.": "Wrong username or password.",
    "Trang đăng nhập đã cũ hoặc không đến từ LoaXa. Hãy đăng nhập lại trên trang này.":
        "This log-in page is stale or did not come from LoaXa. Log in again on this page.",

    # --- Health on the overview and /health, alarm details, the province's audit log ---
    # Cluster states (reading.NODE_STATE_VI, web_commune.STATE_LOWER_VI)
    "Lỗi ampli": "Amplifier fault",
    "lỗi ampli": "amplifier fault",
    "Cụm loa quá nóng": "Cluster overheating",
    "Lịch phát quá dày, không gửi được xuống cụm loa": "Plan too crowded to send to the cluster",
    "Cụm loa gửi bản ghi phát sóng không hợp lệ": "Cluster sent an invalid as-run record",
    "Cụm loa gửi hai bản ghi khác nhau cùng số":
        "Cluster sent two different records under one number",
    "Ở đâu": "Where",
    "{n} cụm lỗi ampli": "{n} clusters with an amplifier fault",
    "Thôn có loa đang hoạt động:": "Villages with a working loudspeaker now:",
    "Không còn loa hoạt động:": "No working loudspeaker left:",
    "“Hoạt động”: liên lạc được và ampli không lỗi. Mất kết nối: không nhận được tin nào "
    "trong 2 chu kỳ báo cáo của cụm loa.":
        "“Online”: reachable, with no amplifier fault. Offline: nothing heard from the "
        "cluster for 2 of its reporting periods.",
    # Alarm details (alarms.DETAIL_*), stored in Vietnamese, shown through alarms.detail_text
    "Ampli đang bật nhưng chỉ tiêu thụ {ma} mA": "The amplifier is on but draws only {ma} mA",
    "Bản ghi số {rid} bị từ chối ({why}: {detail}); cụm loa đã bỏ bản ghi này":
        "Record {rid} refused ({why}: {detail}); the cluster has dropped it",
    "Bản ghi số {rid} gửi lại với nội dung khác; nhật ký giữ bản nhận trước":
        "Record {rid} came again with other content; the diary keeps the one received first",
    "Ampli báo lỗi (phần cứng báo, hoặc dòng điện quá thấp khi bật)":
        "Amplifier fault (reported by the hardware, or too little current while on)",
    "Sóng {dbm} dBm ({link})": "Signal {dbm} dBm ({link})",
    "Đồng hồ cụm loa lệch {ms} ms so với máy chủ":
        "The cluster's clock is {ms} ms off the server's",
    "Không nhận được tin nào từ cụm loa trong {seconds} giây":
        "Nothing heard from the cluster for {seconds} s",
    "Không nhận được tin nào từ cụm loa trong {minutes} phút":
        "Nothing heard from the cluster for {minutes} min",
    "Không nhận được tin nào từ cụm loa trong {seconds} giây (máy chủ MQTT đã báo cụm loa mất "
    "kết nối)":
        "Nothing heard from the cluster for {seconds} s (the MQTT broker reported it "
        "disconnected)",
    "Không nhận được tin nào từ cụm loa trong {minutes} phút (máy chủ MQTT đã báo cụm loa mất "
    "kết nối)":
        "Nothing heard from the cluster for {minutes} min (the MQTT broker reported it "
        "disconnected)",
    "Bỏ lỡ “{what}”: {reason}": "Missed “{what}”: {reason}",
    "Không phát được “{what}”: {reason}": "Could not play “{what}”: {reason}",
    "không rõ lý do": "no reason given",
    "Cụm loa duy nhất của thôn mất kết nối hoặc lỗi ampli: {nodes}":
        "The village's only cluster is offline or has an amplifier fault: {nodes}",
    "Cả {n} cụm loa của thôn đều mất kết nối hoặc lỗi ampli: {nodes}":
        "All {n} clusters of the village are offline or have an amplifier fault: {nodes}",
    "Nhiệt độ {temp} °C, vượt ngưỡng {limit} °C của bo mạch {board}":
        "Temperature {temp} °C, above the {limit} °C limit of the {board} board",
    "{items} mục trong {hours} giờ vượt giới hạn {kb} KB của một lịch phát; cụm loa giữ lịch cũ":
        "{items} items in {hours} hours exceed the {kb} KB limit of one plan; the cluster "
        "keeps its previous plan",
    # The province's audit log (web_commune.PROVINCE_AUDIT_VI)
    "Nhật ký thao tác toàn tỉnh": "Audit log of the whole province",
    "toàn tỉnh": "whole province",
    "Toàn tỉnh": "Whole province",
    "Mọi xã, và những việc không thuộc xã nào (quản trị, đăng nhập sai bằng tên không có).":
        "Every commune, and what belongs to none (administration, failed log-ins under names "
        "nobody has).",
    "Nhật ký thao tác toàn tỉnh chỉ dành cho quản trị viên tỉnh.":
        "Only the province's administrator may read the whole province's audit log.",
    # Why a village did not air an item (diary.reasons.CODES_VI)
    "lệnh đã hết hạn khi cụm loa nhận được (mất kết nối lúc gửi)":
        "the command had expired when the cluster got it (offline when sent)",
    "đang trong giờ nghỉ của thôn":
        "within the village's quiet hours",
    "đang phát tin khẩn cấp":
        "an emergency was on air",
    "đang phát":
        "something was on air",
    "cụm loa đang ở chế độ an toàn (khởi động lại liên tục)":
        "the cluster is in safe mode (reboot loop)",
    "lệnh bị gửi lặp lại, cụm loa từ chối":
        "a replayed command, refused",
    "chữ ký lệnh không hợp lệ":
        "the command's signature is not valid",
    "lệnh hỏng":
        "a malformed command",
    "lệnh quá lớn":
        "the command is too large",
    "phiên bản lệnh không hỗ trợ":
        "unsupported command version",
    "lệnh gửi nhầm cụm loa":
        "the command was for another cluster",
    "lệnh chưa đến giờ hiệu lực (đồng hồ cụm loa lệch)":
        "the command is not valid yet (the cluster's clock is off)",
    "cụm loa không biết lệnh này":
        "the cluster does not know this command",
    "tham số lệnh sai":
        "wrong command arguments",
    "địa chỉ âm thanh không được phép":
        "the audio address is not allowed",
    "cụm loa mất kết nối khi gửi lệnh":
        "the cluster was offline when the command was sent",
    "cụm loa không trả lời":
        "the cluster did not answer",
    "đã bắt đầu phát, chưa có báo cáo":
        "started, no report yet",
    "ampli không đẩy ra loa (lỗi ampli)":
        "the amplifier did not drive the speakers (amplifier fault)",
    "đã phát, chưa kiểm chứng được ampli (bo mạch không đo dòng)":
        "played, the amplifier not verified (the board does not sense its current)",
    "bị dừng do khởi động lại":
        "stopped by a reboot",
    "luồng âm thanh bị ngắt":
        "the stream broke off",
    "luồng âm thanh bị ngắt trước điểm nối":
        "the stream broke off before the join point",
    "bản ghi ngắn hơn khung giờ":
        "the recording is shorter than the slot",
    "bản ghi kết thúc sớm":
        "the recording ended early",
    "không có luồng":
        "no stream",
    "luồng âm thanh":
        "the stream",
}

# Where one Vietnamese text needs another English: (context, Vietnamese) -> English.
EN_CONTEXT: Final[dict[tuple[str, str], str]] = {
    ("one", "Bản tin"): "Bulletin",
    ("one", "Cụm loa"): "Cluster",
    ("status", "Không duyệt"): "Rejected",
}


def _vi(text: str, context: str = "") -> str:
    return text


def _en(text: str, context: str = "") -> str:
    if context:
        found = EN_CONTEXT.get((context, text))
        if found is not None:
            return found
    return EN.get(text, text)


def translator(lang: str) -> Translate:
    """`_` for templates: Vietnamese as written, or its English (the Vietnamese if none)."""
    return _en if lang == "en" else _vi


def lang_of(request: Request) -> str:
    """The language chosen with the switch (cookie), else Vietnamese."""
    code = request.cookies.get(COOKIE, "")
    return code if code in LANGUAGES else DEFAULT


def switch_href(code: str, back: str) -> str:
    return f"/lang/{code}?next={quote(back, safe='')}"


def unknown_language(code: str) -> str:
    shown = code[:20]
    return (f"Không có ngôn ngữ “{shown}”: chọn vi (Tiếng Việt) hoặc en (English). / "
            f"Unknown language “{shown}”: choose vi (Vietnamese) or en (English).")


def page_values(request: Request) -> dict[str, Any]:
    """What every template gets for its language: `lang`, `_` and `lang_switch(back)` (the
    other languages as (code, name, link); the link comes back to `back`, by default this
    page when it was a GET, else the home page)."""
    lang = lang_of(request)
    here = "/"
    if request.method == "GET":
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")

    def lang_switch(back: str | None = None) -> list[tuple[str, str, str]]:
        target = here if back is None else back
        return [(code, NAMES[code], switch_href(code, target)) for code in LANGUAGES
                if code != lang]

    return {"lang": lang, "_": translator(lang), "lang_switch": lang_switch}


__all__ = ["COOKIE", "EN", "EN_CONTEXT", "LANGUAGES", "NAMES", "Translate", "lang_of",
           "page_values", "translator", "unknown_language"]

"""The officer's web app in real headless Chromium, end to end against `loaxa demo` (Mosquitto,
the headend and five nodes running the real firmware, in real time).

One demo per module. The tests: the whole flow of a week's work (log in, upload a bulletin,
have it approved, put it on the calendar, an emergency to every village, the diary and the
audit log), the pages at phone width, and recording from a (fake) microphone.

Screenshots of every step go to $LOAXA_TEST_OUTPUT/screenshots (default test-output/ in the
repository, which git ignores).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from support.processes import processes_mentioning
from support.web_site import post_login

from headend.nodes.broker import find_free_port

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing (`make install` installs it)")

REPO = Path(__file__).resolve().parents[2]
LOAXA = str(Path(sys.executable).parent / "loaxa")
SHOTS = Path(os.environ.get("LOAXA_TEST_OUTPUT", REPO / "test-output")) / "screenshots"
COMMUNE = "tan-lang"
C = f"/c/{COMMUNE}"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
QUIET_START, QUIET_END = 21 * 60 + 45, 5 * 60  # the schedule's quiet hours, in minutes
VILLAGES = 5
PHONE = {"width": 360, "height": 740}
WAIT_MS = 20_000  # a page that does real work (decoding audio, speech) on a busy machine

EMERGENCY_TITLE = "Khẩn cấp thử nghiệm trình duyệt"
EMERGENCY_TEXT = "Kính thưa bà con, đây là thông báo khẩn cấp thử nghiệm."
SPEECH = ("Kính thưa bà con, ủy ban nhân dân xã Tân Lang thông báo lịch tiêm phòng "
          "cho trẻ em vào sáng thứ bảy tại trạm y tế xã.")


@dataclass
class Demo:
    base: str
    password: str
    home: Path
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no demo log)"


def wait_for(cond: Callable[[], Any], timeout: float, what: str,
              demo: Demo | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
        except (OSError, httpx.HTTPError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout} s"
                         + (f"; demo log:\n{demo.log_tail()}" if demo else ""))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`loaxa demo` running, its five nodes online, stopped with SIGINT afterwards."""
    root = tmp_path_factory.mktemp("browser")
    home, log = root / "home", root / "demo.log"
    port = find_free_port()
    with log.open("w") as out:
        proc = subprocess.Popen([LOAXA, "--home", str(home), "demo", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    d = Demo(f"http://127.0.0.1:{port}", "", home, log)
    try:
        # The demo writes demo-login.txt before it makes the users, and says so after: wait
        # for that line (a log-in tried too early fails, and failures count to a lock-out).
        wait_for(lambda: "log in as canbo" in log.read_text(errors="replace"), 60,
                 "demo users", d)
        d.password = (home / "demo-login.txt").read_text().split()[-1]
        with httpx.Client(base_url=d.base, timeout=5) as client:
            r = post_login(client, "canbo", d.password)
            assert r.status_code == 303, r.text

            def online() -> int:
                nodes = client.get("/api/v1/nodes").raise_for_status().json()
                return sum(n["online"] for n in nodes)

            wait_for(lambda: online() >= VILLAGES, 60, f"{VILLAGES} online nodes", d)
        yield d
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            for left in processes_mentioning(str(home)):  # its broker and nodes, by their ids
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(left.split(":")[0]), signal.SIGKILL)
    output = log.read_text(errors="replace")
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output, first_traceback(output)  # pages that failed with 500
    assert not processes_mentioning(str(home)), "processes left behind"


def first_traceback(output: str) -> str:
    """The first traceback in the demo's output, its last lines (where it failed)."""
    lines = output[output.index("Traceback"):].splitlines()
    end = next((i for i, line in enumerate(lines) if i and line and not line[0].isspace()),
               len(lines) - 1)
    return "\n".join(lines[max(0, end - 16):end + 1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # A fake microphone (a beep) that needs no permission prompt, for the recorder.
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """New browser contexts (one per user), closed after the test."""
    made: list[BrowserContext] = []

    def new(**kwargs: Any) -> BrowserContext:
        ctx = browser.new_context(locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", **kwargs)
        ctx.set_default_timeout(WAIT_MS)
        made.append(ctx)
        return ctx

    yield new
    for ctx in made:
        ctx.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(ctx: BrowserContext, demo: Demo, username: str) -> Page:
    page = ctx.new_page()
    page.goto(f"{demo.base}/login")
    page.fill("#username", username)
    page.fill("#password", demo.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
    expect(page.locator("header.top")).to_contain_text("Đăng xuất")
    assert page.locator("meta[name=csrf]").get_attribute("content")
    return page


def make_mp3(tmp_path: Path) -> Path:
    """About 8 s of Vietnamese speech with a second of silence at both ends."""
    wav, mp3 = tmp_path / "speech.wav", tmp_path / "tiem-phong.mp3"
    subprocess.run(["espeak-ng", "-v", "vi", "-s", "150", "-w", str(wav), SPEECH], check=True,
                   capture_output=True)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-af",
                    "adelay=delays=1000:all=1,apad=pad_dur=1", "-ar", "44100", "-ac", "1",
                    "-b:a", "64k", str(mp3)], check=True, capture_output=True)
    return mp3


def bulletin_ids(page: Page, demo: Demo) -> list[str]:
    page.goto(f"{demo.base}{C}/bulletins")
    ids = page.locator("#bulletins tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)")
    return list(ids)


def new_bulletin(page: Page, demo: Demo, title: str, summary: str) -> None:
    page.goto(f"{demo.base}{C}/bulletins/new")
    page.fill("#title", title)
    page.fill("#summary", summary)
    page.select_option("#kind", "local_bulletin")
    page.select_option("#language", "vi")


def submit(page: Page, selector: str) -> None:
    """Click a form's button and wait for the page it leads to (or the error page)."""
    with page.expect_navigation(timeout=WAIT_MS * 3):
        page.click(selector)


def created_id(page: Page) -> str:
    """The bulletin page a successful upload lands on: its id."""
    m = re.search(rf"{C}/bulletins/(\d+)\?done=created$", page.url)
    assert m, f"{page.url}:\n{page.locator('body').inner_text()[:2000]}"
    return m.group(1)


def minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def free_start(taken: list[tuple[int, int]], earliest: int, length: int) -> int | None:
    """The first start (on a 5-minute step, from `earliest`) of `length` minutes outside quiet
    hours that overlaps none of the `taken` windows; None when the day has none left."""
    t = max(-(-earliest // 5) * 5, QUIET_END)
    while t + length <= QUIET_START:
        if all(t + length <= s or e <= t for s, e in taken):
            return t
        t += 5
    return None


def day_windows(page: Page, day: date) -> list[tuple[int, int]]:
    texts = page.locator(f"section.day[data-day='{day.isoformat()}'] .item .t").all_inner_texts()
    out = []
    for text in texts:
        start, end = (minutes(x) for x in re.split(r"[–-]", text.strip()))
        out.append((start, end if end > start else 24 * 60))
    return out


def news_count(page: Page, label: str) -> int:
    text = page.locator(f"#badges .badge[data-week='{label}'] b.news").inner_text()
    m = re.fullmatch(r"\s*(\d+) tin, cần ít nhất \d+\s*", text)
    assert m, text
    return int(m.group(1))


def short_count(page: Page, label: str) -> int:
    """Bulletins the badge shows apart as shorter than a news item's minimum."""
    short = page.locator(f"#badges .badge[data-week='{label}'] .short")
    return int(short.get_attribute("data-n") or 0) if short.count() else 0


def audit_rows(page: Page) -> list[list[str]]:
    rows: list[list[str]] = page.locator("#audit tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))")
    return rows


def test_officer_flow(demo: Demo, contexts: Callable[..., BrowserContext],
                      tmp_path: Path) -> None:
    officer_ctx = contexts()
    page = officer_ctx.new_page()

    # A wrong password: the Vietnamese error, still on the log-in form.
    page.goto(f"{demo.base}/login")
    page.fill("#username", "canbo")
    page.fill("#password", demo.password + "-sai")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("Sai tên đăng nhập hoặc mật khẩu")
    assert page.url.split("?")[0].endswith("/login"), page.url
    assert not page.locator("meta[name=csrf]").count()
    shot(page, "01-login-wrong-password")
    page.close()
    page = log_in(officer_ctx, demo, "canbo")
    shot(page, "02-logged-in")

    # Upload a real MP3.
    title = "Lịch tiêm phòng tháng này"
    before = bulletin_ids(page, demo)
    new_bulletin(page, demo, title, "Tiêm phòng cho trẻ em tại trạm y tế xã")
    page.check("input[name=source][value=upload]")
    page.set_input_files("#audio", str(make_mp3(tmp_path)))
    shot(page, "03-upload-form")
    submit(page, "#submit")
    bid = created_id(page)
    expect(page.locator("#status")).to_have_text("Chờ duyệt")
    expect(page.locator("h1")).to_have_text(title)
    shot(page, "04-uploaded")
    assert bid not in before

    # A text file renamed to .mp3: refused in Vietnamese, nothing new in the list.
    fake = tmp_path / "khong-phai-am-thanh.mp3"
    fake.write_text("Đây là một tệp văn bản, không phải âm thanh.\n" * 50)
    before = bulletin_ids(page, demo)
    new_bulletin(page, demo, "Tệp hỏng", "")
    page.check("input[name=source][value=upload]")
    page.set_input_files("#audio", str(fake))
    submit(page, "#submit")
    expect(page.locator("#error")).to_contain_text("không phải âm thanh")
    expect(page.locator("#title")).to_have_value("Tệp hỏng")  # the form keeps what was typed
    shot(page, "05-upload-refused")
    assert bulletin_ids(page, demo) == before

    # The approver, in a browser of their own, approves it.
    approver = log_in(contexts(), demo, "truongban")
    approver.goto(f"{demo.base}{C}/bulletins/{bid}")
    expect(approver.locator("#status")).to_have_text("Chờ duyệt")
    approver.click("#approve")
    expect(approver.locator("#status")).to_have_text("Đã duyệt")
    expect(approver.locator("#done")).to_be_visible()
    expect(approver.locator("#approve")).to_have_count(0)
    shot(approver, "06-approved")

    # Back as the officer: put it on the calendar at a free time at least 20 minutes ahead.
    now = datetime.now(TZ)
    today = now.date()
    page.goto(f"{demo.base}{C}/calendar")
    expect(page.locator("#add-form")).to_be_visible()
    length = 2  # minutes: the bulletin rounds up to one; a spare one for a minute's turn
    day, label = today, "Tuần này"
    start = free_start(day_windows(page, day), now.hour * 60 + now.minute + 20, length)
    if start is None:  # too late today: tomorrow, maybe in next week
        day = today + timedelta(days=1)
        if day.weekday() == 0:
            label = "Tuần sau"
            page.goto(f"{demo.base}{C}/calendar?week={day.isoformat()}")
        start = free_start(day_windows(page, day), 0, length)
        assert start is not None, "no free time tomorrow"
    news, short = news_count(page, label), short_count(page, label)
    shot(page, "07-calendar-before")
    page.select_option("#bulletin", bid)
    page.fill("#day", day.isoformat())
    at = f"{start // 60:02d}:{start % 60:02d}"
    page.fill("#start", at)
    boxes = page.locator("#add-form input[name=villages]")
    assert boxes.count() == VILLAGES
    for i in range(VILLAGES):
        boxes.nth(i).check()
    page.click("#add-form button[type=submit]")
    expect(page.locator("#done")).to_be_visible()
    assert not page.locator("#error").count(), page.locator("#error").inner_text()
    item = page.locator(f"section.day[data-day='{day.isoformat()}'] .item").filter(
        has_text=title)
    expect(item).to_have_count(1)
    expect(item.locator(".t")).to_contain_text(at)
    assert (item.get_attribute("data-ref") or "").startswith("c")
    # About 10 s of audio: on the calendar, shown apart, not a news item (criterion 8.3
    # counts a bulletin's own audio, at least a minute of it, not its one-minute slot).
    assert news_count(page, label) == news
    assert short_count(page, label) == short + 1
    shot(page, "08-calendar-added")

    # Every village's loudspeakers work.
    page.goto(f"{demo.base}{C}/nodes")
    expect(page.locator("#villages .tile[data-ok=true]")).to_have_count(VILLAGES)
    expect(page.locator("p.summary")).to_contain_text(f"{VILLAGES}/{VILLAGES}")

    # The emergency button: typed text to every village, confirmed, all five start.
    page.goto(f"{demo.base}{C}/emergency")
    page.fill("#title", EMERGENCY_TITLE)
    page.fill("#text", EMERGENCY_TEXT)
    page.check("input[name=all]")
    shot(page, "09-emergency")
    page.click("#next")
    expect(page.locator("#send")).to_be_visible()
    expect(page.locator("#confirm")).to_contain_text(EMERGENCY_TITLE)
    expect(page.locator("#confirm")).to_contain_text("Toàn xã")
    shot(page, "10-emergency-confirm")
    page.click("#send")  # sent, then the status page follows the villages' answers live
    result = page.locator("#result")
    expect(result).to_contain_text(f"{VILLAGES}/{VILLAGES}", timeout=60_000)
    # It follows them to the end: every village's node reports it aired (and was heard).
    expect(page.locator("#villages tr[data-state=aired]")).to_have_count(VILLAGES,
                                                                         timeout=60_000)
    expect(page.locator("#villages")).to_contain_text("Đã phát")
    shot(page, "11-emergency-result")
    assert "thôn đã bắt đầu phát" in result.inner_text()
    assert re.search(r"/emergency/\d+$", page.url), page.url  # a GET: safe to reload
    sent = emergency_commands(demo)
    assert sent == VILLAGES
    # Reload, back to the confirmation and sending it again: nothing more goes out.
    page.reload()
    expect(result).to_contain_text(f"{VILLAGES}/{VILLAGES}")
    page.go_back()
    if page.locator("#send").count():
        page.click("#send")
        expect(result).to_contain_text(f"{VILLAGES}/{VILLAGES}")
    page.go_forward()
    assert emergency_commands(demo) == sent

    # The diary: nodes send their as-run records when the emergency ends.
    page.goto(f"{demo.base}/diary/{COMMUNE}")
    line = page.locator("#diary tr[data-kind=emergency][data-outcome=aired]").filter(
        has_text=EMERGENCY_TITLE)
    deadline = time.monotonic() + 60
    while not line.count():
        assert time.monotonic() < deadline, (
            "the emergency is not in the diary after 60 s:\n" + page.locator("main").inner_text())
        page.wait_for_timeout(2000)
        page.reload()
    shot(page, "12-diary")
    expect(line).to_have_count(1)
    for village in ("Thôn Nà Pàn", "Bản Chu", "Thôn Khòn Pát", "Thôn Pác Luông", "Thôn Nà Làng"):
        expect(line).to_contain_text(village)

    # The audit log: who did what.
    page.goto(f"{demo.base}{C}/audit")
    rows = audit_rows(page)
    shot(page, "13-audit")

    def logged(who: str, action: str, detail: str) -> bool:
        return any(r[1:2] == [who] and r[3:4] == [action] and detail in " ".join(r[4:6])
                   for r in rows if len(r) >= 6)

    assert logged("canbo", "Tạo bản tin", f"bản tin #{bid} “{title}”"), rows
    assert logged("truongban", "Duyệt bản tin", f"bản tin #{bid} “{title}”"), rows
    assert logged("canbo", "Thêm vào lịch", title), rows
    assert logged("canbo", "Phát khẩn cấp", EMERGENCY_TITLE), rows
    assert not logged("truongban", "Tạo bản tin", ""), rows

    # Log out from the header: the pages ask for a log-in again.
    page.click("header.top button[type=submit]")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(f"{demo.base}{C}/calendar")
    assert "/login?next=" in page.url, page.url


OVERFLOW_JS = """() => {
  // Elements sticking out on the right that no scrolling box holds, outermost first: the
  // first is usually the one to fix, the others are its contents.
  const w = document.documentElement.clientWidth, out = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.right <= w + 1) continue;
    let held = false;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') { held = true; break; }
    }
    if (held) continue;
    const css = getComputedStyle(el);
    out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
             [...el.classList].map(c => '.' + c).join('') + ` right ${Math.round(box.right)}` +
             `px width ${Math.round(box.width)}px min-width ${css.minWidth}: ` +
             (el.textContent || '').trim().slice(0, 40));
  }
  return out.slice(0, 12);
}"""


def test_pages_fit_a_phone(demo: Demo, contexts: Callable[..., BrowserContext]) -> None:
    page = log_in(contexts(viewport=PHONE, is_mobile=True, has_touch=True), demo, "canbo")
    wide = {}
    for name, path in (("calendar", f"{C}/calendar"), ("bulletin-form", f"{C}/bulletins/new"),
                       ("emergency", f"{C}/emergency"), ("diary", f"/diary/{COMMUNE}")):
        page.goto(f"{demo.base}{path}")
        expect(page.locator("header.top")).to_be_visible()
        shot(page, f"20-phone-{name}")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"] + 1:
            wide[name] = (width, page.evaluate(OVERFLOW_JS))
    assert not wide, f"pages wider than {PHONE['width']} px: {wide}"


def test_microphone_recording(demo: Demo, contexts: Callable[..., BrowserContext]) -> None:
    ctx = contexts()
    ctx.grant_permissions(["microphone"], origin=demo.base)
    page = log_in(ctx, demo, "canbo")
    title = "Ghi âm thử nghiệm"
    new_bulletin(page, demo, title, "Ghi bằng micrô của trình duyệt")
    page.uncheck("input[name=chime]")  # the duration is then the recording's own
    page.click("#rec-start")
    expect(page.locator("#rec-stop")).to_be_enabled()
    expect(page.locator("#rec-status")).to_contain_text("Đang ghi… 3 giây", timeout=10_000)
    page.click("#rec-stop")
    status = page.locator("#rec-status")
    expect(status).to_contain_text("Đã ghi")
    recorded = re.search(r"Đã ghi (\d+) giây", status.inner_text())
    assert recorded, status.inner_text()
    expect(page.locator("#rec-play")).to_be_visible()
    assert page.is_checked("input[name=source][value=record]")
    name, size = page.evaluate("() => { const f = document.getElementById('audio').files[0];"
                               " return [f.name, f.size]; }")
    assert name.startswith("ghi-am.") and size > 1000, (name, size)
    shot(page, "30-recorded")
    submit(page, "#submit")
    bid = created_id(page)
    expect(page.locator("#status")).to_have_text("Chờ duyệt")
    info = page.locator("#bulletin").inner_text()
    shot(page, "31-recording-created")
    assert "Cách làm: Ghi âm" in info, info
    m = re.search(r"Dài: (\d+):(\d\d)", info)
    assert m, info
    seconds = int(m.group(1)) * 60 + int(m.group(2))
    # The fake device beeps twice a second with silence between: the server trims the silence
    # at both ends, up to about a second in all.
    n = int(recorded.group(1))
    assert max(1, n - 2) <= seconds <= n + 1, (n, info)
    page.goto(f"{demo.base}{C}/bulletins")
    row = page.locator(f"#bulletins tr[data-id='{bid}']")
    expect(row).to_contain_text(title)
    expect(row).to_contain_text(f"{m.group(1)}:{m.group(2)}")


def emergency_commands(demo: Demo) -> int:
    """The emergency commands the headend has sent (one per node, as the broker carried)."""
    with contextlib.closing(sqlite3.connect(demo.home / "loaxa.db")) as db:
        return int(db.execute("SELECT count(*) FROM commands WHERE op = 'emergency'")
                   .fetchone()[0])

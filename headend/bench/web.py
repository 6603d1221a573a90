"""`loaxa bench web` (issue #5): the officer's pages with a year of data, and a bulletin upload.

A commune of 25 villages gets a year of diary (every village's as-run entries for nine items a
day, hash-chained, as `bench diary` makes them), the schedule file that planned them, and a
year of calendar items (three approved bulletins a week). A logged-in officer then opens the
week calendar and the diary page for random weeks and days of that year; each request is timed
in the server process (the app called in-process, no network), beside `/healthz` as the floor
of the framework itself. Then a 10-minute upload goes through the bulletin pipeline, beside the
bare ffmpeg transcodes for every node profile, in the same run (headend/bench/upload.py).

Targets: calendar and diary pages at most 200 ms at the 95th percentile; the upload processed
in at most 60 s and at most 1.5x the bare transcodes.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from pydub.generators import Sine
from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.bench.common import web_login
from headend.bench.diary import FIRST_DAY, SLOTS, STREAM_IDS, TINH, TZ, VOV, build, commune_id
from headend.bench.upload import measure_upload, render
from headend.core import auth
from headend.core.db import open_db
from headend.core.models import NODE_VILLAGE, Bulletin, CalendarItem, Commune, Node, Village
from headend.media.pipeline import prepare
from headend.planning.schedule import hhmm
from headend.web.app import make_app

PAGE_TARGET_MS = 200.0
PASSWORD = "bench-web-password"


@dataclass(frozen=True)
class PageTimes:
    name: str
    ms: list[float]

    def pct(self, p: float) -> float:
        s = sorted(self.ms)
        return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]

    @property
    def line(self) -> str:
        return (f"{self.name:<34} median {statistics.median(self.ms):6.1f} ms   "
                f"p95 {self.pct(95):6.1f} ms   max {max(self.ms):6.1f} ms   (n={len(self.ms)})")


def _schedule_text(cid: str, name: str, villages: list[tuple[str, str, str]]) -> str:
    """The commune file that planned the generated year (bench_diary.SLOTS)."""
    lines = ["[commune]", f'id = "{cid}"', f'name = "{name}"', 'province = "Lạng Sơn"', ""]
    for vid, vname, nid in villages:
        lines += ["[[villages]]", f'id = "{vid}"', f'name = "{vname}"', f'nodes = ["{nid}"]',
                  ""]
    for stream in (VOV, TINH):
        lines += [f"[sources.{STREAM_IDS[stream]}]", f'name = "{STREAM_IDS[stream]}"',
                  f'primary = "{stream[0]}"', f'backup = "{stream[1]}"', ""]
    for s in SLOTS:
        lines += ["[[slots]]", f'id = "{s.id}"', f'title = "{s.title}"', f'kind = "{s.kind}"',
                  f'start = "{hhmm(s.start_min)}"', f"duration = {s.minutes}",
                  'days = "daily"', "on_holidays = true"]
        if s.priority:
            lines.append('class = "priority"')
        if s.stream:
            lines.append(f'source = "{STREAM_IDS[s.stream]}"')
        lines.append("")
    return "\n".join(lines)


def build_commune(root: Path, villages: int, days: int,
                  log: Callable[[str], None]) -> tuple[Path, Path, str, int]:
    """(database, schedule file, commune id, "now" in UTC ms): a year of data."""

    db = root / "web.db"
    t0 = time.perf_counter()
    built = build(db, 1, villages, days, 9, log=lambda m: None)
    cid = commune_id(0)
    engine = open_db(f"sqlite:///{db}")
    with Session(engine) as s:
        name = s.scalar(select(Commune.name).where(Commune.id == cid)) or cid
        rows = s.execute(select(Village.id, Village.name, Node.id).join(
            Node, NODE_VILLAGE).where(Village.commune_id == cid)
            .order_by(Village.id)).all()
    schedule = root / f"{cid}.toml"
    schedule.write_text(_schedule_text(cid, name, [(v, n, node) for v, n, node in rows]),
                        encoding="utf-8")
    # A year of the officer's own work: three approved bulletins a week on the calendar.

    audio = prepare(Sine(440).to_audio_segment(duration=20_000, volume=-20),
                    root / "media")
    media = json.dumps({p: f.name for p, f in audio.files.items()})
    first_ms = int(datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=TZ)
                   .timestamp() * 1000)
    items = 0
    with Session(engine) as s, s.begin():
        for d in range(days):
            day = FIRST_DAY + timedelta(days=d)
            if day.weekday() not in (0, 2, 4):
                continue
            b = Bulletin(commune_id=cid, title=f"Bản tin ngày {day:%d/%m}", summary="Tin xã",
                         language="vi", kind="local_bulletin", origin="upload",
                         status="approved", duration_ms=audio.duration_ms, lufs=audio.lufs,
                         media=media, created_by="canbo", created_ms=first_ms + d * 86_400_000,
                         decided_by="truongban", decided_ms=first_ms + d * 86_400_000)
            s.add(b)
            s.flush()
            s.add(CalendarItem(commune_id=cid, bulletin_id=b.id, kind="local_bulletin",
                               priority=0, language="vi", title=b.title, summary=b.summary,
                               villages=json.dumps([r[0] for r in rows]), day=day.isoformat(),
                               start_min=7 * 60, end_min=7 * 60 + 1, created_by="canbo",
                               approved_by="truongban", created_ms=b.created_ms,
                               removed=False))
            items += 1
    last = FIRST_DAY + timedelta(days=days - 1)
    now = int(datetime(last.year, last.month, last.day, 10, 0, tzinfo=TZ).timestamp() * 1000)
    auth.add_user(engine, "canbo", PASSWORD, "officer", [cid], now, "Cán bộ văn hóa")
    engine.dispose()
    log(f"data: {built.rows:,} diary entries, {built.programme:,} programme items, {items} "
        f"calendar bulletins, {villages} villages, {days} days from {FIRST_DAY} "
        f"({time.perf_counter() - t0:.0f} s)")
    return db, schedule, cid, now


def measure_pages(db: Path, schedule: Path, cid: str, now_ms: int, days: int, rounds: int,
                  seed: int = 5) -> list[PageTimes]:

    engine = open_db(f"sqlite:///{db}")
    app = make_app(engine, db.parent / "media", clock=lambda: now_ms,
                   schedule_paths={cid: schedule})
    client = TestClient(app, follow_redirects=False)
    status = web_login(client, "canbo", PASSWORD)
    if status != 303:
        raise RuntimeError(f"log-in failed: HTTP {status}")
    rng = random.Random(seed)
    year = [FIRST_DAY + timedelta(days=rng.randrange(days)) for _ in range(rounds)]

    def timed(url: str, must: str) -> float:
        t0 = time.perf_counter()
        resp = client.get(url)
        took = (time.perf_counter() - t0) * 1000
        if resp.status_code != 200 or must not in resp.text:
            raise RuntimeError(f"GET {url}: HTTP {resp.status_code}")
        return took

    pages: list[tuple[str, Callable[[date], str], str]] = [
        ("calendar, a week (/c/…/calendar)", lambda d: f"/c/{cid}/calendar?week={d}",
         'id="week"'),
        ("diary page, a day (/diary/…)", lambda d: f"/diary/{cid}?first={d}&last={d}",
         "<table"),
        ("diary page, a week (/diary/…)",
         lambda d: f"/diary/{cid}?first={d}&last={d + timedelta(days=6)}", "<table"),
        ("reference: /healthz", lambda d: "/healthz", "ok"),
    ]
    out = []
    for name, url, must in pages:
        for d in year[:5]:
            timed(url(d), must)  # warm: templates compiled, schedule file read
        out.append(PageTimes(name, [timed(url(d), must) for d in year]))
    engine.dispose()
    return out


def add_parser(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = bench_sub.add_parser("web", help="officer pages with a year of data; a 10-minute "
                                         "bulletin upload through the audio pipeline")

    def positive(raw: str) -> int:
        value = int(raw)
        if value < 1:
            raise argparse.ArgumentTypeError("must be at least 1")
        return value

    p.add_argument("--villages", type=positive, default=25)
    p.add_argument("--days", type=positive, default=366, help="days of data (default a year)")
    p.add_argument("--rounds", type=positive, default=200, help="requests timed per page")
    p.add_argument("--upload-minutes", type=float, default=10.0)
    p.add_argument("--upload-runs", type=positive, default=3)
    p.add_argument("--skip-upload", action="store_true")


def run_web(args: argparse.Namespace) -> int:
    """Print the figures; 0 when every target is met, 1 when one is not."""
    missed = []
    with tempfile.TemporaryDirectory(prefix="loaxa-bench-web-") as tmp:
        root = Path(tmp)
        print(f"loaxa bench web: {args.villages} villages, {args.days} days, "
              f"{args.rounds} requests per page", flush=True)
        db, schedule, cid, now = build_commune(root, args.villages, args.days,
                                               lambda m: print(m, flush=True))
        for t in measure_pages(db, schedule, cid, now, args.days, args.rounds):
            print(t.line, flush=True)
            if not t.name.startswith("reference") and t.pct(95) > PAGE_TARGET_MS:
                missed.append(f"{t.name} p95 {t.pct(95):.0f} ms > {PAGE_TARGET_MS:.0f} ms")
        if not args.skip_upload:
            fig = measure_upload(root, args.upload_minutes, args.upload_runs)
            print(render(fig), flush=True)
            if not fig.within_time:
                missed.append(f"upload {fig.pipeline_s:.1f} s > 60 s")
            if not fig.within_ratio:
                missed.append(f"upload {fig.ratio:.2f}x bare ffmpeg > 1.5x")
    upload = "" if args.skip_upload else "; upload within 60 s and 1.5x bare ffmpeg"
    print("verdict: " + (f"NOT met: {'; '.join(missed)}" if missed else
                         f"met (pages p95 <= {PAGE_TARGET_MS:.0f} ms{upload})"))
    return 1 if missed else 0

"""`loaxa diary ...`: the broadcast diary on the command line (docs/technician.md).
It imports the domain inside its commands, for start-up time (see cli/main.py)."""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from headend.cli.common import (
    CliError,
    day,
    fmt_ms,
    path_arg,
)
from headend.core.home import Home

if TYPE_CHECKING:
    from sqlalchemy import Engine

PAGE_SIZE = 200


def _month(raw: str) -> tuple[int, int]:
    try:
        year, month = (int(x) for x in raw.split("-"))
        date(year, month, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM): {raw!r}") from None
    return year, month


def add_diary_parsers(diary: argparse.ArgumentParser) -> None:
    """Subcommands of `diary`; plain `loaxa diary [--day D]` lists one day's records."""
    sub = diary.add_subparsers(dest="diary", metavar="ACTION")
    verify = sub.add_parser("verify", help="check the hash chain of the diary; says where it "
                                           "was edited, cut or added to (exit 1)")
    verify.add_argument("--commune", default=None, metavar="ID",
                        help="one commune (default: all)")
    items = sub.add_parser("items", help="the commune diary: one line per programme item with "
                                         "the villages that aired it and those that did not")
    export = sub.add_parser("export", help="the Sổ nhật ký truyền thanh as pdf, xlsx or csv")
    for p in (items, export):
        p.add_argument("--commune", required=True, metavar="ID")
        p.add_argument("--from", dest="first", required=True, type=day, metavar="DATE")
        p.add_argument("--to", dest="last", required=True, type=day, metavar="DATE")
    items.add_argument("--page", type=int, default=1, help=f"page of {PAGE_SIZE} lines")
    export.add_argument("--format", dest="fmt", required=True, choices=("pdf", "xlsx", "csv"))
    export.add_argument("--output", required=True, type=path_arg, metavar="PATH")
    report = sub.add_parser("report", help="monthly report: hours by source and language, "
                                           "local news per week, villages with working "
                                           "loudspeakers, verdicts of criterion 8.3")
    report.add_argument("--commune", required=True, metavar="ID")
    report.add_argument("--month", required=True, type=_month, metavar="YYYY-MM")
    report.add_argument("--format", dest="fmt", choices=("pdf", "xlsx", "csv"), default=None,
                        help="also write the report to --output in this format")
    report.add_argument("--output", type=path_arg, default=None, metavar="PATH")
    correct = sub.add_parser("correct", help="correct an entry: a new entry that names it "
                                             "(the old one stays)")
    correct.add_argument("entry", type=int, metavar="ENTRY_ID")
    correct.add_argument("--outcome", required=True,
                         choices=("aired", "partial", "failed", "missed"))
    correct.add_argument("--note", required=True, help="why (kept in the diary)")
    correct.add_argument("--by", dest="operator", required=True, help="who corrects it")


def _engine(home: Home) -> Engine:
    from headend.core.db import open_db

    return open_db(home.db_url)


def run_diary(home: Home, args: argparse.Namespace) -> int:
    from headend.diary.reconciliation import DiaryQueryError

    engine = _engine(home)
    try:
        if args.diary == "verify":
            return _verify(engine, args.commune)
        if args.diary == "items":
            return _items(engine, args.commune, args.first, args.last, args.page)
        if args.diary == "export":
            return _export(engine, args)
        if args.diary == "report":
            return _report(engine, args)
        if args.diary == "correct":
            return _correct(engine, args)
    except DiaryQueryError as e:

        raise CliError(str(e)) from None
    finally:
        engine.dispose()
    raise AssertionError(args.diary)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _verify(engine: Engine, commune: str | None) -> int:
    from rich.progress import Progress
    from sqlalchemy import select

    from headend.core.models import Commune
    from headend.diary import chain
    from headend.diary.reconciliation import commune_info

    if commune is not None:
        commune_info(engine, commune)  # unknown commune: a clear error
        communes = [commune]
    else:
        with engine.connect() as conn:
            communes = list(conn.scalars(select(Commune.id).order_by(Commune.id)))
    total = chain.chain_size(engine, commune)
    with Progress(transient=True) as bar:
        task = bar.add_task("verifying", total=total)
        problems = chain.verify(engine, communes, lambda n: bar.advance(task, n))
    if not problems:
        print(f"Sổ nhật ký nguyên vẹn (diary intact): đã kiểm {total} mục của "
              f"{len(communes)} xã.")
        return 0
    print(f"Sổ nhật ký KHÔNG nguyên vẹn (diary NOT intact): {len(problems)} chỗ sai"
          f"{' (100 chỗ đầu)' if len(problems) >= 100 else ''}:")
    for p in problems:
        print(f"  {p}")
    return 1


def _items(engine: Engine, commune: str, first: date, last: date, page: int) -> int:
    from headend.diary.reconciliation import (
        KIND_VI,
        DiaryQueryError,
        lines_for_days,
        outcome_vi,
    )

    if page < 1:
        raise DiaryQueryError("--page starts at 1")
    info, lines = lines_for_days(engine, commune, first, last, _now_ms())
    pages = max(1, -(-len(lines) // PAGE_SIZE))
    if page > pages:
        raise DiaryQueryError(f"page {page} asked for; the range has {pages} page(s)")
    shown = lines[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    print(f"{info.name} ({info.province}), {first} đến {last}: {len(lines)} chương trình, "
          f"trang {page}/{pages}; giờ theo {info.tz.key}")
    for line in shown:
        silent = line.silent_text()
        print(f"{fmt_ms(line.planned_start_ms, info.tz)}  {outcome_vi(line):<16} "
              f"{KIND_VI.get(line.kind, line.kind):<20} {line.title}")
        print(f"    đã phát {fmt_ms(line.start_ms, info.tz)} – {fmt_ms(line.end_ms, info.tz)}; "
              f"thôn đã phát: {', '.join(line.aired_villages) or '-'}"
              f"{'; không phát: ' + silent if silent else ''}")
    return 0


def _export(engine: Engine, args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from headend.diary.exports import ExportError, export_diary

    try:
        with Progress(transient=True) as bar:
            task = bar.add_task(f"exporting {args.fmt}", total=None)
            summary = export_diary(engine, args.commune, args.first, args.last, args.fmt,
                                   Path(args.output), _now_ms(),
                                   progress=lambda done, total: bar.update(
                                       task, completed=done, total=total))
    except ExportError as e:
        raise CliError(str(e)) from None
    t = summary.totals
    print(f"Đã ghi {summary.path} ({summary.fmt}): {summary.commune}, {summary.first} đến "
          f"{summary.last}: {t.items} chương trình, {t.aired} đã phát, {t.not_aired} không "
          f"phát, {t.total_airtime_s / 3600:.1f} giờ phát")
    return 0


def _report(engine: Engine, args: argparse.Namespace) -> int:
    from headend.diary.exports import ExportError
    from headend.diary.monthly import export_monthly, monthly_report, render_text

    if (args.fmt is None) != (args.output is None):
        raise CliError("--format and --output go together")
    year, month = args.month
    report = monthly_report(engine, args.commune, year, month, _now_ms())
    print(render_text(report))
    if args.fmt:
        try:
            export_monthly(report, args.fmt, Path(args.output))
        except ExportError as e:
            raise CliError(str(e)) from None
        print(f"Đã ghi {args.output}")
    return 0


def _correct(engine: Engine, args: argparse.Namespace) -> int:
    from headend.diary import chain
    from headend.diary.reconciliation import OUTCOME_VI

    try:
        new_id = chain.correct(engine, args.entry, args.outcome, args.note, args.operator,
                               _now_ms())
    except chain.CorrectionError as e:
        raise CliError(str(e)) from None
    print(f"Đã sửa mục {args.entry} bằng mục mới {new_id} "
          f"({OUTCOME_VI.get(args.outcome, args.outcome)}) (corrected by new entry).")
    return 0

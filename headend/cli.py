"""The `loaxa` command. Every subcommand works on one state directory (--home or LOAXA_HOME)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from headend.home import Home, HomeError, default_home

if TYPE_CHECKING:
    from sqlalchemy import Engine




class CliError(Exception):
    pass


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(raw: str) -> int | float:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number: {raw!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0: {raw!r}")
        return value

    return parse


def _port(raw: str) -> int:
    value = _positive(int)(raw)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {raw!r}")
    return int(value)


def _day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {raw!r}") from None


def _dir(raw: str) -> Path:
    if not raw.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(raw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loaxa", description="LoaXa: commune radio headend, simulator and tools."
    )
    p.add_argument("--home", type=_dir, default=None,
                   help="state directory (default: $LOAXA_HOME, else $XDG_DATA_HOME/loaxa, "
                        "else ~/.local/share/loaxa)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a simulated commune with its web page")
    demo.add_argument("--duration", type=_positive(float), default=None, metavar="SECONDS",
                      help="stop by itself after this many seconds (default: until Ctrl-C)")
    demo.add_argument("--port", type=_port, default=8080, help="web page port (default 8080)")
    demo.add_argument("--commune", type=Path, default=None, metavar="FILE",
                      help="commune file (default: schedules/tan-lang.toml)")

    sub.add_parser("nodes", help="list the nodes and their state")

    diary = sub.add_parser("diary", help="print the broadcast diary of a day")
    diary.add_argument("--day", type=_day, default=None, help="YYYY-MM-DD (default: today)")

    web = sub.add_parser("web", help="serve the web page for an existing state directory")
    web.add_argument("--port", type=_port, default=8080)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    fan = bench_sub.add_parser("fanout", help="signed play fan-out to N nodes, acked")
    fan.add_argument("--nodes", type=_positive(int), default=2000)
    fan.add_argument("--rounds", type=_positive(int), default=7)
    fan.add_argument("--per-process", type=_positive(int), default=100,
                     help="simulated nodes per MicroPython process (default 100)")
    return p


def _fmt_ms(ms: int | None, tz: ZoneInfo) -> str:
    """A UTC ms timestamp as the commune's wall-clock time."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")


def _open_engine(home: Home) -> Engine:
    from headend.db import open_db

    return open_db(home.db_url)


def cmd_nodes(home: Home) -> None:
    from headend.diary import commune_timezone, node_rows

    engine = _open_engine(home)
    try:
        tz = commune_timezone(engine)
        rows = node_rows(engine)
    finally:
        engine.dispose()
    if not rows:
        print(f"No nodes in {home.root}; `loaxa demo` provisions a commune.")
        return
    print(f"Times in {tz.key}")
    print(f"{'NODE':<20} {'VILLAGE':<20} {'STATE':<8} {'LAST SEEN':<20} PLAYING")
    for n in rows:
        print(f"{n.id:<20} {n.village:<20} {'online' if n.online else 'offline':<8} "
              f"{_fmt_ms(n.last_seen_ms, tz):<20} {n.playing or '-'}")
    print(f"{sum(n.online for n in rows)} of {len(rows)} online")


def cmd_diary(home: Home, day: date | None) -> None:
    from headend.diary import commune_timezone, diary_for_day

    engine = _open_engine(home)
    try:
        tz = commune_timezone(engine)
        day = day or datetime.now(tz).date()
        rows = diary_for_day(engine, day, tz)
    finally:
        engine.dispose()
    if not rows:
        print(f"Diary {day.isoformat()} ({tz.key}): nothing recorded on this day.")
        return
    print(f"Diary {day.isoformat()} ({tz.key}): {len(rows)} records")
    print(f"{'START':<19}  {'END':<19}  {'NODE':<20} {'VILLAGE':<20} {'OUTCOME':<8} TITLE")
    for r in rows:
        print(f"{_fmt_ms(r.start_ms, tz):<19}  {_fmt_ms(r.end_ms, tz):<19}  {r.node_id:<20} "
              f"{r.village:<20} {r.outcome:<8} "
              f"{r.title or '-'}{'  (' + r.reason + ')' if r.reason else ''}")


def cmd_web(home: Home, port: int) -> None:
    import uvicorn

    from headend.db import open_db
    from headend.demo import check_port_free
    from headend.web import make_app

    engine = open_db(home.db_url)
    try:
        check_port_free(port)
        uvicorn.run(make_app(engine, home.media_dir), host="127.0.0.1", port=port)
    finally:
        engine.dispose()


def check_commune_file(path: Path) -> None:
    """Load the commune file now, so a bad one stops `demo` before anything starts."""
    from headend.commune import CommuneFileError, load_commune

    try:
        load_commune(path)
    except CommuneFileError as e:
        raise CliError(f"bad commune file {e}") from None


def run(args: argparse.Namespace) -> None:
    root = args.home or default_home()
    if args.command == "demo":
        from headend.demo import DEFAULT_COMMUNE, check_port_free, run_demo

        commune = args.commune or DEFAULT_COMMUNE
        # Everything that can be checked is checked before the state directory is touched.
        check_commune_file(commune)
        check_port_free(args.port)
        home = Home.create(root)
        asyncio.run(run_demo(home, commune, args.duration, args.port))
    elif args.command == "nodes":
        cmd_nodes(Home.open(root))
    elif args.command == "diary":
        cmd_diary(Home.open(root), args.day)
    elif args.command == "web":
        cmd_web(Home.open(root), args.port)
    elif args.command == "bench":
        from headend.bench import run_fanout

        asyncio.run(run_fanout(args.nodes, args.rounds, args.per_process))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from headend.broker import BrokerError
    from headend.commune import CommuneFileError
    from headend.db import DatabaseBroken
    from headend.demo import DemoError

    try:
        run(args)
    except (HomeError, DatabaseBroken, CommuneFileError, BrokerError, DemoError, CliError) as e:
        print(f"loaxa: error: {e}", file=sys.stderr)
        return 2
    except CommandError as e:
        # Alembic: the database names a schema revision this LoaXa does not know.
        print(f"loaxa: error: database schema cannot be migrated ({e}); "
              "is it from a newer LoaXa?", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:
        # The database opened but a table or row is missing or damaged.
        detail = getattr(e, "orig", None) or e
        print(f"loaxa: error: cannot read the database: {detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

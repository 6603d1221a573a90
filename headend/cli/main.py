"""The `loaxa` command. Every subcommand works on one state directory (--home or LOAXA_HOME).

The domain modules are imported inside the commands that use them, to keep start-up short:
`loaxa --help` takes 0.2 s where importing all of the headend (SQLAlchemy, FastAPI, audio)
takes seconds."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from headend.bench.commands import add_bench_parsers, run_bench
from headend.cli.common import (
    CliError,
    day,
    fmt_ms,
    open_engine,
    operator_name,
    path_arg,
    port,
    positive,
    running_headend,
    who_and_where,
)
from headend.cli.diary import add_diary_parsers, run_diary
from headend.cli.nodes import add_node_parsers, cmd_node, cmd_nodes
from headend.cli.users import add_user_parsers, cmd_user
from headend.core.home import Home, HomeError, default_home

if TYPE_CHECKING:
    pass




def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loaxa", description="LoaXa: commune radio headend, simulator and tools."
    )
    p.add_argument("--home", type=path_arg, default=None,
                   help="state directory (default: $LOAXA_HOME, else $XDG_DATA_HOME/loaxa, "
                        "else ~/.local/share/loaxa)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a simulated commune with its web page")
    demo.add_argument("--duration", type=positive(float), default=None, metavar="SECONDS",
                      help="stop by itself after this many seconds (default: until Ctrl-C)")
    demo.add_argument("--port", type=port, default=8080, help="web page port (default 8080)")
    demo.add_argument("--commune", type=Path, default=None, metavar="FILE",
                      help="commune file (default: schedules/tan-lang.toml)")

    add_node_parsers(sub)
    add_user_parsers(sub)

    diary = sub.add_parser("diary", help="the broadcast diary: a day's records (default), "
                                         "verify, items, export, report, correct")
    diary.add_argument("--day", type=day, default=None, help="YYYY-MM-DD (default: today)")
    add_diary_parsers(diary)

    web = sub.add_parser("web", help="serve the web page for an existing state directory")
    web.add_argument("--port", type=port, default=8080)

    add_schedule_parsers(sub)
    add_operation_parsers(sub)
    add_bench_parsers(sub, every=argv is None or "bench" in argv)
    return p


def add_operation_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`serve`, `broadcast emergency` and `alarms`."""
    serve = sub.add_parser("serve", help="run the headend: broker, plans for every node, web page")
    serve.add_argument("schedule", type=path_arg, metavar="SCHEDULE",
                       help="the commune's schedule file (schedules/*.toml)")
    serve.add_argument("--port", type=port, default=8080,
                       help="web page and media port (default 8080)")
    serve.add_argument("--listen", default="127.0.0.1", metavar="ADDRESS",
                       help="address nodes and officers reach (default 127.0.0.1; any other "
                            "needs --name: everything off this machine is TLS)")
    serve.add_argument("--name", dest="names", action="append", default=[], metavar="HOST",
                       help="the host name (or address) nodes and browsers dial; turns on "
                            "TLS with the installation's certificate for it (repeatable)")
    serve.add_argument("--node-port", type=port, default=None, metavar="PORT",
                       help="nodes' MQTT port (default 8883 with --name, else a free one)")
    tls = sub.add_parser("tls", help="the installation's TLS certificate (what nodes and "
                                     "browsers check)")
    tls_sub = tls.add_subparsers(dest="tls_op", required=True, metavar="OPERATION")
    tls_sub.add_parser("show", help="names, expiry and the CA's fingerprint")
    use = tls_sub.add_parser("use", help="serve your own certificate (checked first)")
    use.add_argument("--cert", type=path_arg, required=True, metavar="PEM")
    use.add_argument("--key", type=path_arg, required=True, metavar="PEM")
    use.add_argument("--ca", type=path_arg, required=True, metavar="PEM",
                     help="the CA that signed it: what provisioning gives the nodes to pin")
    bc = sub.add_parser("broadcast", help="send a broadcast now")
    bc_sub = bc.add_subparsers(dest="broadcast", required=True, metavar="KIND")
    em = bc_sub.add_parser(
        "emergency", help="play an emergency announcement at once on the target nodes "
                          "(interrupts everything, also in quiet hours)")
    em.add_argument("--commune", required=True, metavar="ID", help="commune id")
    what = em.add_mutually_exclusive_group()
    what.add_argument("--file", type=path_arg, default=None, metavar="FILE",
                      help="audio file (mp3, wav, m4a, ogg ...)")
    what.add_argument("--text", default=None, metavar="TEXT",
                      help="Vietnamese text, spoken by the text-to-speech engine")
    em.add_argument("--villages", nargs="+", default=None, metavar="VILLAGE",
                    help="village ids (default: every village of the commune)")
    em.add_argument("--title", default="Thông báo khẩn cấp", help="title for the diary")
    em.add_argument("--operator", default=None,
                    help="who sends it, for the log (default: your login name)")
    em.add_argument("--wait", type=positive(float), default=15.0, metavar="SECONDS",
                    help="how long to wait for the nodes to start (default 15)")
    alarms = sub.add_parser("alarms", help="list alarms")
    alarms.add_argument("--all", action="store_true", help="cleared alarms too")



def add_schedule_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`init commune` and `schedule check` (docs/schedules.md)."""
    init = sub.add_parser("init", help="create files from templates")
    init_sub = init.add_subparsers(dest="init", required=True, metavar="WHAT")
    ic = init_sub.add_parser("commune", help="a commune file from the Lạng Sơn template")
    ic.add_argument("name", metavar="NAME", help='the commune\'s name, e.g. "Xã Tân Lang"')
    ic.add_argument("--output", type=path_arg, default=None, metavar="PATH",
                    help="file to write (default: <slug of NAME>.toml in this directory)")
    sched = sub.add_parser("schedule", help="schedule files")
    sched_sub = sched.add_subparsers(dest="schedule", required=True, metavar="ACTION")
    check = sched_sub.add_parser(
        "check", help="check a schedule file and judge criterion 8.3 week by week "
                      "(exit 2: errors in the file, 1: a week falls short, 0: fine)")
    check.add_argument("file", type=path_arg, metavar="FILE")
    check.add_argument("--from", dest="from_day", type=day, default=None, metavar="DATE",
                       help="first week: the one holding DATE (default: this week)")
    check.add_argument("--weeks", type=positive(int), default=4, help="weeks (default 4)")



def cmd_diary(home: Home, day: date | None) -> None:
    from headend.diary.reading import commune_timezone, diary_for_day
    from headend.diary.reasons import reason_vi
    from headend.diary.reconciliation import OUTCOME_VI

    engine = open_engine(home)
    try:
        tz = commune_timezone(engine)
        day = day or datetime.now(tz).date()
        rows = diary_for_day(engine, day, tz)
    finally:
        engine.dispose()
    if not rows:
        print(f"Sổ nhật ký {day.isoformat()} ({tz.key}): không có gì được ghi trong ngày này "
              "(nothing recorded).")
        return
    print(f"Sổ nhật ký {day.isoformat()} ({tz.key}): {len(rows)} bản ghi")
    print(f"{'BẮT ĐẦU':<19}  {'KẾT THÚC':<19}  {'CỤM LOA':<20} {'THÔN':<20} {'KẾT QUẢ':<16} "
          "CHƯƠNG TRÌNH")
    for r in rows:
        why = reason_vi(r.reason)
        print(f"{fmt_ms(r.start_ms, tz):<19}  {fmt_ms(r.end_ms, tz):<19}  {r.node_id:<20} "
              f"{r.village:<20} {OUTCOME_VI.get(r.outcome, r.outcome):<16} "
              f"{r.title or '-'}{'  (' + why + ')' if why else ''}")


def cmd_web(home: Home, port: int) -> None:
    import uvicorn

    from headend.core.db import open_db
    from headend.runtime.demo import check_port_free
    from headend.web.app import make_app
    from headend.web.context import proxy_options

    engine = open_db(home.db_url)
    try:
        check_port_free(port)
        uvicorn.run(make_app(engine, home.media_dir), host="127.0.0.1", port=port,
                    **proxy_options())
    finally:
        engine.dispose()


def check_commune_file(path: Path) -> None:
    """Load the commune file now, so a bad one stops `demo` before anything starts."""
    from headend.communes.files import CommuneFileError, load_commune

    try:
        load_commune(path)
    except CommuneFileError as e:
        raise CliError(f"bad commune file {e}") from None


def cmd_init_commune(name: str, output: Path | None) -> None:
    from headend.planning.templates import commune_from_template

    slug, text = commune_from_template(name)
    path = output or Path(f"{slug}.toml")
    if path.is_dir():
        path = path / f"{slug}.toml"
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise CliError(f"{path} already exists; not overwritten "
                       "(choose another --output or remove it)") from None
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror}") from None
    print(f"Đã tạo (created) {path} for {name}. Edit the villages, node ids and stream "
          f"addresses, then run: loaxa schedule check {path}")


def cmd_schedule_check(path: Path, from_day: date | None, weeks: int) -> int:
    """Print the file's warnings and the criterion 8.3 tables; the exit code."""
    from datetime import timedelta

    from headend.planning.criterion import format_week, judge_plan
    from headend.planning.schedule import load_schedule

    schedule = load_schedule(path)  # ScheduleError: main() prints every error, exit 2
    tz = ZoneInfo(schedule.commune.timezone)
    first = from_day or datetime.now(tz).date()
    monday = first - timedelta(days=first.weekday())
    verdicts = judge_plan(schedule, monday, weeks)
    c = schedule.commune
    print(f"{path}: {c.name} ({c.id}), {len(c.villages)} thôn, {len(c.node_ids)} cụm loa, "
          f"{len(schedule.slots)} khung giờ; giờ theo {tz.key}")
    for problem in schedule.warnings:
        print(f"cảnh báo (warning): {problem}")
    for v in verdicts:
        print()
        print("\n".join(format_week(v)))
    short = [v for v in verdicts if not v.ok]
    print()
    for v in short:
        print(f"CẢNH BÁO (warning): tuần {v.week} ({v.monday.isoformat()}) chưa đạt tiêu chí "
              f"8.3: {'; '.join(v.missing)}")
    if short:
        return 1
    print(f"Tiêu chí 8.3 (criterion 8.3): ĐẠT (met) cả {weeks} tuần")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code (errors raise, see main)."""
    if args.command == "init":
        cmd_init_commune(args.name, args.output)
        return 0
    if args.command == "schedule":
        return cmd_schedule_check(args.file, args.from_day, args.weeks)
    if args.command == "bench":
        return run_bench(args)
    root = args.home or default_home()
    if args.command == "demo":
        from headend.runtime.demo import DEFAULT_COMMUNE, check_port_free, run_demo

        commune = args.commune or DEFAULT_COMMUNE
        # Everything that can be checked is checked before the state directory is touched.
        check_commune_file(commune)
        check_port_free(args.port)
        home = Home.create(root)
        asyncio.run(run_demo(home, commune, args.duration, args.port))
    elif args.command == "nodes":
        return cmd_nodes(Home.open(root), args)
    elif args.command == "node":
        # A node can be provisioned before the headend first runs; flashing needs no state.
        opener = {"provision": Home.create, "flash": Home}.get(args.node_op, Home.open)
        return cmd_node(opener(root), args)
    elif args.command == "user":
        return cmd_user(Home.open(root), args)
    elif args.command == "diary" and args.diary:
        return run_diary(Home.open(root), args)
    elif args.command == "diary":
        cmd_diary(Home.open(root), args.day)
    elif args.command == "web":
        cmd_web(Home.open(root), args.port)
    elif args.command == "serve":
        cmd_serve(Home.create(root), args)
    elif args.command == "broadcast":
        return cmd_broadcast(Home.open(root), args)
    elif args.command == "tls":
        return cmd_tls(Home.create(root), args)
    elif args.command == "alarms":
        cmd_alarms(Home.open(root), args.all)
    return 0


def cmd_serve(home: Home, args: argparse.Namespace) -> None:
    from headend.runtime.demo import check_port_free
    from headend.runtime.serve import serve

    check_commune_file(args.schedule)
    check_port_free(args.port)
    node_port = args.node_port or (8883 if args.names else None)
    asyncio.run(serve(home, args.schedule, args.port, args.listen, args.names, node_port))


def cmd_tls(home: Home, args: argparse.Namespace) -> int:
    import hashlib

    from headend.core import tls

    files = tls.installed(home)
    if args.tls_op == "use":
        files = tls.use_operator(home, args.cert, args.key, args.ca)
        print("Đã dùng chứng chỉ của bạn (your certificate is in use); restart `loaxa serve`. "
              "Nodes provisioned before pin the previous CA: provision them again.")
    if not files.cert.exists():
        raise CliError("chưa có chứng chỉ: `loaxa serve --name HOST` tạo ra "
                       "(no certificate yet)")
    print(f"names: {', '.join(files.names())}")
    print(f"valid until: {files.expires():%Y-%m-%d} (renewed 30 days before, same CA)")
    print(f"CA SHA-256: {hashlib.sha256(files.ca_der()).hexdigest()}")
    return 0


def cmd_broadcast(home: Home, args: argparse.Namespace) -> int:
    from headend.communes.registry import headend_password
    from headend.core.db import open_db
    from headend.diary.reasons import reason_vi
    from headend.media.library import MediaLibrary
    from headend.nodes import emergency as em

    running = running_headend(home.running_path)
    engine = open_db(home.db_url)
    try:
        target = em.find_target(engine, args.commune, args.villages)
        library = MediaLibrary(home.media_dir, str(running.get("media_base") or
                                                   f"http://127.0.0.1:{running['web_port']}"))
        media = em.emergency_audio(library, args.file, args.text)
        _, where = who_and_where()
        result = asyncio.run(em.send_from_cli(
            engine, int(str(running["broker_port"])), headend_password(home), target, media,
            args.title, operator_name(args.operator), where, args.text, args.wait))
    finally:
        engine.dispose()
    print(f"Khẩn cấp #{result.broadcast_id}: {len(result.started)}/{len(result.nodes)} "
          "cụm loa đã bắt đầu phát")
    for node, reason in sorted(result.refused.items()):
        print(f"  {node}: từ chối ({reason_vi(reason)})")
    for node in result.silent:
        print(f"  {node}: không trả lời trong {args.wait:g} giây (mất kết nối?)")
    return 0 if len(result.started) == len(result.nodes) else 1


def cmd_alarms(home: Home, show_all: bool) -> None:
    from headend.core.alarms import list_alarms
    from headend.diary.reading import commune_timezone

    engine = open_engine(home)
    try:
        tz = commune_timezone(engine)
        alarms = list_alarms(engine, open_only=not show_all)
    finally:
        engine.dispose()
    if not alarms:
        print("Không có cảnh báo nào đang mở." if not show_all else "Không có cảnh báo nào.")
        return
    print(f"{'LÚC BÁO':<19}  {'LÚC HẾT':<19}  {'CẢNH BÁO':<40} {'Ở ĐÂU':<24} CHI TIẾT")
    for a in alarms:
        print(f"{fmt_ms(a.raised_ms, tz):<19}  {fmt_ms(a.cleared_ms, tz):<19}  "
              f"{a.label:<40} {a.subject:<24} {a.detail}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from headend.communes.files import CommuneFileError
    from headend.communes.registry import ProvisionError
    from headend.core.auth import AuthError
    from headend.core.db import DatabaseBroken
    from headend.core.tls import TlsError
    from headend.nodes.broker import BrokerError
    from headend.nodes.emergency import EmergencyError
    from headend.runtime.demo import DemoError

    try:
        code = run(args)
    except (HomeError, DatabaseBroken, CommuneFileError, BrokerError, DemoError, CliError,
            EmergencyError, AuthError, ProvisionError, TlsError) as e:
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
    return code


if __name__ == "__main__":
    sys.exit(main())

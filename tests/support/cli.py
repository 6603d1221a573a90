"""Running `loaxa` commands inside the test process, as a user would type them."""

from __future__ import annotations

import json
import os

import pytest

from headend.cli.main import main
from support.loaxa_stack import Stack


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int | None, str, str]:
    """headend.cli.main.main in this process; argparse errors exit via SystemExit(2)."""
    try:
        code: int | None = main(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def running(stack: Stack) -> None:
    stack.home.running_path.write_text(json.dumps({
        "pid": os.getpid(), "broker_port": stack.broker.port,
        "node_port": stack.broker.node_port, "web_port": stack.web_port,
        "media_base": f"http://{stack.media_host}"}))


def node_cli(stack: Stack, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--home", str(stack.home.root), "node", *args, "--operator", "KTV Hùng"])
    out, err = capsys.readouterr()
    return code, out + err

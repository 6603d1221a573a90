"""Run a LoaXa node on a Raspberry Pi (the launcher starts this from the current slot):

    python -m hal.rpi.main --config /etc/loaxa/node.json [--mock-gpio]

--mock-gpio uses gpiozero's MockFactory (a PC, tests); the config's "rpi" section chooses
the pins, the ALSA device and mpv's options (tests: "mpv_args": ["--ao=pcm", ...])."""
import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any

from firmware import device
from hal.rpi import RpiBoard
from hal.rpi.system import sd_notify


def make_factory(mock: bool) -> Any:
    if not mock:
        return None
    from gpiozero.pins.mock import MockFactory, MockPWMPin
    return MockFactory(pin_class=MockPWMPin)


async def run_node(board: RpiBoard, config: dict[str, Any]) -> None:
    board.bind_loop(asyncio.get_running_loop())
    sd_notify("READY=1")
    await device.run(board, config)  # the firmware, as every board runs it


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="LoaXa node on a Raspberry Pi")
    p.add_argument("--config", default="/etc/loaxa/node.json")
    p.add_argument("--mock-gpio", action="store_true", help="gpiozero's MockFactory")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with open(a.config) as f:
        config = json.load(f)
    board = RpiBoard(config, pin_factory=make_factory(a.mock_gpio))

    async def guarded() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await run_node(board, config)

    try:
        asyncio.run(guarded())
    finally:
        board.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

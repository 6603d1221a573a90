# What an ESP32 node runs at boot: `loaxa node flash` copies this file to the board as main.py,
# beside config.json (from `loaxa node provision`) and the compiled firmware/ and hal/.
import asyncio
import json
import time

import machine

from firmware import device
from hal.esp32 import Esp32Board

CRASH_PAUSE_MS = 5000  # before resetting after a crash, so a boot loop does not spin hot


def main():
    with open("config.json") as f:
        config = json.load(f)
    board = Esp32Board(config)
    asyncio.run(device.run(board, config))


try:
    main()
except KeyboardInterrupt:  # a technician at the REPL (mpremote): stay in the REPL
    raise
except Exception as e:  # anything: the board must come back by itself
    import sys

    sys.print_exception(e)  # type: ignore[attr-defined]
    time.sleep_ms(CRASH_PAUSE_MS)  # type: ignore[attr-defined]
    machine.reset()

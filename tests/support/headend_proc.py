"""The headend's MQTT service alone, as its own process, so a test can kill it with SIGKILL
(tests/e2e/test_e2e_diary.py). Argument: JSON with db, port, password and the shared clock."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from hal.sim import SimClock
from headend.core.db import open_db
from headend.nodes.gateway import Gateway


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    clock = SimClock(rate=cfg["rate"], sim_epoch_ms=cfg["sim_epoch_ms"],
                     real_epoch_ms=cfg["real_epoch_ms"], warp=cfg.get("warp"))
    engine = open_db(cfg["db"])
    asyncio.run(Gateway(engine, cfg["port"], cfg["password"], clock=clock.time_ms).run())


if __name__ == "__main__":
    main()

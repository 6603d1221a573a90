"""Benchmarks run whatever the hour: `loaxa bench fanout` inside the commune's quiet hours
(00:28 in Vietnam, on a controlled clock shared by the headend and the nodes) still has every
node take the play. Before, all 2,000 nodes refused it with `quiet_hours` at that hour."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from firmware.plan import in_quiet
from hal.sim import SimClock
from headend.bench.fanout import run_fanout
from headend.planning.schedule import DEFAULT_QUIET

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def night() -> SimClock:
    """Real-time rate, starting at 00:28 tonight in Vietnam."""
    at = datetime.now(TZ).replace(hour=0, minute=28, second=0, microsecond=0) + timedelta(days=1)
    return SimClock(sim_epoch_ms=int(at.timestamp() * 1000))


def test_night_is_inside_the_default_quiet_hours() -> None:
    clock = night()
    assert in_quiet([*DEFAULT_QUIET, 7 * 60], clock.time_ms())


@pytest.mark.timeout(300)
def test_fanout_smoke_run_inside_quiet_hours(tmp_path: Path) -> None:
    result = asyncio.run(run_fanout(6, 1, 6, root=tmp_path, clock=night()))
    # run_fanout raises when a node refuses the play; every round was measured.
    assert len(result.signed_s) == 1 and len(result.reference_s) == 1
    assert result.signed_s[0] > 0

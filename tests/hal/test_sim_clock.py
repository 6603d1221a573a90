"""hal.sim.SimClock, the controlled clock the simulator, the tests and the benchmarks share:
a fixed rate, and warped stretches (a simulated week's idle hours run faster)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hal.sim import SimClock

REPO = Path(__file__).resolve().parents[2]
H = 3_600_000


def test_a_fixed_rate_reads_and_sleeps_in_simulated_time() -> None:
    clock = SimClock(rate=100, sim_epoch_ms=0, real_epoch_ms=time.time_ns() // 1_000_000)
    t0 = time.monotonic()
    asyncio.run(clock.sleep_ms(5_000))  # 50 ms real
    real = time.monotonic() - t0
    assert 0.045 <= real < 0.5
    assert 5_000 <= clock.time_ms() < 50_000


def test_warped_stretches_run_at_their_own_rate_and_back() -> None:
    real0 = 1_000_000_000
    # 10x, then 1000x from 1 h to 3 h of simulated time, then 10x again.
    clock = SimClock(rate=10, sim_epoch_ms=0, real_epoch_ms=real0, warp=[[H, 3 * H, 1000]])
    assert clock.real_ms_at(0) == real0
    assert clock.real_ms_at(H) == real0 + H / 10  # 6 min real
    assert clock.real_ms_at(3 * H) == real0 + H / 10 + 2 * H / 1000
    assert clock.real_ms_at(4 * H) == real0 + H / 10 + 2 * H / 1000 + H / 10
    assert clock.config() == {"sim_epoch_ms": 0, "real_epoch_ms": real0, "rate": 10,
                              "warp": [[H, 3 * H, 1000]]}


@pytest.mark.parametrize("offset", [0, 2_500])
def test_reading_and_inverting_agree_across_stretches(offset: int) -> None:
    now = time.time_ns() // 1_000_000
    # The warp began a simulated hour ago, so "now" is inside it.
    clock = SimClock(offset_ms=offset, rate=50, sim_epoch_ms=0, real_epoch_ms=now - 10_000,
                     warp=[[100_000, 100 * H, 2000]])
    sim = clock.time_ms()
    assert abs(clock.real_ms_at(sim) - time.time_ns() / 1e6) < 50
    t0 = time.monotonic()
    asyncio.run(clock.sleep_ms(200_000))  # 100 ms real at 2000x
    assert 0.09 <= time.monotonic() - t0 < 0.6
    assert clock.time_ms() >= sim + 200_000


def test_the_same_clock_under_micropython() -> None:
    micropython = Path(sys.executable).parent / "micropython"
    if not micropython.exists():
        pytest.skip("MicroPython unix port not installed (make install)")
    code = ("import sys; sys.path.insert(0, '.');"
            "from hal.sim import SimClock;"
            f"c = SimClock(0, 10, 0, 1000000000, [[{H}, {3 * H}, 1000]]);"
            f"print(c.real_ms_at({4 * H}))")
    out = subprocess.run([str(micropython), "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == 1_000_000_000 + H / 10 + 2 * H / 1000 + H / 10

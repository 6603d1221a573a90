"""`loaxa bench start` on a small fleet and the day's first item: the benchmark's own run (headend,
stations, real firmware under MicroPython) measures an audio start for every planned item on
every node. Its figures are the benchmark's to print, not this test's to judge."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import pytest

from headend.bench.start import _run


@pytest.mark.timeout(300)
def test_start_smoke_run_measures_every_item_on_every_node(tmp_path: Path) -> None:
    day = date.today() + timedelta(days=1)
    planned, opened = asyncio.run(_run(tmp_path, 5, 200, day, end_hm=(5, 35), lead_s=6))
    assert len(planned) == 1  # the 05:30 relay
    assert {item: len(nodes) for item, nodes in opened.items()} == {
        item: 5 for item in planned}
    for item, at in planned.items():
        assert all(t >= at for t in opened[item].values()), (item, opened[item])

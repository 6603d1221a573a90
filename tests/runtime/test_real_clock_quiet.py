"""Nodes on the real clock (test stacks, the demo) get quiet hours 12 hours away from now, so
they play whatever the hour the tests run; the window must really be away from now."""

from __future__ import annotations

import time

from firmware.plan import in_quiet
from hwsim.fleet import quiet_away_from_now

HOUR_MS = 3_600_000


def test_the_window_is_twelve_hours_from_now_in_local_time() -> None:
    # 2026-11-23 17:45:55 UTC is 00:45 in Vietnam: the window is 12:45-13:45 there
    assert quiet_away_from_now(7 * 60, now_ms=1_795_455_955_403) == [765, 825, 420]
    # The same instant at UTC-3 (14:45 local): 02:45-03:45 local
    assert quiet_away_from_now(-180, now_ms=1_795_455_955_403) == [165, 225, -180]


def test_now_and_the_next_eleven_hours_are_never_quiet() -> None:
    start_ms = 1_795_455_955_403
    for step in range(0, 24 * 60, 7):  # every 7 minutes of a day, and several offsets
        now = start_ms + step * 60_000
        for offset in (-720, -180, 0, 420, 840):
            quiet = quiet_away_from_now(offset, now_ms=now)
            for ahead in range(0, 11 * HOUR_MS + 1, HOUR_MS // 4):
                assert not in_quiet(quiet, now + ahead), (quiet, now, ahead)
            assert in_quiet(quiet, now + 12 * HOUR_MS + 60_000), (quiet, now)


def test_without_a_time_it_uses_the_real_clock() -> None:
    quiet = quiet_away_from_now()
    now = time.time_ns() // 1_000_000
    assert not in_quiet(quiet, now) and in_quiet(quiet, now + 12 * HOUR_MS + 60_000)

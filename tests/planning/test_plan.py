"""Expansion of schedules into per-node plans: examples, then properties over generated files."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.schedule_files import HEAD, MIN, VN, load, ms, slot

from headend.planning.expansion import MAX_ENTRY_ID, PlanEntry, expand
from headend.planning.schedule import (
    KINDS,
    RELAY_KINDS,
    ScheduleError,
    hhmm,
    load_schedule,
)

REPO = Path(__file__).resolve().parents[2]
VILLAGE_NODES = {"v0": ["n0-a", "n0-b"], "v1": ["n1-a"], "v2": ["n2-a"]}





def test_preemption_is_time_anchored(tmp_path: Path) -> None:
    # A 30-minute normal bulletin cut by a priority notice and an emergency inside it.
    s = load(tmp_path, slot("bt", "local_bulletin", "17:00", "17:30")
             + slot("tb", "notice", "17:10", "17:15", **{"class": '"priority"'})
             + slot("kc", "emergency", "17:12", "17:20", date='"2026-03-02"'))
    monday = date(2026, 3, 2)
    plans = expand(s, ms(monday), ms(monday + timedelta(days=1)))
    got = [(e.id, hhmm((e.start_ms - ms(monday)) // MIN), hhmm((e.end_ms - ms(monday)) // MIN),
            e.offset_ms // MIN, e.priority) for e in plans["n0-a"]]
    assert got == [
        ("bt@2026-03-02", "17:00", "17:10", 0, 0),
        ("tb@2026-03-02", "17:10", "17:12", 0, 1),
        ("kc@2026-03-02", "17:12", "17:20", 0, 2),
        ("bt@2026-03-02#2", "17:20", "17:30", 20, 0),  # continues where it would be by now
    ]
    assert all(e.placeholder for e in plans["n0-a"])  # recorded, no media
    assert plans["n0-a"] == plans["n0-b"] == plans["n2-a"]
    # Tuesday: no emergency, so the notice is whole and the bulletin continues after it.
    tue = monday + timedelta(days=1)
    ids = [(e.id, e.offset_ms // MIN) for e in expand(s, ms(tue), ms(tue, 1440))["n1-a"]]
    assert ids == [("bt@2026-03-03", 0), ("tb@2026-03-03", 0), ("bt@2026-03-03#2", 15)]


def test_relay_starts_on_time_and_carries_its_source(tmp_path: Path) -> None:
    s = load(tmp_path, slot("bt", "local_bulletin", "05:50", "06:10")
             + slot("vov", "vov_relay", "06:00", "06:30", **{"class": '"priority"'}))
    d = date(2026, 3, 2)
    e = expand(s, ms(d), ms(d, 1440))["n0-a"]
    assert [(x.slot_id, x.start_ms - ms(d)) for x in e] == [("bt", 350 * MIN), ("vov", 360 * MIN)]
    assert e[1].source is not None and e[1].source.primary == "http://127.0.0.1:9/vov1"
    assert e[0].end_ms == e[1].start_ms
    assert any("cut by priority slot 'vov'" in str(w) for w in s.warnings)


def test_targets_holidays_and_one_offs(tmp_path: Path) -> None:
    s = load(tmp_path, slot("tay", "local_bulletin", "17:30", "17:45", target='"group:g"')
             + slot("vov", "vov_relay", "18:00", "18:30", on_holidays="true")
             + slot("once", "notice", "07:00", "07:05", date='"2027-02-08"')
             + '\n[[holidays]]\nname = "Tết"\nfrom = "2027-02-05"\nuntil = "2027-02-10"\n')
    d0 = date(2027, 2, 4)
    plans = expand(s, ms(d0), ms(d0 + timedelta(days=8)))
    days = defaultdict(set)
    for n, entries in plans.items():
        for e in entries:
            days[(n, e.slot_id)].add(e.occurrence.split("@")[1])
    assert len(days[("n0-a", "vov")]) == 8  # relays keep going on holidays
    assert ("n0-a", "tay") not in days  # not in the group
    assert days[("n1-a", "tay")] == {"2027-02-04", "2027-02-11"}  # skipped during Tết
    assert days[("n2-a", "once")] == {"2027-02-08"}  # one-off items ignore holidays


def test_window_edges_and_stable_ids(tmp_path: Path) -> None:
    s = load(tmp_path, slot("vov", "vov_relay", "06:00", "06:30"))
    d = date(2026, 3, 2)
    whole = expand(s, ms(d), ms(d, 3 * 1440))["n0-a"]
    # A window starting mid-relay still holds that entry, whole and with the same id.
    part = expand(s, ms(d, 6 * 60 + 10), ms(d, 1440 + 6 * 60))["n0-a"]
    assert part == [whole[0]]
    assert expand(s, ms(d), ms(d))["n0-a"] == []
    assert expand(s, ms(d, 6 * 60 + 30), ms(d, 1440 + 6 * 60))["n0-a"] == []


def test_a_year_of_the_example_commune() -> None:
    s = load_schedule(REPO / "schedules" / "tan-lang.toml")
    d = date(2027, 1, 1)
    plans = expand(s, ms(d), ms(date(2028, 1, 1)))
    assert set(plans) == set(s.commune.node_ids)
    for entries in plans.values():
        assert len({e.id for e in entries}) == len(entries)
        assert all(len(e.id) <= MAX_ENTRY_ID for e in entries)
        assert sum(e.slot_id == "vov-sang" for e in entries) == 365


# --- properties over generated schedules ---------------------------------------------------

WINDOW_FIRST = date(2027, 1, 25)
SATURDAY = date(2026, 3, 7)  # Tết 2027 is in the generated window sometimes


@st.composite
def schedules(draw: st.DrawFn) -> tuple[str, list[dict[str, object]]]:
    """A schedule file text. Same-class slots never overlap in time (by construction)."""
    specs: list[dict[str, object]] = []
    for cls in ("normal", "priority", "emergency"):
        k = draw(st.integers(0, 3))
        longest = {"normal": 240, "priority": 60, "emergency": 20}[cls]
        windows: list[tuple[int, int]] = []
        for _ in range(k):
            start = draw(st.integers(4 * 60, 23 * 60 - 5))
            end = min(24 * 60, start + draw(st.integers(1, longest)))
            if all(end <= a or start >= b for a, b in windows):  # same class: no overlap
                windows.append((start, end))
        for j, (start, end) in enumerate(windows):
            kind = draw(st.sampled_from(KINDS))
            spec: dict[str, object] = {
                "id": f"{cls[0]}{j}", "kind": kind, "class": cls, "start": start, "end": end,
                "allow_quiet": draw(st.booleans()), "on_holidays": draw(st.booleans()),
                "target": draw(st.sampled_from(["all", "group:g", "v0", "v0,v2"])),
            }
            # An emergency (by class or kind) is a one-off; the others are sometimes.
            if cls == "emergency" or kind == "emergency" or draw(st.integers(0, 5)) == 0:
                spec["date"] = WINDOW_FIRST + timedelta(days=draw(st.integers(0, 20)))
            else:
                spec["days"] = draw(st.one_of(st.just("daily"), st.lists(
                    st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
                    min_size=1, max_size=7, unique=True)))
            specs.append(spec)
    text = []
    for sp in specs:
        lines = ["[[slots]]", f'id = "{sp["id"]}"', f'title = "Mục {sp["id"]}"',
                 f'kind = "{sp["kind"]}"', f'class = "{sp["class"]}"',
                 f'start = "{hhmm(int(str(sp["start"])))}"',
                 f'end = "{hhmm(int(str(sp["end"])))}"',
                 f'allow_quiet = {str(sp["allow_quiet"]).lower()}',
                 f'on_holidays = {str(sp["on_holidays"]).lower()}']
        t = str(sp["target"])
        lines.append(f'target = "{t}"' if t in ("all", "group:g")
                     else "target = [" + ", ".join(f'"{v}"' for v in t.split(",")) + "]")
        if sp["kind"] in RELAY_KINDS:
            lines.append('source = "s"')
        if "date" in sp:
            lines.append(f'date = "{sp["date"]}"')
        elif sp["days"] == "daily":
            lines.append('days = "daily"')
        else:
            lines.append("days = [" + ", ".join(f'"{d}"' for d in sp["days"]) + "]")  # type: ignore[attr-defined]
        text.append("\n".join(lines))
    holidays = '[[holidays]]\nname = "Tết"\nfrom = "2027-02-05"\nuntil = "2027-02-10"\n'
    return HEAD + holidays + "\n" + "\n\n".join(text) + "\n", specs


def in_quiet(start: int, end: int) -> bool:
    return start < 5 * 60 or end > 21 * 60 + 45


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(case=schedules(), first=st.integers(0, 14), days=st.integers(1, 10),
       cut=st.integers(0, 1439))
def test_expansion_properties(tmp_path: Path, case: tuple[str, list[dict[str, object]]],
                              first: int, days: int, cut: int) -> None:
    text, specs = case
    path = tmp_path / "gen.toml"
    path.write_text(text, encoding="utf-8")
    loud = [sp["id"] for sp in specs
            if in_quiet(int(str(sp["start"])), int(str(sp["end"])))
            and sp["class"] != "emergency" and not sp["allow_quiet"]]
    event("refused: quiet hours" if loud else "expanded")
    if loud:  # the 03:15 rule: refused at load, naming each such slot
        with pytest.raises(ScheduleError) as e:
            load_schedule(path)
        for sid in loud:
            assert any(f"slot '{sid}'" in str(p) and "quiet hours" in str(p)
                       for p in e.value.problems)
        return
    s = load_schedule(path)
    d0 = WINDOW_FIRST + timedelta(days=first)
    start_ms, end_ms = ms(d0, cut), ms(d0 + timedelta(days=days), cut)
    plans = expand(s, start_ms, end_ms)

    # Deterministic, and the ids of a sub-window are those of the whole.
    assert expand(s, start_ms, end_ms) == plans
    assert set(plans) == {n for ns in VILLAGE_NODES.values() for n in ns}
    for node, entries in plans.items():
        # Sorted, never overlapping itself, inside the window, unique ids of <= 64 chars.
        for a, b in itertools.pairwise(entries):
            assert a.end_ms <= b.start_ms, (node, a, b)
        assert all(e.start_ms < e.end_ms and e.end_ms > start_ms and e.start_ms < end_ms
                   for e in entries)
        assert len({e.id for e in entries}) == len(entries)
        assert all(len(e.id) <= MAX_ENTRY_ID for e in entries)
        # Nothing sounds in quiet hours but emergencies and allow_quiet items.
        for e in entries:
            local = datetime.fromtimestamp(e.start_ms / 1000, VN)
            minute = local.hour * 60 + local.minute
            if in_quiet(minute, minute + (e.end_ms - e.start_ms) // MIN):
                assert e.quiet_ok
        # Segments of one item: offsets anchored to the item's start, ids #2, #3...
        by_occ: dict[str, list[PlanEntry]] = defaultdict(list)
        for e in entries:
            by_occ[e.occurrence].append(e)
        for occ, segs in by_occ.items():
            sl = s.slot(occ.split("@")[0])
            item_start = ms(date.fromisoformat(occ.split("@")[1]), sl.start)
            if len(segs) > 1:
                event("item split into segments")
            for k, e in enumerate(segs):
                assert e.offset_ms == e.start_ms - item_start
                assert e.offset_ms >= 0 and e.offset_ms + (e.end_ms - e.start_ms) <= (
                    sl.end - sl.start) * MIN
                assert e.id == occ or e.id.startswith(occ + "#")
                if k:
                    assert segs[k - 1].end_ms <= e.start_ms
    # Every relay occurrence is on each target node unless a higher class covers all of it.
    villages_of = {n: v for v, ns in VILLAGE_NODES.items() for n in ns}
    day = d0
    while ms(day) < end_ms:
        for sl in s.slots:
            if not sl.is_relay or not sl.occurs_on(day, s.holidays):
                continue
            lo, hi = max(ms(day, sl.start), start_ms), min(ms(day, sl.end), end_ms)
            if lo >= hi:
                continue
            for node, entries in plans.items():
                if villages_of[node] not in sl.villages:
                    continue
                covered = sorted(
                    (ms(day, h.start), ms(day, h.end)) for h in s.slots
                    if h.priority > sl.priority and villages_of[node] in h.villages
                    and h.occurs_on(day, s.holidays))
                cur = lo
                for cs, ce in covered:
                    if cs <= cur:
                        cur = max(cur, ce)
                if cur >= hi:
                    continue
                occ = f"{sl.id}@{day.isoformat()}"
                event("relay occurrence checked" + (" (partly pre-empted)" if covered else ""))
                assert any(e.occurrence == occ for e in entries), (node, occ)
        day += timedelta(days=1)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(5 * 60, 20 * 60), length=st.integers(1, 90), into=st.integers(0, 89),
       cls=st.sampled_from(["normal", "priority", "emergency"]),
       kinds=st.tuples(st.sampled_from(KINDS), st.sampled_from(KINDS)))
def test_same_class_overlap_is_always_refused(tmp_path: Path, start: int, length: int,
                                              into: int, cls: str,
                                              kinds: tuple[str, str]) -> None:
    b_start = start + min(into, length - 1)
    # An emergency (by class or kind) is a one-off: on a Saturday, where b meets a.
    once = {"date": f'"{SATURDAY}"'}
    text = (slot("a", kinds[0], hhmm(start), hhmm(start + length), **{"class": f'"{cls}"'},
                 **(once if "emergency" in (cls, kinds[0]) else {}))
            + slot("b", kinds[1], hhmm(b_start), hhmm(b_start + 10), **{"class": f'"{cls}"'},
                   target='"group:g"',
                   **(once if "emergency" in (cls, kinds[1]) else {"days": '["sat"]'})))
    p = tmp_path / "overlap.toml"
    p.write_text(HEAD + text, encoding="utf-8")
    with pytest.raises(ScheduleError) as e:
        load_schedule(p)
    assert any("slot 'b'" in str(x) and "slot 'a'" in str(x) and "village 'v1'" in str(x)
               and ("every sat" in str(x) or f"on {SATURDAY}" in str(x))
               for x in e.value.problems), e.value.problems


def test_a_day_with_a_clock_change(tmp_path: Path) -> None:
    # Not Vietnam (no DST), but the timezone is a setting: 06:00 in Berlin on the day the
    # clocks go forward is 04:00 UTC, the day before 05:00 UTC.
    load(tmp_path, slot("vov", "vov_relay", "06:00", "06:30"), name="berlin.toml")
    text = (tmp_path / "berlin.toml").read_text(encoding="utf-8").replace(
        'name = "Xã Thử"', 'name = "Xã Thử"\ntimezone = "Europe/Berlin"')
    (tmp_path / "berlin.toml").write_text(text, encoding="utf-8")
    s = load_schedule(tmp_path / "berlin.toml")
    berlin = ZoneInfo("Europe/Berlin")
    t0 = int(datetime(2027, 3, 27, tzinfo=berlin).timestamp() * 1000)
    got = [datetime.fromtimestamp(e.start_ms / 1000, ZoneInfo("UTC")).strftime("%d %H:%M")
           for e in expand(s, t0, t0 + 2 * 86_400_000)["n0-a"]]
    assert got == ["27 05:00", "28 04:00"]

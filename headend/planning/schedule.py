"""Schedule files: what the commune's loudspeakers play, when, where, in which language.

The schedule lives in the commune file (schedules/<commune>.toml) beside [commune] and
[[villages]]; docs/schedules.md describes every key. `load_schedule` checks the whole file and
reports every problem it finds, each naming the file, the line and the item, so an officer can fix
them all in one go. Times are the commune's wall-clock times (Asia/Ho_Chi_Minh by default).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from headend.communes.files import (
    CommuneFileError,
    CommuneSpec,
    Locator,
    commune_from_data,
    read_toml,
)
from headend.media.probe import AudioRejected, audio_duration_ms

KINDS = ("vov_relay", "province_relay", "local_bulletin", "notice", "emergency")
RELAY_KINDS = frozenset({"vov_relay", "province_relay"})
RECORDED_KINDS = frozenset({"local_bulletin", "notice", "emergency"})
CLASSES = ("normal", "priority", "emergency")  # index = priority number (Circular 39/2020)
NORMAL, PRIORITY, EMERGENCY = 0, 1, 2
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60
DEFAULT_QUIET = (21 * 60 + 45, 5 * 60)  # 21:45 to 05:00
# The province's floor under every commune's quiet hours: they must cover this window (and so
# last at least its 6 hours). A file whose quiet hours leave any of it open is refused. The
# province sets its own in the headend's environment: LOAXA_QUIET_FLOOR="22:30-05:00" (or
# "off", which only the demo uses, when it moves the quiet hours away from the night).
MIN_QUIET = (23 * 60, 5 * 60)  # 23:00 to 05:00
QUIET_FLOOR_ENV = "LOAXA_QUIET_FLOOR"
MAX_SLOTS = 1000  # a commune's week holds a few dozen; thousands are a mistake or an attack
MAX_ERRORS = 50  # reported; the rest are counted
# The longest slot id that still leaves room for "@YYYY-MM-DD#NN" in a 64-character entry id.
MAX_SLOT_ID = 48
Day = date  # Slot has a field named `date`
_SLOT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_LANGUAGE = re.compile(r"^[a-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
SLOT_KEYS = frozenset({
    "id", "title", "kind", "class", "priority", "language", "target", "start", "end",
    "duration", "days", "from", "until", "except", "date", "source", "media", "summary",
    "allow_quiet", "on_holidays",
})
PLACEHOLDER_HOSTS = ("example.invalid", "example.com", "example.org", "example.net")


@dataclass(frozen=True)
class Problem:
    """One error or warning, located in the file."""

    path: Path
    line: int
    item: str  # "slot 'ban-tin-t2'", "[quiet_hours]", "" for the file as a whole
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.item}: {self.message}" if self.item else f"{where}: {self.message}"


class ScheduleError(CommuneFileError):
    """A schedule file that cannot be used; `problems` lists every error found."""

    def __init__(self, problems: Sequence[Problem], more: int = 0,
                 stopped: bool = False) -> None:
        self.problems = tuple(problems)
        self.more = more  # errors found beyond those listed (MAX_ERRORS)
        lines = [str(p) for p in self.problems]
        if stopped:
            lines.insert(0, f"{self.problems[0].path}: more than {len(lines)} errors, the first "
                            f"{len(lines)} listed (checking stopped there)")
        elif more:
            lines.insert(0, f"{self.problems[0].path}: {len(lines) + more} errors, the first "
                            f"{len(lines)} listed ({more} more not shown)")
        elif len(lines) > 1:
            lines.insert(0, f"{self.problems[0].path}: {len(lines)} errors")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Source:
    """A live stream to relay (VOV1, the provincial station), with a backup address."""

    id: str
    name: str
    primary: str
    backup: str | None


@dataclass(frozen=True)
class Holiday:
    """Days (first..last, inclusive) on which recurring slots are skipped, e.g. Tết."""

    name: str
    first: date
    last: date


@dataclass(frozen=True)
class Slot:
    """One programme item: a relay or a recorded item, recurring or on one date."""

    id: str
    title: str
    kind: str
    priority: int  # 0 normal, 1 priority, 2 emergency
    language: str
    target: str  # as written: "all", "group:ban-tay", "na-pan, ban-chu"
    villages: tuple[str, ...]  # the target resolved to village ids
    start: int  # minutes after local midnight
    end: int  # minutes after local midnight, <= 1440 (no item crosses midnight)
    days: frozenset[int] = frozenset(range(7))  # weekday numbers, Monday = 0
    date: Day | None = None  # a one-off item: only this date (days, from, until ignored)
    first: Day | None = None
    until: Day | None = None
    except_dates: frozenset[Day] = frozenset()
    on_holidays: bool = False
    source: Source | None = None
    media: Path | None = None
    # The media's own length in ms, read from the audio (not the slot's length); None without
    # media or when the file's length cannot be read. Criterion 8.3 counts this.
    audio_ms: int | None = None
    summary: str = ""
    allow_quiet: bool = False
    line: int = 0
    # Items put on the calendar in the web app: who scheduled and who approved them.
    operator: str = ""
    approver: str = ""

    @property
    def klass(self) -> str:
        return CLASSES[self.priority]

    @property
    def is_relay(self) -> bool:
        return self.kind in RELAY_KINDS

    @property
    def placeholder(self) -> bool:
        """A recorded item with no audio yet: planned, never sent to nodes, and not counted
        as local news for criterion 8.3."""
        return self.kind in RECORDED_KINDS and self.media is None

    @property
    def quiet_ok(self) -> bool:
        return self.priority == EMERGENCY or self.allow_quiet

    @property
    def window(self) -> str:
        return f"{hhmm(self.start)}–{hhmm(self.end)}"

    def occurs_on(self, day: Day, holidays: Sequence[Holiday] = ()) -> bool:
        if self.date is not None:
            return day == self.date
        if day.weekday() not in self.days:
            return False
        if (self.first and day < self.first) or (self.until and day > self.until):
            return False
        if day in self.except_dates:
            return False
        return self.on_holidays or holiday_on(holidays, day) is None


def holiday_on(holidays: Sequence[Holiday], day: date) -> Holiday | None:
    for h in holidays:
        if h.first <= day <= h.last:
            return h
    return None


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def in_quiet(start: int, end: int, quiet_start: int, quiet_end: int) -> bool:
    """Whether [start, end) (minutes of one day) touches the quiet hours."""
    if quiet_start > quiet_end:  # across midnight, the usual case: 21:45 to 05:00
        return start < quiet_end or end > quiet_start
    return start < quiet_end and end > quiet_start


@dataclass(frozen=True)
class Schedule:
    commune: CommuneSpec
    sources: dict[str, Source]
    groups: dict[str, tuple[str, ...]]
    slots: tuple[Slot, ...]
    quiet_start: int  # minutes after local midnight
    quiet_end: int
    holidays: tuple[Holiday, ...]
    path: Path
    warnings: tuple[Problem, ...] = field(default=())

    def slot(self, slot_id: str) -> Slot:
        return next(s for s in self.slots if s.id == slot_id)

    def village_nodes(self) -> dict[str, tuple[str, ...]]:
        return {v.id: v.nodes for v in self.commune.villages}


class _Reader:
    """Collects every problem of one file, each with its line."""

    def __init__(self, path: Path, loc: Locator) -> None:
        self.path = path
        self.loc = loc
        self.errors: list[Problem] = []
        self.count = 0  # every error found; the first MAX_ERRORS are kept
        self.stopped = False  # the overlap check gave up after MAX_ERRORS
        self.warnings: list[Problem] = []

    def error(self, line: int, item: str, message: str) -> None:
        self.count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(Problem(self.path, line, item, message))

    def warn(self, line: int, item: str, message: str) -> None:
        if len(self.warnings) < MAX_ERRORS:
            self.warnings.append(Problem(self.path, line, item, message))

    # Values. Each returns None after recording a problem.

    def text(self, table: dict[str, Any], key: str, line: int, item: str,
             default: str | None = None) -> str | None:
        value = table.get(key, default)
        if isinstance(value, str) and value.strip():
            return value.strip()
        what = "missing" if value is None else f"must be a non-empty string, not {value!r}"
        self.error(line, item, f"'{key}' {what}")
        return None

    def flag(self, table: dict[str, Any], key: str, line: int, item: str) -> bool:
        value = table.get(key, False)
        if isinstance(value, bool):
            return value
        self.error(line, item, f"'{key}' must be true or false, not {value!r}")
        return False

    def clock(self, value: Any, key: str, line: int, item: str,
              allow_24: bool = False) -> int | None:
        if isinstance(value, dtime):
            if value.second or value.microsecond:
                self.error(line, item, f"{key} {value} has seconds; write HH:MM")
                return None
            return value.hour * 60 + value.minute
        m = _TIME.match(value) if isinstance(value, str) else None
        if m:
            h, mi = int(m.group(1)), int(m.group(2))
            if (h < 24 and mi < 60) or (allow_24 and h == 24 and mi == 0):
                return h * 60 + mi
        self.error(line, item, f"{key} {_show(value)} is not a time (HH:MM, 00:00 to 23:59)")
        return None

    def day(self, value: Any, key: str, line: int, item: str) -> date | None:
        if isinstance(value, date) and not hasattr(value, "hour"):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.error(line, item, f"{key} {_show(value)} is not a date (YYYY-MM-DD)")
        return None

    def url(self, value: Any, key: str, line: int, item: str) -> str | None:
        if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") \
                or not urlsplit(value).hostname:
            self.error(line, item, f"{key} {_show(value)} is not an http(s) stream address")
            return None
        if (urlsplit(value).hostname or "").endswith(PLACEHOLDER_HOSTS):
            self.warn(line, item, f"{key} {value} is a placeholder address: put the station's "
                                  "real stream here (địa chỉ mẫu, cần thay)")
        return value


def _show(value: Any) -> str:
    return value if isinstance(value, str) and value else repr(value)


def load_schedule(path: Path) -> Schedule:
    """Read and check a schedule file. Raises ScheduleError listing every problem found."""
    try:
        text, data = read_toml(path)
    except ScheduleError:
        raise
    except CommuneFileError as e:
        raise _as_schedule_error(path, e) from None
    loc = Locator(text)
    try:
        commune = commune_from_data(path, data, loc)
    except CommuneFileError as e:
        raise _as_schedule_error(path, e) from None
    r = _Reader(path, loc)
    villages = tuple(v.id for v in commune.villages)
    known = {"commune", "villages", "groups", "sources", "quiet_hours", "slots", "holidays"}
    for key in data:
        if key not in known:
            r.error(loc.table(key) or 1, "", f"unknown section or key '{key}' "
                                             f"(known: {', '.join(sorted(known))})")
    groups = _groups(r, data.get("groups", {}), villages)
    sources = _sources(r, data.get("sources", {}))
    quiet_start, quiet_end = _quiet(r, data.get("quiet_hours", {}))
    holidays = _holidays(r, data.get("holidays", []))
    raw_slots = data.get("slots", [])
    slots: list[Slot] = []
    if not isinstance(raw_slots, list):
        r.error(loc.table("slots") or 1, "", "'slots' must be [[slots]] tables")
        raw_slots = []
    if len(raw_slots) > MAX_SLOTS:
        r.error(loc.table("slots") or 1, "", f"{len(raw_slots)} slots: at most {MAX_SLOTS} "
                                             "in one file")
        raise ScheduleError(r.errors)
    seen: dict[str, int] = {}
    for n, raw in enumerate(raw_slots):
        slot = _slot(r, n, raw, villages, groups, sources, path.parent)
        if slot is None:
            continue
        if slot.id in seen:
            r.error(loc.element("slots", n, "id"), f"slot '{slot.id}'",
                    f"id listed twice (first at line {seen[slot.id]})")
            continue
        seen[slot.id] = slot.line
        slots.append(slot)
    for s in slots:
        if in_quiet(s.start, s.end, quiet_start, quiet_end) and not s.quiet_ok:
            r.error(loc.element("slots", _index(raw_slots, s), "start"), f"slot '{s.id}'",
                    f"{s.window} falls in the quiet hours {hhmm(quiet_start)}–{hhmm(quiet_end)}; "
                    "only class 'emergency' or allow_quiet = true may sound then")
        if s.allow_quiet:
            r.warn(s.line, f"slot '{s.id}'", "allow_quiet = true: sounds in the quiet hours "
                                             f"{hhmm(quiet_start)}–{hhmm(quiet_end)} "
                                             "when it overlaps them; is that intended?")
        if s.placeholder:
            r.warn(s.line, f"slot '{s.id}'", "chưa có âm thanh (no audio yet): not counted "
                                             "as local news for criterion 8.3 and not sent "
                                             "to the loudspeakers until 'media' names a file")
    _conflicts(r, slots, holidays, commune)
    if r.errors:
        raise ScheduleError(sorted(r.errors, key=lambda p: p.line), r.count - len(r.errors),
                            r.stopped)
    return Schedule(commune=commune, sources=sources, groups=groups, slots=tuple(slots),
                    quiet_start=quiet_start, quiet_end=quiet_end, holidays=holidays, path=path,
                    warnings=tuple(sorted(r.warnings, key=lambda p: p.line)))


def _as_schedule_error(path: Path, e: CommuneFileError) -> ScheduleError:
    m = re.match(r"^(.*?):(\d+): (.*)$", str(e), re.S)
    if m and m.group(1) == str(path):
        return ScheduleError([Problem(path, int(m.group(2)), "", m.group(3))])
    msg = str(e)
    prefix = f"{path}: "
    return ScheduleError([Problem(path, 0, "", msg[len(prefix):] if msg.startswith(prefix)
                                  else msg)])


def _index(raw_slots: list[Any], slot: Slot) -> int:
    for i, raw in enumerate(raw_slots):
        if isinstance(raw, dict) and raw.get("id") == slot.id:
            return i
    return 0


def _groups(r: _Reader, raw: Any, villages: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    if not isinstance(raw, dict):
        r.error(r.loc.table("groups") or 1, "[groups]", "must be a table: name = [village ids]")
        return groups
    for name, members in raw.items():
        line = r.loc.table("groups", name)
        item = f"group '{name}'"
        if not isinstance(members, list) or not members \
                or not all(isinstance(m, str) for m in members):
            r.error(line, item, "must be a non-empty list of village ids")
            continue
        for m in members:
            if m not in villages:
                r.error(line, item, f"unknown village '{m}' (known: {', '.join(sorted(villages))})")
        groups[name] = tuple(members)
    return groups


def _sources(r: _Reader, raw: Any) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    if not isinstance(raw, dict):
        r.error(r.loc.table("sources") or 1, "[sources]", "must be [sources.<id>] tables")
        return sources
    for sid, table in raw.items():
        t = f"sources.{sid}"
        item = f"source '{sid}'"
        if not isinstance(table, dict):
            r.error(r.loc.table(t) or r.loc.table("sources"), item,
                    "must be a table with name, primary and backup")
            continue
        for key in table:
            if key not in ("name", "primary", "backup"):
                r.error(r.loc.table(t, key), item, f"unknown key '{key}'")
        name = r.text(table, "name", r.loc.table(t, "name"), item)
        primary = r.url(table.get("primary"), "primary", r.loc.table(t, "primary"), item)
        backup = None
        if "backup" in table:
            backup = r.url(table["backup"], "backup", r.loc.table(t, "backup"), item)
        if name and primary:
            sources[sid] = Source(sid, name, primary, backup)
    return sources


def _quiet(r: _Reader, raw: Any) -> tuple[int, int]:
    if not isinstance(raw, dict):
        r.error(r.loc.table("quiet_hours") or 1, "[quiet_hours]", "must be a table")
        return DEFAULT_QUIET
    item = "[quiet_hours]"
    start = r.clock(raw.get("start", hhmm(DEFAULT_QUIET[0])), "start",
                    r.loc.table("quiet_hours", "start"), item)
    end = r.clock(raw.get("end", hhmm(DEFAULT_QUIET[1])), "end",
                  r.loc.table("quiet_hours", "end"), item)
    if start is None or end is None:
        return DEFAULT_QUIET
    if start == end:
        r.error(r.loc.table("quiet_hours"), item, "start and end are equal; quiet hours "
                                                  "cannot be switched off")
    elif (floor := quiet_floor()) is not None and not covers((start, end), floor):
        r.error(r.loc.table("quiet_hours"), item,
                f"{hhmm(start)}–{hhmm(end)} does not cover {hhmm(floor[0])}–"
                f"{hhmm(floor[1])}, the quiet hours the province sets as a minimum")
    return start, end


def quiet_floor() -> tuple[int, int] | None:
    """The province's minimum quiet hours ($LOAXA_QUIET_FLOOR, else MIN_QUIET); None: off."""
    raw = os.environ.get(QUIET_FLOOR_ENV, "").strip()
    if not raw:
        return MIN_QUIET
    if raw == "off":
        return None
    ends = [_TIME.match(x.strip()) for x in raw.split("-")]
    minutes = [int(m[1]) * 60 + int(m[2]) for m in ends if m and int(m[1]) < 24 and int(m[2]) < 60]
    if len(ends) != 2 or len(minutes) != 2:
        raise CommuneFileError(f"{QUIET_FLOOR_ENV}={raw!r} is not HH:MM-HH:MM (or off)")
    return minutes[0], minutes[1]


def covers(window: tuple[int, int], inner: tuple[int, int]) -> bool:
    """Whether the daily window (start, end in minutes, across midnight when start > end)
    holds every minute of inner."""
    def minutes(w: tuple[int, int]) -> set[int]:
        a, b = w
        return set(range(a, b)) if a < b else set(range(a, DAY_MINUTES)) | set(range(0, b))
    return minutes(inner) <= minutes(window)


def _holidays(r: _Reader, raw: Any) -> tuple[Holiday, ...]:
    out: list[Holiday] = []
    if not isinstance(raw, list):
        r.error(r.loc.table("holidays") or 1, "holidays",
                "must be [[holidays]] tables with name and from/until (or date)")
        return ()
    for n, h in enumerate(raw):
        line = r.loc.element("holidays", n)
        if not isinstance(h, dict):
            r.error(line, f"holiday #{n + 1}", "must be a [[holidays]] table")
            continue
        item = f"holiday '{h.get('name', n + 1)}'"
        name = r.text(h, "name", r.loc.element("holidays", n, "name"), item)
        if "date" in h:
            first = last = r.day(h["date"], "date", r.loc.element("holidays", n, "date"), item)
        else:
            first = r.day(h.get("from"), "from", r.loc.element("holidays", n, "from"), item)
            last = r.day(h.get("until"), "until", r.loc.element("holidays", n, "until"), item)
        if name and first and last:
            if last < first:
                r.error(r.loc.element("holidays", n, "until"), item,
                        f"until {last} is before from {first}")
            else:
                out.append(Holiday(name, first, last))
    return tuple(out)


def _slot(r: _Reader, n: int, raw: Any, villages: tuple[str, ...],
          groups: dict[str, tuple[str, ...]], sources: dict[str, Source],
          base: Path) -> Slot | None:
    loc = r.loc
    head = loc.element("slots", n)

    def at(key: str) -> int:
        return loc.element("slots", n, key)

    if not isinstance(raw, dict):
        r.error(head, f"slot #{n + 1}", "must be a [[slots]] table")
        return None
    before = r.count
    sid_raw = raw.get("id")
    item = f"slot '{sid_raw}'" if isinstance(sid_raw, str) and sid_raw else f"slot #{n + 1}"
    sid = r.text(raw, "id", head, item)
    if sid is not None and (not _SLOT_ID.match(sid) or len(sid) > MAX_SLOT_ID):
        r.error(at("id"), item, f"id {sid!r} must be 1-{MAX_SLOT_ID} of a-z, 0-9, '-', '_'")
    for key in raw:
        if key not in SLOT_KEYS:
            r.error(at(key), item, f"unknown key '{key}'")
    title = r.text(raw, "title", at("title"), item)
    kind = raw.get("kind")
    if kind not in KINDS:
        r.error(at("kind"), item, f"kind {_show(kind)} is not one of {', '.join(KINDS)}")
    cls_key = "class" if "class" in raw else "priority"
    cls = raw.get(cls_key, "emergency" if kind == "emergency" else "normal")
    if cls not in CLASSES:
        r.error(at(cls_key), item, f"{cls_key} {_show(cls)} is not one of {', '.join(CLASSES)}")
    if (cls == "emergency" or kind == "emergency") and "date" not in raw:
        # The 03:15 incident: an "emergency" that sounds every night, through the quiet hours.
        r.error(at(cls_key) if cls_key in raw else at("kind"), item,
                "an emergency is a one-off: give it date = \"YYYY-MM-DD\" (a recurring "
                "emergency is refused; use class \"priority\" for a regular item)")
    language = raw.get("language", "vi")
    if not isinstance(language, str) or not _LANGUAGE.match(language):
        r.error(at("language"), item, f"language {_show(language)} is not a language code "
                                      "(vi, tay, nung, dao, ...)")
    # Where.
    target = raw.get("target", "all")
    chosen: list[str] = []
    entries = [target] if isinstance(target, str) else target
    if not isinstance(entries, list) or not entries \
            or not all(isinstance(t, str) for t in entries):
        r.error(at("target"), item, "target must be \"all\", \"group:<name>\" or a list of "
                                    "village ids")
        entries = []
    for t in entries:
        if t == "all":
            chosen.extend(villages)
        elif t.startswith("group:"):
            g = t.removeprefix("group:")
            if g in groups:
                chosen.extend(groups[g])
            else:
                r.error(at("target"), item, f"unknown group '{g}' "
                                            f"(known: {', '.join(sorted(groups)) or 'none'})")
        elif t in villages:
            chosen.append(t)
        else:
            r.error(at("target"), item, f"unknown village '{t}' "
                                        f"(known: {', '.join(sorted(villages))})")
    # When.
    start = r.clock(raw.get("start"), "start", at("start"), item)
    end: int | None = None
    if ("end" in raw) == ("duration" in raw):
        r.error(head, item, "give either end = \"HH:MM\" or duration = minutes")
    elif "end" in raw:
        end = r.clock(raw["end"], "end", at("end"), item, allow_24=True)
        if start is not None and end is not None and end <= start:
            r.error(at("end"), item, f"end {hhmm(end)} is not after start {hhmm(start)} "
                                     "(an item may not run past midnight: split it in two)")
            end = None
    else:
        dur = raw["duration"]
        if isinstance(dur, bool) or not isinstance(dur, int) or dur <= 0:
            r.error(at("duration"), item, f"duration {_show(dur)} must be a whole number of "
                                          "minutes greater than 0")
        elif start is not None:
            end = start + dur
            if end > DAY_MINUTES:
                r.error(at("duration"), item, f"{hhmm(start)} plus {dur} min runs past midnight "
                                              "(an item may not: split it in two)")
                end = None
    one_off = None
    days: frozenset[int] = frozenset(range(7))
    if "date" in raw:
        one_off = r.day(raw["date"], "date", at("date"), item)
        for key in ("days", "from", "until", "except"):
            if key in raw:
                r.error(at(key), item, f"'{key}' does not go with 'date' (a one-off item)")
    else:
        d = raw.get("days", "daily")
        if d == "daily":
            pass
        elif isinstance(d, list) and d and all(isinstance(x, str) for x in d):
            bad = [x for x in d if x.lower() not in WEEKDAYS]
            if bad:
                r.error(at("days"), item, f"{', '.join(map(repr, bad))} not a weekday "
                                          f"({', '.join(WEEKDAYS)})")
            days = frozenset(WEEKDAYS.index(x.lower()) for x in d if x.lower() in WEEKDAYS)
        else:
            r.error(at("days"), item, f"days {_show(d)} must be \"daily\" or a list of weekdays "
                                      f"({', '.join(WEEKDAYS)})")
    first = r.day(raw["from"], "from", at("from"), item) if "from" in raw else None
    until = r.day(raw["until"], "until", at("until"), item) if "until" in raw else None
    if first and until and until < first:
        r.error(at("until"), item, f"until {until} is before from {first}")
    excepts: set[date] = set()
    ex = raw.get("except", [])
    if not isinstance(ex, list):
        r.error(at("except"), item, "except must be a list of dates")
    else:
        for x in ex:
            got = r.day(x, "except", at("except"), item)
            if got:
                excepts.add(got)
    # What.
    source = None
    media = None
    audio_ms = None
    if kind in RELAY_KINDS:
        src = raw.get("source")
        if src is None:
            r.error(head, item, f"a relay needs source = one of: {', '.join(sorted(sources))}")
        elif src not in sources:
            r.error(at("source"), item, f"unknown source {_show(src)} "
                                        f"(known: {', '.join(sorted(sources)) or 'none'})")
        else:
            source = sources[src]
        if "media" in raw:
            r.error(at("media"), item, "a relay plays its source; 'media' is for recorded items")
    elif kind in RECORDED_KINDS:
        if "source" in raw:
            r.error(at("source"), item, "'source' is for relays; a recorded item has 'media'")
        m = raw.get("media")
        if m is not None:
            if not isinstance(m, str) or not m.strip():
                r.error(at("media"), item, "media must be a file path (relative to this file)")
            else:
                media = (base / m).resolve()
                if not media.is_relative_to(base.resolve()):
                    r.error(at("media"), item, f"media file {m!r} is outside this commune's "
                                               f"folder ({base})")
                elif not media.is_file():
                    r.error(at("media"), item, f"media file {m!r} not found (looked for {media})")
                else:
                    audio_ms = _audio_ms(r, at("media"), item, media)
    summary = raw.get("summary", "")
    if not isinstance(summary, str):
        r.error(at("summary"), item, "summary must be a string")
        summary = ""
    allow_quiet = r.flag(raw, "allow_quiet", at("allow_quiet"), item)
    on_holidays = r.flag(raw, "on_holidays", at("on_holidays"), item)
    if r.count > before or sid is None or title is None or start is None or end is None:
        return None
    return Slot(
        id=sid, title=title, kind=str(kind), priority=CLASSES.index(str(cls)),
        language=str(language), target=target if isinstance(target, str) else ", ".join(target),
        villages=tuple(dict.fromkeys(chosen)), start=start, end=end, days=days, date=one_off,
        first=first, until=until, except_dates=frozenset(excepts), on_holidays=on_holidays,
        source=source, media=media, audio_ms=audio_ms, summary=summary.strip(),
        allow_quiet=allow_quiet, line=head,
    )


def _audio_ms(r: _Reader, line: int, item: str, media: Path) -> int | None:
    """The media file's own length; a warning (and None: not counted) when it cannot be read."""
    try:
        return audio_duration_ms(media)
    except AudioRejected as e:
        why = e.english
    except OSError as e:
        why = e.strerror or str(e)
    r.warn(line, item, f"không đọc được độ dài âm thanh (cannot read the audio's length: "
                       f"{why}): not counted as local news for criterion 8.3")
    return None


def _first_common_day(a: Slot, b: Slot, holidays: Sequence[Holiday]) -> str | None:
    """A date (or weekly pattern) on which both slots sound, or None if they never meet."""
    if a.date and b.date:
        return a.date.isoformat() if a.date == b.date else None
    if a.date or b.date:
        one, rec = (a, b) if a.date else (b, a)
        assert one.date is not None
        return one.date.isoformat() if rec.occurs_on(one.date, holidays) else None
    common = a.days & b.days
    if not common:
        return None
    firsts = [d for d in (a.first, b.first) if d is not None]
    untils = [d for d in (a.until, b.until) if d is not None]
    lo, hi = (max(firsts) if firsts else None), (min(untils) if untils else None)
    if lo and hi and lo > hi:
        return None
    if lo is None and hi is None:
        return "every " + ("day" if len(common) == 7
                           else ", ".join(WEEKDAYS[i] for i in sorted(common)))
    step = timedelta(days=1 if lo else -1)
    d = lo or hi
    assert d is not None
    for _ in range(5 * 366):  # long enough to get past any holiday and except list
        if (hi and d > hi) or (lo and d < lo):
            break
        if a.occurs_on(d, holidays) and b.occurs_on(d, holidays):
            return d.isoformat()
        d += step
    return None


def _conflicts(r: _Reader, slots: list[Slot], holidays: Sequence[Holiday],
               commune: CommuneSpec) -> None:
    """Same-class overlap on a village is an error; a recorded item cut by a higher class
    is a warning (its audio would be interrupted, usually a mistake)."""
    nodes = {v.id: v.nodes for v in commune.villages}
    for i, a in enumerate(slots):
        va = set(a.villages)
        if r.count >= MAX_ERRORS:
            r.stopped = True  # thousands of overlaps would take minutes to list, to no use
            return
        for b in slots[i + 1:]:
            if not (a.start < b.end and b.start < a.end):
                continue
            shared = [v for v in b.villages if v in va]
            if not shared:
                continue
            when = _first_common_day(a, b, holidays)
            if when is None:
                continue
            span = f"{hhmm(max(a.start, b.start))}–{hhmm(min(a.end, b.end))}"
            v = shared[0]
            where = (f"village '{v}' (node {', '.join(nodes[v]) or 'none'})"
                     + (f" and {len(shared) - 1} more villages" if len(shared) > 1 else ""))
            on = when if when.startswith("every") else f"on {when}"
            if a.priority == b.priority:
                r.error(b.line, f"slot '{b.id}'",
                        f"overlaps slot '{a.id}' (line {a.line}), both class {a.klass}, "
                        f"{span} at {where} {on}")
                continue
            low, high = (a, b) if a.priority < b.priority else (b, a)
            if low.kind in RECORDED_KINDS:
                r.warn(low.line, f"slot '{low.id}'",
                       f"cut by {high.klass} slot '{high.id}' {span} at {where} {on}; "
                       "it continues after, with that part of its audio skipped")

"""Commune files in schedules/: the commune, its villages and the nodes in each (TOML).

The same file may also hold the commune's schedule (sources, groups, slots, holidays); that part
is read by headend.planning.schedule. This module reads only [commune] and [[villages]].
"""

from __future__ import annotations

import codecs
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from firmware import protocol

TERRAINS = ("mountainous", "lowland")


class CommuneFileError(ValueError):
    """A commune file that cannot be used; the message names the file and the item."""


@dataclass(frozen=True)
class VillageSpec:
    id: str
    name: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class CommuneSpec:
    id: str
    name: str
    province: str
    timezone: str
    villages: tuple[VillageSpec, ...] = field(default_factory=tuple)
    terrain: str = "mountainous"  # or "lowland": sets the advanced 8.3 threshold (90 % / 100 %)

    @property
    def node_ids(self) -> list[str]:
        return [n for v in self.villages for n in v.nodes]


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]#]+?)\s*\]\]?\s*(?:#.*)?$")


class Locator:
    """Line numbers for TOML items: tomllib gives none, so the raw text is scanned.

    A table is found by its header (`[commune]`, `[sources.vov1]`), the n-th element of an array
    of tables by the n-th `[[slots]]` header, a key by its `key =` line inside that table.
    Anything not found falls back to the table's header line, then to line 1.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.tables: dict[str, int] = {}  # "[commune]" -> line (1-based)
        self.arrays: dict[str, list[int]] = {}  # "slots" -> header line of each element
        for i, raw in enumerate(self.lines, 1):
            m = _HEADER.match(raw)
            if not m:
                continue
            name = re.sub(r"\s*\.\s*", ".", m.group(2)).replace('"', "").replace("'", "")
            if m.group(1) == "[[":
                self.arrays.setdefault(name, []).append(i)
            else:
                self.tables.setdefault(name, i)

    def _end(self, start: int) -> int:
        """The last line of the table whose header is on line `start`."""
        for j in range(start, len(self.lines)):
            if _HEADER.match(self.lines[j]):
                return j
        return len(self.lines)

    def _key(self, start: int, key: str | None) -> int:
        if key is None or start == 0:
            return start or 1
        pat = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        for j in range(start, self._end(start)):
            if pat.match(self.lines[j]):
                return j + 1
        return start

    def table(self, name: str, key: str | None = None) -> int:
        return self._key(self.tables.get(name, 0), key)

    def element(self, array: str, n: int, key: str | None = None) -> int:
        """Line of the n-th (0-based) [[array]] element, or of `key` inside it."""
        heads = self.arrays.get(array, [])
        return self._key(heads[n] if n < len(heads) else 0, key)


def _str(table: dict[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CommuneFileError(f"{where}: '{key}' must be a non-empty string")
    return value


MAX_FILE_BYTES = 1_000_000  # a commune's file with a thousand slots is about 200 KB
RESERVED_IDS = ("headend",)  # broker user names that are not nodes


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and its parsed TOML; errors name the file (and the line where known)."""
    try:
        # Only a regular file: a FIFO or a device (/dev/zero) would be read forever. Opened
        # without blocking, checked, then read up to the limit and no further.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CommuneFileError(f"{path}: not a regular file")
            if st.st_size > MAX_FILE_BYTES:
                raise CommuneFileError(f"{path}: {st.st_size} bytes; a commune file is at most "
                                       f"{MAX_FILE_BYTES // 1000} KB")
            with os.fdopen(fd, "rb") as f:
                fd = -1
                raw = f.read(MAX_FILE_BYTES + 1)
        finally:
            if fd >= 0:
                os.close(fd)
    except FileNotFoundError:
        raise CommuneFileError(f"{path}: file not found") from None
    except (IsADirectoryError, NotADirectoryError):
        raise CommuneFileError(f"{path}: not a file") from None
    except PermissionError:
        raise CommuneFileError(f"{path}: cannot be read (permission denied)") from None
    except OSError as e:
        raise CommuneFileError(f"{path}: cannot be read ({e.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:  # it grew while being read
        raise CommuneFileError(f"{path}: more than {MAX_FILE_BYTES // 1000} KB")
    if raw.startswith(codecs.BOM_UTF8):  # Notepad's "UTF-8 with BOM": the same text
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CommuneFileError(f"{path}:{line}: not UTF-8 text (byte {e.start}); "
                               "save the file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise CommuneFileError(f"{where}: TOML syntax: {e}") from None
    except RecursionError:
        raise CommuneFileError(f"{path}: arrays or tables nested too deep") from None
    return text, data


def commune_from_data(path: Path, data: dict[str, Any], loc: Locator) -> CommuneSpec:
    """[commune] and [[villages]] of a parsed file; the first problem raises CommuneFileError."""
    c = data.get("commune")
    if not isinstance(c, dict):
        raise CommuneFileError(f"{path}: missing [commune] table")
    tz = c.get("timezone", "Asia/Ho_Chi_Minh")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise CommuneFileError(f"{path}:{loc.table('commune', 'timezone')}: "
                               f"[commune] unknown timezone {tz!r}") from None
    villages: list[VillageSpec] = []
    seen: set[str] = set()
    raw_villages = data.get("villages", [])
    if not isinstance(raw_villages, list) or not raw_villages:
        raise CommuneFileError(f"{path}: no [[villages]]")
    for i, v in enumerate(raw_villages, 1):
        where = f"{path}:{loc.element('villages', i - 1)}: village #{i}"
        if not isinstance(v, dict):
            raise CommuneFileError(f"{where}: must be a [[villages]] table")
        vid = _str(v, "id", where)
        nodes = v.get("nodes", [])
        where = f"{path}:{loc.element('villages', i - 1, 'nodes')}: village #{i}"
        if not isinstance(nodes, list):
            raise CommuneFileError(f"{where} ({vid}): 'nodes' must be a list")
        for n in nodes:
            if not protocol.valid_node_id(n):
                raise CommuneFileError(
                    f"{where} ({vid}): bad node id {n!r} (1-40 of a-z, 0-9, '-', '_')"
                )
            if n in RESERVED_IDS:
                raise CommuneFileError(f"{where} ({vid}): node id {n!r} is reserved")
            if n in seen:
                raise CommuneFileError(f"{where} ({vid}): node {n!r} listed twice")
            seen.add(n)
        if vid in {x.id for x in villages}:
            raise CommuneFileError(f"{where}: village id {vid!r} listed twice")
        villages.append(VillageSpec(vid, _str(v, "name", where), tuple(nodes)))
    where = f"{path}:{loc.table('commune')}: [commune]"
    terrain = c.get("terrain", "mountainous")
    if terrain not in TERRAINS:
        raise CommuneFileError(f"{path}:{loc.table('commune', 'terrain')}: [commune] terrain "
                               f"must be one of {', '.join(TERRAINS)}, not {terrain!r}")
    return CommuneSpec(
        id=_str(c, "id", where),
        name=_str(c, "name", where),
        province=str(c.get("province", "")),
        timezone=str(tz),
        terrain=terrain,
        villages=tuple(villages),
    )


def load_commune(path: Path) -> CommuneSpec:
    text, data = read_toml(path)
    return commune_from_data(path, data, Locator(text))

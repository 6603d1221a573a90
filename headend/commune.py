"""Commune files in schedules/: the commune, its villages and the nodes in each (TOML)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from firmware import protocol


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

    @property
    def node_ids(self) -> list[str]:
        return [n for v in self.villages for n in v.nodes]


def _str(table: dict[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CommuneFileError(f"{where}: '{key}' must be a non-empty string")
    return value


RESERVED_IDS = ("headend",)  # broker user names that are not nodes


def load_commune(path: Path) -> CommuneSpec:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommuneFileError(f"{path}: file not found") from None
    except (IsADirectoryError, NotADirectoryError):
        raise CommuneFileError(f"{path}: not a file") from None
    except PermissionError:
        raise CommuneFileError(f"{path}: cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise CommuneFileError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise CommuneFileError(f"{path}: {e}") from None
    c = data.get("commune")
    if not isinstance(c, dict):
        raise CommuneFileError(f"{path}: missing [commune] table")
    tz = c.get("timezone", "Asia/Ho_Chi_Minh")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise CommuneFileError(f"{path}: [commune] unknown timezone {tz!r}") from None
    villages: list[VillageSpec] = []
    seen: set[str] = set()
    raw_villages = data.get("villages", [])
    if not isinstance(raw_villages, list) or not raw_villages:
        raise CommuneFileError(f"{path}: no [[villages]]")
    for i, v in enumerate(raw_villages, 1):
        where = f"{path}: village #{i}"
        if not isinstance(v, dict):
            raise CommuneFileError(f"{where}: must be a [[villages]] table")
        vid = _str(v, "id", where)
        nodes = v.get("nodes", [])
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
        villages.append(VillageSpec(vid, _str(v, "name", where), tuple(nodes)))
    return CommuneSpec(
        id=_str(c, "id", f"{path}: [commune]"),
        name=_str(c, "name", f"{path}: [commune]"),
        province=str(c.get("province", "")),
        timezone=str(tz),
        villages=tuple(villages),
    )

"""What the benchmarks share: CPU time per process, the synthetic commune, argument types."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from headend.communes.files import CommuneSpec, VillageSpec

if TYPE_CHECKING:
    import httpx


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU seconds used by each part of the system during one measured round."""

    pids: dict[str, list[int]]
    _start: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        return {part: sum(cpu_seconds(p) for p in pids) for part, pids in self.pids.items()}

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        now = self._now()
        return {part: now[part] - self._start[part] for part in now}


def bench_commune(n: int) -> CommuneSpec:
    per_village = 2
    villages = tuple(
        VillageSpec(f"v{i:04d}", f"Thôn {i}",
                    tuple(f"b{j:05d}" for j in range(i * per_village,
                                                     min(n, (i + 1) * per_village))))
        for i in range((n + per_village - 1) // per_village)
    )
    return CommuneSpec("bench", "Xã đo tốc độ", "Lạng Sơn", "Asia/Ho_Chi_Minh", villages)


def web_login(client: httpx.Client, username: str, password: str) -> int:
    """Log in as a browser does (the form's CSRF token first); the POST's status."""
    m = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    token = m.group(1) if m else ""
    r = client.post("/login", data={"username": username, "password": password, "csrf": token})
    return r.status_code

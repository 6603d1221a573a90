"""Live processes, read from /proc: what a test checks was started or left behind."""

import os
from pathlib import Path


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention text (our state directory)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        cmd = raw.replace(b"\0", b" ").decode(errors="replace")
        if text in cmd and int(pid) != os.getpid():
            out.append(f"{pid}: {cmd}")
    return out

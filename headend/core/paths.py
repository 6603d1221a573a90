"""Where LoaXa's own files are: the same answer in a source checkout and in an installed wheel.

The firmware and HAL sources are the `firmware` and `hal` packages, and the schedule templates
and the example commune are the `loaxa_schedules` package (the checkout's schedules/ folder), so
each is found through its package, never relative to this file."""

from pathlib import Path

import firmware
import loaxa_schedules


def code_root() -> Path:
    """The folder that holds the `firmware` and `hal` packages (the checkout, or site-packages)."""
    return Path(firmware.__file__).resolve().parent.parent


def schedules_dir() -> Path:
    """The shipped schedules/ folder: the example commune files and templates/."""
    return Path(loaxa_schedules.__file__).resolve().parent


def schedule_templates() -> Path:
    return schedules_dir() / "templates"


def example_commune() -> Path:
    """The demo's commune (Xã Tân Lang)."""
    return schedules_dir() / "tan-lang.toml"

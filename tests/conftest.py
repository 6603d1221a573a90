"""Fixtures for the end-to-end tests (the stack itself is in loaxa_stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from support.commune_diary import commune_home
from support.loaxa_stack import Stack

from headend.planning.schedule import Schedule


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Engine, Schedule]:
    """The diary tests' commune (support/commune_diary.py): its engine and schedule."""
    _, engine, schedule = commune_home(tmp_path)
    return engine, schedule

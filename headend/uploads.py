"""Uploaded files, received into a temporary file with a size cap: a 200 MB upload is refused
as soon as it passes the limit, and never sits in memory."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


class TooLarge(Exception):
    """The upload passed the limit; the message says so in Vietnamese."""


def too_large_vi(limit: int) -> str:
    return (f"Tệp quá lớn: tối đa {limit // (1024 * 1024)} MB. Hãy cắt ngắn hoặc nén lại "
            "(ví dụ MP3 64 kbit/s) rồi tải lên lại.")


@contextlib.contextmanager
def received(source: BinaryIO, filename: str, limit: int) -> Iterator[Path]:
    """Copy `source` to a temporary file (keeping the name's suffix, which ffprobe uses as a
    hint) and yield its path; removed afterwards. TooLarge past `limit` bytes."""
    suffix = Path(filename or "").suffix.lower()[:8]
    fd, name = tempfile.mkstemp(prefix="loaxa-upload-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            total = 0
            while block := source.read(CHUNK):
                total += len(block)
                if total > limit:
                    raise TooLarge(too_large_vi(limit))
                out.write(block)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def declared_too_large(content_length: str | None, limit: int, slack: int = 64 * 1024) -> bool:
    """Whether a request says up front it is bigger than `limit` plus form overhead, so it
    can be refused before its body is read."""
    try:
        return content_length is not None and int(content_length) > limit + slack
    except ValueError:
        return False

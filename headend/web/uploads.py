"""Uploaded forms read straight from the request stream: text fields to memory (capped), the
one file to a temporary file, counting bytes. Past the limit the request is refused (413)
without reading the rest, and one whose Content-Length is already too large before its body is
read at all: a 200 MB upload never sits in memory or fills the disk. Used by the bulletin page
and the API."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import IO, Final
from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

FIELD_MAX_BYTES: Final = 64 * 1024  # a form field (the TTS text is at most 5000 characters)
FIELDS_MAX: Final = 20


def too_large_vi(limit: int) -> str:
    return (f"Tệp quá lớn: tối đa {limit // 2**20} MB. Hãy cắt ngắn hoặc nén lại (ví dụ MP3 "
            "64 kbit/s) rồi gửi lại.")


def declared_too_large(content_length: str | None, limit: int, slack: int = 64 * 1024) -> bool:
    """Whether the request says up front that it is bigger than `limit` plus form overhead,
    so it is refused before its body is read."""
    try:
        return content_length is not None and int(content_length) > limit + slack
    except ValueError:
        return False


class FormRefused(Exception):
    """A form that cannot be read: status and Vietnamese message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # the one file part, in the temporary directory
    filename: str = ""
    size: int = 0


class _Reader:
    """python-multipart callbacks: text fields to memory (capped), the file to disk (capped)."""

    def __init__(self, tmp: Path, file_field: str, limit: int) -> None:
        self.tmp, self.file_field, self.limit = tmp, file_field, limit
        self.form = Form()
        self._header, self._value = b"", b""
        self._disposition = b""
        self._name = ""
        self._data = bytearray()
        self._out: IO[bytes] | None = None
        self._in_file = False  # the part being read is the file (fields may follow it)

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._data = b"", "", bytearray()
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            if len(self.form.fields) >= FIELDS_MAX:
                raise FormRefused(400, "Biểu mẫu có quá nhiều trường.")
            return
        if self._name != self.file_field or self._out is not None:
            raise FormRefused(400, f"Chỉ nhận một tệp, ở trường “{self.file_field}”.")
        raw = options[b"filename"].decode("utf-8", "replace")
        self.form.filename = PurePath(raw.replace("\\", "/")).name[:200]
        suffix = PurePath(self.form.filename).suffix.lower()[:8]
        self.form.file = self.tmp / f"upload{suffix if suffix.isascii() else ''}"
        self._out = self.form.file.open("wb")
        self._in_file = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file or self._out is None:
            if len(self._data) + end - start > FIELD_MAX_BYTES:
                raise FormRefused(413, f"Trường “{self._name[:40]}” dài quá.")
            self._data += data[start:end]
            return
        self.form.size += end - start
        if self.form.size > self.limit:
            raise FormRefused(413, too_large_vi(self.limit))
        self._out.write(data[start:end])

    def on_part_end(self) -> None:
        if self._in_file and self._out is not None:
            self._out.close()
        elif self._name:
            self.form.fields[self._name] = self._data.decode("utf-8", "replace")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="loaxa-api-") as tmp:
        yield Path(tmp)


@contextlib.asynccontextmanager
async def read_form(request: Request, file_field: str, limit: int) -> AsyncIterator[Form]:
    """The request's multipart form, its file streamed to a temporary file that is removed on
    leaving. FormRefused: 413 once the file passes `limit` bytes (the rest is not read) or
    when Content-Length says so up front; 400/415 for what is not a readable form. A
    urlencoded form (no file: text to speak) is taken too."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype == b"application/x-www-form-urlencoded":  # fields only (text to speak)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > FIELD_MAX_BYTES * 2:
                raise FormRefused(413, "Biểu mẫu dài quá.")
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        yield Form(fields=dict(pairs[:FIELDS_MAX]))
        return
    if ctype != b"multipart/form-data" or b"boundary" not in options:
        raise FormRefused(415, "Hãy gửi biểu mẫu dạng multipart/form-data.")
    if declared_too_large(request.headers.get("content-length"), limit):
        raise FormRefused(413, too_large_vi(limit))
    with temp_dir() as tmp:
        reader = _Reader(tmp, file_field, limit)
        parser = MultipartParser(options[b"boundary"], {
            "on_part_begin": reader.on_part_begin, "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end, "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value, "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished})
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except FormParserError:
            raise FormRefused(400, "Biểu mẫu gửi lên bị hỏng, không đọc được.") from None
        finally:
            reader.close()
        yield reader.form

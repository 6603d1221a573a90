"""The media nodes fetch: bulletin files from the schedule and emergency audio, in the node
audio format, stored content-addressed in the media directory and named by URL and hash."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydub import AudioSegment

from headend.media.access import node_url
from headend.media.store import is_pcm_wav, store_media, wav_for_nodes


@dataclass(frozen=True)
class Media:
    """A file nodes fetch by URL and check by hash."""

    url: str
    sha: str
    size: int

    def wire(self) -> dict[str, Any]:
        return {"url": self.url, "sha": self.sha, "size": self.size}

    def for_node(self, node_id: str, node_key_hex: str) -> Media:
        """The same file, its URL carrying this node's token (headend/media/access.py)."""
        return Media(node_url(self.url, node_id, node_key_hex), self.sha, self.size)


class MediaLibrary:
    """Bulletin files from the schedule, copied once into the headend's media directory under
    a content-addressed name that the web server serves at /media/<name>."""

    def __init__(self, media_dir: Path, base_url: str) -> None:
        self.media_dir = media_dir
        self.base_url = base_url.rstrip("/")
        self._known: dict[tuple[Path, int, int], Media] = {}

    def add_file(self, path: Path) -> Media:
        st = path.stat()
        key = (path.resolve(), st.st_mtime_ns, st.st_size)
        media = self._known.get(key)
        if media is None:
            media = self._known[key] = self.add_bytes(node_audio(path.read_bytes()))
        return media

    def add_bytes(self, wav: bytes) -> Media:
        stored = store_media(self.media_dir, wav, ".wav")
        return Media(f"{self.base_url}/media/{stored.name}", stored.sha256, stored.size)


def node_audio(data: bytes) -> bytes:
    """What nodes play: a PCM WAV as it is (already in a node format), anything else
    decoded with ffmpeg and converted to the ESP32 profile."""
    if is_pcm_wav(data):
        return data

    return wav_for_nodes(AudioSegment.from_file(io.BytesIO(data)))

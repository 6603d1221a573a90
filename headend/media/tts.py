"""Text to speech: an officer types a bulletin, the headend speaks it.

Engines sit behind ``SpeechEngine`` so a better Vietnamese voice (a hosted service the province
buys, or a local neural model) can replace the default without touching callers. The default is
eSpeak NG: free, offline and packaged everywhere, with Northern, Central and Southern Vietnamese
voices; it is intelligible, not pretty. No engine here speaks Tày, Nùng or Dao.

The text goes to the engine on stdin, never on the command line: bulletins are user input.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path
from typing import Protocol

from pydub import AudioSegment
from pydub.exceptions import CouldntDecodeError

MAX_CHARS = 5000  # about 10 minutes of speech: a long bulletin, not a book


class TtsError(Exception):
    """Speech could not be made; the message says why in Vietnamese and English."""


class SpeechEngine(Protocol):
    name: str

    def synthesize(self, text: str, language: str = "vi") -> AudioSegment: ...


def clean_text(text: str) -> str:
    """NFC (text pasted from phones and Macs often arrives decomposed), trimmed, checked."""
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise TtsError("Văn bản trống, không có gì để đọc. / The text is empty.")
    if len(text) > MAX_CHARS:
        raise TtsError(f"Văn bản quá dài ({len(text)} ký tự, tối đa {MAX_CHARS}); hãy chia nhỏ. "
                       f"/ The text is too long ({len(text)} characters, at most {MAX_CHARS}).")
    return text


class EspeakNg:
    """eSpeak NG as a subprocess, text on stdin, WAV (22.05 kHz mono) to a temp file."""

    name = "espeak-ng"

    def __init__(self, voice: str = "vi", speed_wpm: int = 150, binary: str = "espeak-ng",
                 timeout_s: float = 120.0) -> None:
        if not 80 <= speed_wpm <= 450:
            raise ValueError("speed_wpm must be 80..450 (espeak-ng's range)")
        self.voice = voice
        self.speed_wpm = speed_wpm
        self.binary = binary
        self.timeout_s = timeout_s

    def _voice_for(self, language: str) -> str:
        lang = language.strip().lower()
        # "vi" with a voice such as "vi-vn-x-south" keeps the configured accent.
        return self.voice if self.voice.lower().split("-")[0] == lang else lang

    def synthesize(self, text: str, language: str = "vi") -> AudioSegment:
        text = clean_text(text)
        exe = shutil.which(self.binary)
        if exe is None:
            raise TtsError(f"Chưa cài phần mềm đọc văn bản ({self.binary}). "
                           f"/ Text-to-speech engine not found: {self.binary} "
                           "(install the espeak-ng package).")
        voice = self._voice_for(language)
        with tempfile.TemporaryDirectory(prefix="loaxa-tts-") as tmp:
            out = Path(tmp) / "speech.wav"
            cmd = [exe, "-v", voice, "-s", str(self.speed_wpm), "-b", "1", "--stdin",
                   "-w", str(out)]
            try:
                proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True,
                                      timeout=self.timeout_s, check=False)
            except subprocess.TimeoutExpired as e:
                raise TtsError(f"Đọc văn bản quá lâu (> {self.timeout_s:g} s). "
                               f"/ {self.name} timed out.") from e
            except OSError as e:
                raise TtsError(f"Không chạy được {self.name}. / Cannot run {exe}: {e}") from e
            err = proc.stderr.decode("utf-8", "replace").strip()
            if proc.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
                why = err.splitlines()[0] if err else f"exit status {proc.returncode}"
                raise TtsError(f"Không tạo được giọng đọc (giọng '{voice}'). "
                               f"/ {self.name} failed: {why}")
            try:
                speech: AudioSegment = AudioSegment.from_wav(out)
            except (CouldntDecodeError, OSError, EOFError) as e:
                raise TtsError(f"Giọng đọc tạo ra bị lỗi. / {self.name} wrote a bad WAV: {e}") \
                    from e
        if len(speech) == 0:
            raise TtsError(f"Giọng đọc rỗng. / {self.name} produced no audio.")
        return speech


def default_engine() -> SpeechEngine:
    return EspeakNg()

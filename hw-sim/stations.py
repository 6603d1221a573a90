"""Local stand-ins for the radio stations a commune relays (VOV1, the provincial station).

Tests have no internet, so each station here is an endless PCM WAV stream over plain HTTP on
127.0.0.1, as a node's firmware fetches it. Each station's audio repeats its own ``pattern``, so a
test can tell from the PCM a node recorded which station aired. A station can be switched at run
time into the failures real relays show: down (503), refusing, stalled, muted, or cut short.

    with Stations() as st:
        st.add("vov1", tone_pattern(440))
        st.add("langson", tone_pattern(660))
        url = st.url("vov1")          # http://127.0.0.1:<port>/vov1
        st.set_mode("vov1", "mute")   # the stream goes on, but silent
"""

from __future__ import annotations

import contextlib
import math
import mimetypes
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import unquote, urlsplit

Mode = Literal["live", "down", "refuse", "stall", "mute", "cut_after"]
MODES: tuple[str, ...] = get_args(Mode)

# A live stream has no end: the data size field says "unknown", as Icecast-style WAV relays do.
LIVE_DATA_SIZE = 0xFFFFFFFF
CHUNK_TARGET = 8192  # bytes per write; TCP backpressure paces the stream to the reader


def wav_header(rate: int = 16000, bits: int = 16, channels: int = 1,
               data_size: int = LIVE_DATA_SIZE) -> bytes:
    """A 44-byte PCM WAV header (RIFF size saturates for a live stream)."""
    block = channels * bits // 8
    riff_size = min(data_size + 36, 0xFFFFFFFF)
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", data_size))


def tone_pattern(freq: float, rate: int = 16000, bits: int = 16, channels: int = 1,
                 level_dbfs: float = -12.0) -> bytes:
    """A whole number of cycles of a sine at ``freq``: repeated, it is a clean endless tone.

    8-bit WAV is unsigned (silence is 128), 16-bit is signed little-endian.
    """
    # The shortest sample count holding a whole number of cycles (frequencies to 0.01 Hz).
    num, den = round(freq * 100), rate * 100
    samples = den // math.gcd(num, den)
    if samples > rate * 2:  # an awkward frequency: two seconds is close enough to seamless
        samples = rate * 2
    amp = 10 ** (level_dbfs / 20)
    out = bytearray()
    for i in range(samples):
        v = amp * math.sin(2 * math.pi * freq * i / rate)
        frame = (struct.pack("<h", round(v * 32767)) if bits == 16
                 else bytes([128 + round(v * 127)]))
        out += frame * channels
    return bytes(out)


def byte_pattern(index: int, length: int = 64) -> bytes:
    """A distinct, audible (non-silent) byte sequence per ``index``, for 8-bit streams.

    Never all 0x00 or all 0x80, so it cannot be mistaken for silence in either encoding.
    """
    return bytes((index * 37 + i * 11 + 1) % 256 for i in range(length))


@dataclass
class Station:
    name: str
    pattern: bytes
    rate: int
    bits: int
    channels: int
    mode: Mode = "live"
    cut_after: int = 0
    connections: int = 0

    @property
    def header(self) -> bytes:
        return wav_header(self.rate, self.bits, self.channels)

    def chunk(self) -> bytes:
        """The pattern repeated to about CHUNK_TARGET bytes; every chunk starts at phase 0."""
        reps = max(1, CHUNK_TARGET // len(self.pattern))
        return self.pattern * reps


class _Server(ThreadingHTTPServer):
    # A whole commune connects at the slot's first second; with the default backlog of 5 the
    # kernel drops the rest and they retry a second later, which is no station's behaviour.
    request_queue_size = 256
    stations: Stations

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._handlers: list[threading.Thread] = []
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Daemon threads (a test that forgets stop() does not hang the process), kept here
        # because socketserver's server_close() joins only non-daemon ones; named as this
        # server's, so a test counts its own and not another server's in the same process.
        self._handlers = [t for t in self._handlers if t.is_alive()]
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             name=f"stations:{self.server_address[1]}:request", daemon=True)
        self._handlers.append(t)
        t.start()

    def server_close(self) -> None:
        super().server_close()
        for t in self._handlers:
            t.join(5)  # stop() shut their sockets; never hang on one that missed it


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # close-delimited bodies, as the node's HTTP/1.0 client expects

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet in tests

    def do_GET(self) -> None:
        st = self.server.stations
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/files/"):
            self._static(path[len("/files/"):])
            return
        station = st._connect(path.strip("/"))
        if station is None:
            self.send_error(404, "no such station")
            return
        st._register(self.connection)
        try:
            self._stream(station)
        except OSError:
            pass  # the reader went away, or stop() closed the socket
        finally:
            st._unregister(self.connection)

    def _stream(self, station: Station) -> None:
        st = self.server.stations
        mode = station.mode
        if mode == "refuse":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "down":
            self.send_error(503, "station off air")
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(station.header)
        self.wfile.flush()
        chunk = station.chunk()
        silence = (b"\x80" if station.bits == 8 else b"\x00") * len(chunk)
        sent = 0
        while not st._stopping.is_set():
            mode = station.mode
            if mode in ("down", "refuse"):
                return  # the station dropped mid-stream: close
            if mode == "stall":
                st._stopping.wait(0.05)  # hold the connection, send nothing
                continue
            data = silence if mode == "mute" else chunk
            if mode == "cut_after":
                left = station.cut_after - sent
                if left <= 0:
                    return
                data = data[:left]
            self.wfile.write(data)
            sent += len(data)

    def _static(self, rel: str) -> None:
        root = self.server.stations.static_dir
        if root is None:
            self.send_error(404)
            return
        path = (root / rel).resolve()
        if not path.is_file() or not path.is_relative_to(root.resolve()):
            self.send_error(404)
            return
        data = path.read_bytes()
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)


class Stations:
    """Endless WAV streams at http://127.0.0.1:<port>/<name>; files at /files/<name>."""

    def __init__(self, static_dir: Path | None = None, host: str = "127.0.0.1") -> None:
        self.static_dir = static_dir
        self._stations: dict[str, Station] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server = _Server((host, 0), _Handler)
        self._server.stations = self
        self.port = int(self._server.server_address[1])
        self._host = host
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Stations:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name=f"stations:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Close every stream and the server; returns when no thread of ours is left."""
        self._stopping.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # unblock writers stuck on a reader that stopped reading
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()  # joins the handler threads

    def __enter__(self) -> Stations:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- stations ---------------------------------------------------------------------------
    def add(self, name: str, pattern: bytes, rate: int = 16000, bits: int = 16,
            channels: int = 1) -> Station:
        if not name or "/" in name or name == "files":
            raise ValueError(f"bad station name: {name!r}")
        if bits not in (8, 16) or channels not in (1, 2):
            raise ValueError("PCM must be 8 or 16 bit, mono or stereo")
        block = bits // 8 * channels
        if not pattern or len(pattern) % block:
            raise ValueError(f"pattern length must be a non-zero multiple of {block} bytes")
        station = Station(name, pattern, rate, bits, channels)
        with self._lock:
            self._stations[name] = station
        return station

    def set_mode(self, name: str, mode: Mode, cut_after: int | None = None) -> None:
        """Switch a station; streams already open follow (except 'cut_after', counted per
        connection from its first PCM byte)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        if mode == "cut_after" and (cut_after is None or cut_after < 0):
            raise ValueError("'cut_after' needs the number of PCM bytes to send")
        station = self._stations[name]
        station.cut_after = cut_after or 0
        station.mode = mode

    def station(self, name: str) -> Station:
        return self._stations[name]

    def connections(self, name: str) -> int:
        """How many times a client has connected to this station."""
        return self._stations[name].connections

    def url(self, name: str) -> str:
        return f"http://{self.host}/{name}"

    def file_url(self, filename: str) -> str:
        return f"http://{self.host}/files/{filename}"

    @property
    def host(self) -> str:
        """host:port, as a node's media allow-list holds it."""
        return f"{self._host}:{self.port}"

    def which(self, pcm: bytes) -> str | None:
        """The station whose pattern this recorded PCM carries (None: silence or unknown)."""
        with self._lock:
            stations = list(self._stations.values())
        for s in stations:
            n = len(s.pattern)
            if len(pcm) < n:
                continue
            # Any window of one pattern length lies inside two back-to-back patterns.
            start = (len(pcm) // 2 // n) * n if len(pcm) >= 2 * n else 0
            window = pcm[start:start + n]
            if len(window) == n and window in s.pattern + s.pattern:
                return s.name
        return None

    # -- for the handler --------------------------------------------------------------------
    def _connect(self, name: str) -> Station | None:
        with self._lock:
            station = self._stations.get(name)
            if station is not None:
                station.connections += 1
            return station

    def _register(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
            if self._stopping.is_set():  # stop() has already swept the open connections
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _unregister(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

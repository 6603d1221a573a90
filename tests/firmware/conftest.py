"""Pytest side of the firmware transport tests: real mosquitto brokers and a small HTTP server.

The test cases themselves live in fw_*_cases.py (MicroPython-importable, no pytest); see fwtest.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from headend.nodes.broker import find_free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


class Mosquitto:
    """A throwaway mosquitto on a loopback port (anonymous, no persistence)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or find_free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_port(self.port)

    def stop(self) -> None:
        with self.lock:
            if self.proc is None:
                return
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


def blob(n: int) -> bytes:
    """Deterministic test body: repeated sha256 blocks."""
    out = bytearray()
    block = b"loaxa"
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def make_handler(broker2: Mosquitto) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/blob":
                n = int(query.partition("=")[2] or "0")
                self._send(200, blob(n), {"Content-Type": "audio/mpeg"})
            elif path == "/nolength":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"no length here")
            elif path == "/truncated":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"a" * 100)
            elif path == "/redirect":
                self._send(302, b"", {"Location": "/blob?n=10"})
            elif path == "/stall":
                self.send_response(200)
                self.send_header("Content-Length", "10")
                self.end_headers()
                self.wfile.flush()
                time.sleep(3)
            elif path == "/control/broker2/stop":
                broker2.stop()
                self._send(200, b"stopped")
            elif path == "/control/broker2/start":
                broker2.start()
                self._send(200, b"started")
            else:
                self._send(404, b"not found")

    return Handler


@pytest.fixture(scope="session")
def fw_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start the brokers and the HTTP server; export their addresses for the test cases."""
    if not os.path.exists(MOSQUITTO):
        pytest.skip("mosquitto is not installed")
    work = tmp_path_factory.mktemp("fw")
    b1, b2 = Mosquitto(work), Mosquitto(work)
    b1.start()
    b2.start()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(b2))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        "LOAXA_FW_BROKER": b1.addr,
        "LOAXA_FW_BROKER2": b2.addr,
        "LOAXA_FW_HTTP": f"http://127.0.0.1:{server.server_address[1]}",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.shutdown()
        server.server_close()
        b1.stop()
        b2.stop()

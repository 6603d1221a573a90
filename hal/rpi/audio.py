"""AudioOut through ALSA by mpv, a supervised subprocess fed raw PCM on its stdin.

Volume goes through mpv's JSON IPC socket. A dead mpv (broken pipe, exit) or one that stops
reading is restarted once per playback with the same format and the PCM carries on; a second
death raises OSError, which the firmware reports as a partial playback. No call blocks the
event loop for more than a few milliseconds."""
import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import subprocess
import time
from typing import IO, Any

from hal import base

log = logging.getLogger(__name__)

_FORMATS = {8: "u8", 16: "s16le", 24: "s24le", 32: "s32le"}
LEAD_MS = 200  # writes may run this far ahead of real time (what mpv and the pipe hold)
STALL_S = 3.0  # an mpv that takes nothing for this long is treated as dead
MAX_RESTARTS = 1  # per playback
EXIT_WAIT_S = 5.0  # drain: how long mpv may take to play out and exit after EOF


class MpvAudioOut(base.AudioOut):
    def __init__(self, mpv: str = "/usr/bin/mpv", alsa_device: str = "default",
                 ipc_path: str = "/run/loaxa/mpv.sock", extra_args: list[str] | None = None):
        self.mpv = mpv
        self.alsa_device = alsa_device
        self.ipc_path = ipc_path
        self.extra_args = list(extra_args or [])
        self.volume = 70
        self.restarts = 0  # over the board's life: for telemetry and tests
        self.last_error: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin: IO[bytes] | None = None
        self._fmt: tuple[int, int, int] | None = None
        self._label = ""
        self._restarts_now = 0  # in this playback
        self._bytes_per_s = 32000.0
        self._t0 = 0.0
        self._written = 0

    # --- the process ------------------------------------------------------------------

    def argv(self) -> list[str]:
        assert self._fmt is not None
        rate, bits, channels = self._fmt
        args = [self.mpv, "--no-config", "--no-terminal", "--really-quiet", "--no-video",
                "--idle=no", "--demuxer=rawaudio", f"--demuxer-rawaudio-rate={rate}",
                f"--demuxer-rawaudio-channels={channels}",
                f"--demuxer-rawaudio-format={_FORMATS[bits]}",
                f"--volume={self.volume}", f"--input-ipc-server={self.ipc_path}"]
        if not any(a.startswith("--ao=") for a in self.extra_args):
            args.append("--ao=alsa")
            if self.alsa_device:
                dev = self.alsa_device
                args.append("--audio-device=" + (dev if dev.startswith("alsa/") else "alsa/" + dev))
        return args + self.extra_args + ["-"]

    def _spawn(self) -> None:
        try:
            os.makedirs(os.path.dirname(self.ipc_path) or ".", exist_ok=True)
            proc = subprocess.Popen(self.argv(), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            raise OSError(errno.EIO, f"mpv: {e}") from e
        assert proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)
        self._proc, self._stdin = proc, proc.stdin

    def _stop_process(self, kill: bool) -> int | None:
        """Close mpv's stdin; stop mpv (kill=True: at once). Returns its exit status if known."""
        proc, stdin = self._proc, self._stdin
        self._proc = self._stdin = None
        if proc is None:
            return None
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        if kill and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(0.3)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            return proc.wait(0.3)
        except subprocess.TimeoutExpired:
            proc.kill()
            return None

    def _restart(self, why: str) -> None:
        self._restarts_now += 1
        self.restarts += 1
        self.last_error = f"mpv {why} during {self._label!r}"
        self._stop_process(kill=True)
        if self._restarts_now > MAX_RESTARTS:
            log.error("%s; giving up on this playback", self.last_error)
            raise OSError(errno.EPIPE, self.last_error)
        log.warning("%s; restarted", self.last_error)
        self._spawn()

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # --- base.AudioOut ----------------------------------------------------------------

    def open(self, rate: int, bits: int, channels: int, label: str = "") -> None:
        if bits not in _FORMATS:
            raise ValueError(f"unsupported sample size {bits}")
        self.close()
        self._fmt = (rate, bits, channels)
        self._label = label
        self._restarts_now = 0
        self._bytes_per_s = rate * (bits // 8) * channels
        self._written = 0
        self._spawn()
        self._t0 = time.monotonic()

    async def write(self, buf: Any) -> None:
        if self._fmt is None:
            raise OSError(errno.EBADF, "audio output is not open")
        if self._proc is None:  # written again after drain(): a new mpv
            self._spawn()
            self._t0, self._written = time.monotonic(), 0
        view = memoryview(buf).cast("B")
        since = time.monotonic()
        while view:
            assert self._stdin is not None and self._proc is not None
            try:
                n = os.write(self._stdin.fileno(), view)
            except BlockingIOError:
                if self._proc.poll() is not None:
                    self._restart(f"exited (status {self._proc.returncode})")
                elif time.monotonic() - since > STALL_S:
                    self._restart("stalled")
                    since = time.monotonic()
                else:
                    await asyncio.sleep(0.01)
                continue
            except (BrokenPipeError, ValueError):  # ValueError: stdin closed under us
                self._restart("died (broken pipe)")
                continue
            view = view[n:]
            since = time.monotonic()
        self._written += len(buf)
        # Pace like a DAC: return when what was written is (almost) due.
        ahead = self._written / self._bytes_per_s - LEAD_MS / 1000 - (time.monotonic() - self._t0)
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def drain(self) -> None:
        """Wait until the PCM written has been played: its duration, then mpv's exit on EOF
        (mpv exits only once its output has played out)."""
        if self._proc is None:
            return
        left = self._written / self._bytes_per_s - (time.monotonic() - self._t0)
        if left > 0:
            await asyncio.sleep(left)
        proc = self._proc
        if self._stdin is not None:
            with contextlib.suppress(OSError):
                self._stdin.close()
            self._stdin = None
        deadline = time.monotonic() + EXIT_WAIT_S
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        status = self._stop_process(kill=True)
        if status not in (0, None):
            self.last_error = f"mpv exited with status {status} while draining {self._label!r}"
            log.warning(self.last_error)

    def close(self) -> None:
        """Stop at once (a cancelled playback); after drain() there is nothing left to stop."""
        self._stop_process(kill=True)
        self._fmt = None

    def set_volume(self, level: int) -> None:
        self.volume = max(0, min(100, int(level)))
        if self._proc is not None and self._proc.poll() is None:
            self._ipc({"command": ["set_property", "volume", self.volume]})

    def _ipc(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """One command over mpv's JSON IPC socket (short timeouts: never stalls playback);
        mpv's reply ({"error": "success", "data": ...}) or None."""
        for _ in range(20):  # mpv creates the socket shortly after it starts
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(0.5)
                    s.connect(self.ipc_path)
                    s.sendall(json.dumps(msg).encode() + b"\n")
                    reply = s.recv(4096)
                for line in reply.splitlines():
                    r = json.loads(line)
                    if "error" in r:  # (lines without are events)
                        if r["error"] != "success":
                            log.warning("mpv IPC %s: %s", msg, r["error"])
                        return dict(r)
                return None
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.01)
            except (OSError, ValueError) as e:
                log.warning("mpv IPC: %s", e)
                return None
        return None

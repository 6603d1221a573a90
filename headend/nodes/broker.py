"""LoaXa's own Mosquitto: write its config, password file and ACL, then run it.

The headend owns the broker process: per-node credentials (username = node id) and an ACL
that lets each node touch only its own topics under ``loaxa/v1/node/<id>/``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import pwd
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from firmware import protocol
from headend.core.home import write_private
from headend.core.tls import TlsFiles

__all__ = [
    "HEADEND_TOPICS",
    "LOOPBACK",
    "NODE_READ_LEAVES",
    "NODE_WRITE_LEAVES",
    "PBKDF2_ITERATIONS",
    "Broker",
    "BrokerError",
    "find_free_port",
    "hash_password",
    "raise_fd_limit",
]

PBKDF2_ITERATIONS: Final = 101  # mosquitto_passwd's default for $7$ (sha512-pbkdf2)
_SALT_BYTES: Final = 12  # what mosquitto_passwd uses

# Topic leaves under loaxa/v1/node/<node>/ that a node may read / write (the ACL).
NODE_READ_LEAVES: Final[tuple[str, ...]] = (
    protocol.CMD, protocol.PLAN, protocol.ASRUN_ACK, protocol.ECHO)
NODE_WRITE_LEAVES: Final[tuple[str, ...]] = (
    protocol.ACK,
    protocol.STATE,
    protocol.TELEMETRY,
    protocol.ASRUN,
    protocol.ECHO_REPLY,
)
# "loaxa/v1/node/" -> "loaxa/#": the headend reads and writes the whole tree.
HEADEND_TOPICS: Final[str] = str(protocol.PREFIX).split("/", 1)[0] + "/#"

_DEFAULT_EXECUTABLE: Final = "/usr/sbin/mosquitto"
LOOPBACK: Final = ("127.0.0.1", "::1", "localhost")


class BrokerError(RuntimeError):
    """The broker could not be configured, started or signalled."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Hash ``password`` the way ``mosquitto_passwd`` does (Mosquitto 2.0, ``$7$`` format).

    ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt)>``; the salt is
    12 random bytes unless given. Much faster than running mosquitto_passwd once per node.
    """
    if salt is None:
        salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, PBKDF2_ITERATIONS)
    return "$7${}${}${}".format(
        PBKDF2_ITERATIONS,
        base64.b64encode(salt).decode("ascii"),
        base64.b64encode(digest).decode("ascii"),
    )


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it; never 1883)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port != 1883:
            return port


def raise_fd_limit() -> int:
    """Raise this process's open-file soft limit to the hard limit; return the new soft limit.

    Child processes (mosquitto) inherit it, so 2,000+ node connections fit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


MAX_PACKET: Final = protocol.MAX_PLAN_PAYLOAD + 4096  # the payload, topic and MQTT header


def _check_username(name: str, what: str) -> None:
    # Usernames go into the passwd file (user:hash) and the ACL (user <name>) as plain text.
    if not name or any(ch in name for ch in ":\n\r\t #+/") or name != name.strip():
        raise ValueError(f"{what} {name!r} cannot be used as a broker username")


def _mqtt_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def _connect_packet(username: str, password: str) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, empty client id (the broker assigns one)."""
    flags = 0x80 | 0x40 | 0x02  # username, password, clean session
    body = _mqtt_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 10)
    body += _mqtt_string("") + _mqtt_string(username) + _mqtt_string(password)
    length = len(body)
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([0x10]) + bytes(encoded) + body


class Broker:
    """One Mosquitto process that LoaXa configures and runs: the headend's listener on
    loopback (``port``), the nodes' on ``node_host:node_port``, with TLS when ``tls`` is given
    (required off loopback).

    Call :meth:`write_config` before :meth:`start`, and again (then :meth:`reload`) whenever
    nodes are added, removed or get new passwords.
    """

    def __init__(
        self,
        state_dir: Path,
        port: int,
        headend_user: str = "headend",
        *,
        headend_password: str,
        host: str = "127.0.0.1",
        node_port: int | None = None,
        node_host: str = "127.0.0.1",
        tls: TlsFiles | None = None,
        executable: str | Path | None = None,
        max_keepalive: int = 1200,
        max_queued_messages: int = 100_000,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        _check_username(headend_user, "headend user")
        if not 0 < port < 65536:
            raise ValueError(f"bad port {port}")
        if not 10 <= max_keepalive <= 65535:
            raise ValueError("max_keepalive must be within 10..65535 seconds")
        if host not in LOOPBACK:
            raise ValueError("the headend's own listener stays on loopback")
        if tls is None and node_host not in LOOPBACK:
            raise ValueError(f"nodes on {node_host} would send their passwords in the clear: "
                             "a listener off loopback needs TLS")
        self.state_dir = Path(state_dir)
        self.port = port
        self.host = host
        if node_port is None:
            node_port = find_free_port()
            while node_port == port:
                node_port = find_free_port()
        self.node_port = node_port
        if not 0 < self.node_port < 65536 or self.node_port == port:
            raise ValueError(f"bad node port {self.node_port}")
        self.node_host = node_host
        self.tls = tls
        self.headend_user = headend_user
        self.headend_password = headend_password
        self.max_keepalive = max_keepalive
        self.max_queued_messages = max_queued_messages
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._executable = str(executable) if executable is not None else _find_mosquitto()
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None

    # -- files ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.state_dir / "mosquitto.conf"

    @property
    def passwd_path(self) -> Path:
        return self.state_dir / "passwd"

    @property
    def acl_path(self) -> Path:
        return self.state_dir / "acl"

    @property
    def headend_passwd_path(self) -> Path:
        """The headend listener's only login: a node's password does not open it."""
        return self.state_dir / "passwd.headend"

    @property
    def headend_acl_path(self) -> Path:
        return self.state_dir / "acl.headend"

    @property
    def log_path(self) -> Path:
        """Mosquitto's own log (``log_dest file``)."""
        return self.state_dir / "mosquitto.log"

    @property
    def console_path(self) -> Path:
        """Mosquitto's stdout/stderr (errors from before the log file is open land here)."""
        return self.state_dir / "mosquitto.console.log"

    @property
    def persistence_dir(self) -> Path:
        return self.state_dir / "persistence"

    def write_config(self, nodes: Mapping[str, str]) -> None:
        """Write mosquitto.conf, the password files (0600) and ACLs for ``nodes`` (node id ->
        password).

        Takes effect on the next :meth:`start`, or at once on a running broker after
        :meth:`reload`.
        """
        self.write_credentials(nodes)
        write_private(self.config_path, self._config_text(), 0o600)

    def write_credentials(self, nodes: Mapping[str, str]) -> None:
        """Write the password files and ACLs only (a running broker's listeners stay as they
        are): what adding, re-keying or revoking a node changes. :meth:`reload` applies it."""
        for node_id in nodes:
            if not protocol.valid_node_id(node_id):
                raise ValueError(f"invalid node id {node_id!r}")
            if node_id == self.headend_user:
                raise ValueError(f"node id {node_id!r} clashes with the headend user")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.persistence_dir.mkdir(exist_ok=True)

        headend = f"{self.headend_user}:{hash_password(self.headend_password)}\n"
        write_private(self.headend_passwd_path, headend, 0o600)
        passwd_lines = [f"{node_id}:{hash_password(pw)}" for node_id, pw in nodes.items()]
        write_private(self.passwd_path, "".join(f"{line}\n" for line in passwd_lines), 0o600)
        write_private(self.acl_path, self._acl_text(), 0o600)
        write_private(self.headend_acl_path, "\n".join([
            "# Written by LoaXa (headend/nodes/broker.py); edits are overwritten.", "",
            f"user {self.headend_user}", f"topic readwrite {HEADEND_TOPICS}", ""]), 0o600)

    def _acl_text(self) -> str:
        lines = ["# Written by LoaXa (headend/nodes/broker.py); edits are overwritten.", ""]
        lines.append("# Every node: its own topics only (%u = username = client id = node id).")
        lines += [f"pattern read {protocol.topic('%u', leaf)}" for leaf in NODE_READ_LEAVES]
        lines += [f"pattern write {protocol.topic('%u', leaf)}" for leaf in NODE_WRITE_LEAVES]
        lines.append("")
        return "\n".join(lines)

    def _config_text(self) -> str:
        user = pwd.getpwuid(os.getuid()).pw_name
        lines = [
            "# Written by LoaXa (headend/nodes/broker.py); edits are overwritten.",
            # Run as us: as root mosquitto would otherwise drop to 'mosquitto', which cannot
            # read these files.
            f"user {user}",
            # Two listeners, each with its own logins: the headend's on loopback, where a
            # node's password does not work; the nodes', where the client id is the username,
            # so no node can take over another client's session (the headend's included).
            "per_listener_settings true",
            f"listener {self.port} {self.host}",
            "max_connections -1",
            "allow_anonymous false",
            f"password_file {self.headend_passwd_path}",
            f"acl_file {self.headend_acl_path}",
            f"listener {self.node_port} {self.node_host}",
            "max_connections -1",
            "allow_anonymous false",
            "use_username_as_clientid true",
            f"password_file {self.passwd_path}",
            f"acl_file {self.acl_path}",
            *self._tls_lines(),
            # QoS1 messages for offline persistent sessions survive a restart.
            "persistence true",
            f"persistence_location {self.persistence_dir}",
            "persistence_file mosquitto.db",
            "autosave_interval 60",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            # 2,000 acks arriving at once must not be throttled (default 20 in flight) ...
            "max_inflight_messages 0",
            # ... nor dropped (default queue 1000 per client).
            f"max_queued_messages {self.max_queued_messages}",
            f"max_keepalive {self.max_keepalive}",
            # Larger packets disconnect their sender: a plan (the largest message, headend to
            # node) is at most MAX_PLAN_PAYLOAD bytes; a node's messages are smaller still.
            f"max_packet_size {MAX_PACKET}",
            "set_tcp_nodelay true",
            f"pid_file {self.pid_path}",
            "",
        ]
        return "\n".join(lines)

    def _tls_lines(self) -> list[str]:
        if self.tls is None:
            return []
        return [f"certfile {self.tls.cert}", f"keyfile {self.tls.key}",
                "tls_version tlsv1.2"]  # what MicroPython's mbedTLS speaks

    # -- process -------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Launch mosquitto and wait until it accepts the headend's login.

        Raises :class:`BrokerError` (with the tail of the logs) if it exits or is not ready
        within ``start_timeout``. Does nothing if it is already running.
        """
        if self.running:
            return
        self._reap()
        if not self.config_path.exists():
            raise BrokerError(f"no {self.config_path}; call write_config() first")
        self._stop_stale()
        raise_fd_limit()
        self._console = open(self.console_path, "ab")  # noqa: SIM115 (closed in _reap)
        try:
            self._proc = subprocess.Popen(
                [self._executable, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=self._console,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=True,  # own process group: signals reach only it
                close_fds=True,
            )
        except OSError as exc:
            self._reap()
            raise BrokerError(f"cannot run {self._executable}: {exc}") from exc
        try:
            self.wait_ready(self.start_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "mosquitto.pid"

    def _running_pid(self) -> int | None:
        """The pid of a broker running on this state directory's config (its pid file),
        whoever started it; None when there is none or the pid now belongs to another
        process."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if str(self.config_path).encode() in cmdline else None

    def _stop_stale(self) -> None:
        """Stop a broker that a killed LoaXa process left running on this state directory."""
        pid = self._running_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the broker accepts an MQTT login from the headend user.

        Raises :class:`BrokerError` if the process exits, refuses the login, or ``timeout``
        passes.
        """
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while True:
            proc = self._proc
            if proc is None:
                raise BrokerError("broker is not started")
            code = proc.poll()
            if code is not None:
                raise BrokerError(
                    f"mosquitto exited with status {code} before it was ready\n{self.log_tail()}"
                )
            try:
                rc = self._probe(min(0.25, max(0.05, deadline - time.monotonic())))
            except OSError as exc:
                last_error = str(exc) or type(exc).__name__
            else:
                if rc == 0:
                    return
                raise BrokerError(
                    f"mosquitto on {self.host}:{self.port} refused the headend login "
                    f"(CONNACK code {rc})\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"mosquitto did not accept connections on {self.host}:{self.port} within "
                    f"{timeout:g} s ({last_error})\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _probe(self, timeout: float) -> int:
        """Log in as the headend over MQTT 3.1.1; return the CONNACK return code."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_connect_packet(self.headend_user, self.headend_password))
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    raise ConnectionError("connection closed before CONNACK")
                reply += chunk
            if reply[0] != 0x20 or reply[1] != 2:
                raise ConnectionError(f"not a CONNACK: {reply!r}")
            if reply[3] == 0:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return reply[3]

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM (mosquitto saves its persistence file), SIGKILL after ``timeout``; reaps.

        Safe to call more than once or when never started.
        """
        proc = self._proc
        if proc is None:
            return
        wait = self.stop_timeout if timeout is None else timeout
        try:
            if proc.poll() is None:
                self._signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(wait)
                except subprocess.TimeoutExpired:
                    self._signal_group(proc, signal.SIGKILL)
                    proc.wait()
        finally:
            self._reap()

    def restart(self) -> None:
        """Stop, then start (QoS1 queues of persistent sessions survive via persistence)."""
        self.stop()
        self.start()

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP: re-read passwd, acl and most options without dropping connected clients.

        Returns once the reload has been applied (mosquitto logs it, then serves a new login).
        Clients whose credentials were removed are disconnected by mosquitto.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise BrokerError("cannot reload: broker is not running")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        self._wait_reloaded(offset, deadline, lambda: proc.poll() is None)
        # Mosquitto is single-threaded: a login served now is served after the reload.
        self.wait_ready(max(0.1, deadline - time.monotonic()))

    def reload_pid(self, timeout: float = 10.0) -> None:
        """:meth:`reload` for the broker another process runs on this state directory (a
        `loaxa` command beside `loaxa serve`): SIGHUP to its pid file's process; returns
        once its log says it reloaded."""
        pid = self._running_pid()
        if pid is None:
            raise BrokerError("no broker runs on this state directory")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as e:
            raise BrokerError(f"cannot signal the broker: {e}") from None
        self._wait_reloaded(offset, time.monotonic() + timeout,
                            lambda: Path(f"/proc/{pid}").exists())

    def _wait_reloaded(self, offset: int, deadline: float, alive: Callable[[], bool]) -> None:
        while b"Reloading config" not in self._read_log_from(offset):
            if not alive():
                raise BrokerError(f"mosquitto exited during reload\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise BrokerError("mosquitto did not reload in time")
            time.sleep(0.01)

    def _read_log_from(self, offset: int) -> bytes:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of mosquitto's log and console output, for error messages."""
        parts = []
        for path in (self.console_path, self.log_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            tail = text.splitlines()[-lines:]
            if tail:
                parts.append(f"--- {path.name} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts) if parts else "(no mosquitto log)"

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if self._console is not None:
            self._console.close()
            self._console = None

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<Broker {self.host}:{self.port} {state} in {self.state_dir}>"


def _find_mosquitto() -> str:
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(_DEFAULT_EXECUTABLE, os.X_OK):
        return _DEFAULT_EXECUTABLE
    raise BrokerError("mosquitto not found; install it (make install) or pass executable=")

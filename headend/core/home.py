"""The state directory every `loaxa` command shares: database, broker files, media, node configs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class HomeError(Exception):
    """The state directory is missing, unreadable or not a LoaXa state directory."""


def default_home() -> Path:
    """$LOAXA_HOME, else $XDG_DATA_HOME/loaxa, else ~/.local/share/loaxa."""
    env = os.environ.get("LOAXA_HOME")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "loaxa"


MARKER = "loaxa-home"
PRIVATE_DIRS = ("broker", "nodes", "sim", "tls")  # keys and passwords live in these


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically (a reload never sees half a file) with ``mode``,
    never readable by others on the way (a key written, then chmod-ed, was for a moment)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by umask and ignored for old files
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / "loaxa.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def media_dir(self) -> Path:
        return self.root / "media"

    @property
    def nodes_dir(self) -> Path:
        """Provisioned node configs (id, key, broker password): what gets flashed to a node."""
        return self.root / "nodes"

    @property
    def tls_dir(self) -> Path:
        """The installation's CA and server certificates (headend/core/tls.py)."""
        return self.root / "tls"

    @property
    def sim_dir(self) -> Path:
        return self.root / "sim"

    @property
    def secrets_path(self) -> Path:
        return self.root / "headend-secret"

    @property
    def running_path(self) -> Path:
        """Written by a running headend (`loaxa serve`/`demo`): its pid and ports, so tools
        such as `loaxa broadcast` can reach its broker and media server."""
        return self.root / "running.json"

    @property
    def communes_path(self) -> Path:
        """Commune id -> the schedule file `loaxa serve` was given, so `loaxa node provision`
        finds the file to add a node to."""
        return self.root / "communes.json"

    @classmethod
    def create(cls, root: Path) -> Home:
        """Create (or reuse) a state directory; refuse a file or someone else's directory."""
        try:
            if root.exists() and not root.is_dir():
                raise HomeError(f"state directory {root} is not a directory")
            root.mkdir(parents=True, exist_ok=True)
            marker = root / MARKER
            if not marker.is_file():
                if marker.exists() or any(p.name != MARKER for p in root.iterdir()):
                    raise HomeError(
                        f"{root} exists and is not a LoaXa state directory (no {MARKER} file); "
                        "choose another --home"
                    )
                marker.write_text("LoaXa state directory\n")
            home = cls(root)
            for d in (home.broker_dir, home.media_dir, home.nodes_dir, home.sim_dir, home.tls_dir):
                if d.exists() and not d.is_dir():
                    raise HomeError(f"{d} should be a directory but is a file")
                d.mkdir(exist_ok=True)
            # The database holds every node's key: the state directory is its owner's only.
            root.chmod(0o700)
            for name in PRIVATE_DIRS:
                (root / name).chmod(0o700)
        except PermissionError as e:
            raise HomeError(f"cannot write to state directory {root}: {e.strerror}") from e
        except (NotADirectoryError, FileExistsError) as e:
            # A file where a directory should be, on the way to root.
            raise HomeError(f"cannot create state directory {root}: {e.strerror}: "
                            f"{e.filename}") from e
        except OSError as e:
            raise HomeError(f"cannot create state directory {root}: {e.strerror}") from e
        return home

    def loose_permissions(self) -> list[str]:
        """The secret-holding paths others may read or write: the state directory, the
        database, the headend's password, node configs, the broker's and the simulator's
        files. Checked when the headend starts; each is named with its mode."""
        paths = [self.root, self.db_path, self.secrets_path]
        paths += [self.root / name for name in PRIVATE_DIRS]
        for name in PRIVATE_DIRS:
            d = self.root / name
            if d.is_dir():
                paths += sorted(p for p in d.iterdir() if p.is_file())
        paths += [self.root / f"loaxa.db{x}" for x in ("-wal", "-shm", "-journal")]
        out = []
        for p in paths:
            try:
                mode = p.stat().st_mode & 0o777
            except OSError:
                continue  # not there (yet)
            if mode & 0o077:
                out.append(f"{p} ({mode:04o})")
        return out

    @classmethod
    def open(cls, root: Path) -> Home:
        """Open an existing state directory; clear errors when it is missing or broken."""
        try:
            if not root.exists():
                raise HomeError(
                    f"state directory {root} does not exist; run `loaxa demo` first "
                    "or pass --home / set LOAXA_HOME"
                )
            if not root.is_dir():
                raise HomeError(f"state directory {root} is not a directory")
            if not (root / MARKER).is_file():
                raise HomeError(f"{root} is not a LoaXa state directory (no {MARKER} file)")
            home = cls(root)
            if not home.db_path.is_file():
                raise HomeError(f"state directory {root} has no database ({home.db_path.name})")
        except PermissionError as e:
            raise HomeError(f"cannot read state directory {root}: {e.strerror}") from e
        return home

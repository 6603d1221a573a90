"""The `loaxa` command: clear errors (exit code 2, one line on stderr naming the problem, no
traceback) for bad arguments and broken state directories, and times shown in the commune's
timezone whatever the machine's own zone is."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session
from support.cli import run_main

from headend.communes.files import load_commune
from headend.communes.registry import provision_commune
from headend.core import auth
from headend.core.db import open_db
from headend.core.home import MARKER, Home, HomeError
from headend.core.models import AsRunRecord, Command, Node
from headend.nodes.broker import find_free_port

REPO = Path(__file__).resolve().parents[2]
LOAXA = Path(sys.executable).parent / "loaxa"
COMMUNE = REPO / "schedules" / "tan-lang.toml"
VN = ZoneInfo("Asia/Ho_Chi_Minh")

# 03:30 on 23/11/2026 in Hà Nội is 20:30 on 22/11 in UTC and 15:30 on 22/11 in New York.
START_MS = int(datetime(2026, 11, 22, 20, 30, tzinfo=UTC).timestamp() * 1000)
END_MS = START_MS + 180_000


@pytest.fixture(autouse=True)
def no_default_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch the real ~/.local/share/loaxa."""
    monkeypatch.delenv("LOAXA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user" / "data"))


def loaxa(*args: str, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a person runs it."""
    return subprocess.run([str(LOAXA), *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), cwd=REPO)


def assert_clean_error(code: int | None, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip(), "nothing on stderr"
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"





def processes_mentioning(needle: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and "pytest" not in cmd:
            found.append(cmd)
    return found


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A provisioned state directory with one aired item and one node playing."""
    h = Home.create(tmp_path / "state")
    engine = open_db(h.db_url)
    provision_commune(engine, h, load_commune(COMMUNE))
    with Session(engine) as s, s.begin():
        s.add(Command(id="c1", node_id="tl-napan-1", seq=1, op="play", args="{}",
                      title="Bản tin sáng", issued_ms=START_MS - 1000,
                      expires_ms=START_MS + 60_000, operator="test", status="done"))
        s.flush()
        s.execute(update(Node).where(Node.id == "tl-napan-1").values(
            online=True, last_seen_ms=START_MS, playing="c1"))
        s.add(AsRunRecord(node_id="tl-napan-1", rid=1, command_id="c1", title="Bản tin sáng",
                          start_ms=START_MS, end_ms=END_MS, outcome="aired",
                          received_ms=END_MS))
    engine.dispose()
    yield h.root


@contextlib.contextmanager
def port_in_use() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


# --- arguments -----------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "words"), [
    (["demo", "--duration", "-1"], ["--duration", "greater than 0"]),
    (["demo", "--duration", "0"], ["--duration", "greater than 0"]),
    (["demo", "--duration", "abc"], ["--duration", "not a number"]),
    (["demo", "--duration", "nan"], ["--duration", "finite"]),
    (["demo", "--duration", "inf"], ["--duration", "finite"]),
    (["demo", "--port", "0"], ["--port"]),
    (["demo", "--port", "70000"], ["--port", "not a TCP port"]),
    (["demo", "--port", "http"], ["--port", "not a number"]),
    (["web", "--port", "-80"], ["--port"]),
    (["diary", "--day", "2026-13-01"], ["--day", "YYYY-MM-DD"]),
    (["diary", "--day", "hôm qua"], ["--day", "YYYY-MM-DD"]),
    (["diary", "--day", ""], ["--day"]),
    (["bench", "fanout", "--nodes", "0"], ["--nodes"]),
    (["bench"], ["BENCH"]),
    (["frobnicate"], ["invalid choice", "frobnicate"]),
    ([], ["COMMAND"]),
    (["--home", "", "nodes"], ["--home", "empty"]),
])
def test_bad_arguments(capsys: pytest.CaptureFixture[str], args: list[str],
                       words: list[str]) -> None:
    code, out, err = run_main(capsys, *args)
    assert_clean_error(code, err, *words)
    assert out == ""


@pytest.mark.parametrize(("args", "words"), [
    (["demo", "--duration", "-5"], ["--duration"]),
    (["demo", "--port", "99999"], ["--port"]),
    (["diary", "--day", "22/11/2026"], ["--day"]),
    (["launch-rockets"], ["invalid choice", "launch-rockets"]),
])
def test_bad_arguments_from_the_shell(args: list[str], words: list[str]) -> None:
    r = loaxa(*args)
    assert_clean_error(r.returncode, r.stderr, *words)
    assert r.stderr.startswith("usage: loaxa")


# --- the state directory -------------------------------------------------------------------

@pytest.mark.parametrize("command", ["nodes", "diary", "web"])
def test_missing_state_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 command: str) -> None:
    missing = tmp_path / "nonexistent"
    code, _, err = run_main(capsys, "--home", str(missing), command)
    assert_clean_error(code, err, str(missing), "does not exist", "loaxa demo")
    assert not missing.exists()  # reading commands never create it


def test_missing_state_directory_from_the_shell() -> None:
    assert not Path("/nonexistent").exists()
    for command in ("nodes", "diary", "web"):
        r = loaxa("--home", "/nonexistent", command)
        assert_clean_error(r.returncode, r.stderr, "/nonexistent", "does not exist")
    assert not Path("/nonexistent").exists()


def test_loaxa_home_is_honoured(capsys: pytest.CaptureFixture[str], home: Path,
                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOAXA_HOME", str(home))
    code, out, err = run_main(capsys, "nodes")
    assert code == 0, err
    assert "1/5 cụm loa đang kết nối" in out
    # --home wins over LOAXA_HOME.
    other = tmp_path / "other"
    code, _, err = run_main(capsys, "--home", str(other), "nodes")
    assert_clean_error(code, err, str(other))
    # A LOAXA_HOME that does not exist is named in the error.
    monkeypatch.setenv("LOAXA_HOME", str(tmp_path / "typo"))
    code, _, err = run_main(capsys, "diary")
    assert_clean_error(code, err, str(tmp_path / "typo"), "LOAXA_HOME")


def test_loaxa_home_from_the_shell(home: Path) -> None:
    r = loaxa("nodes", env={"LOAXA_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert "tl-napan-1" in r.stdout


def test_default_home_is_under_xdg_data_home(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, _, err = run_main(capsys, "nodes")
    assert_clean_error(code, err, str(tmp_path / "user" / "data" / "loaxa"))


@pytest.mark.parametrize("command", ["nodes", "diary", "web"])
def test_garbage_database(capsys: pytest.CaptureFixture[str], home: Path,
                          command: str) -> None:
    for extra in home.glob("loaxa.db-*"):
        extra.unlink()
    (home / "loaxa.db").write_bytes(os.urandom(4096))
    port = ["--port", str(find_free_port())] if command == "web" else []
    code, out, err = run_main(capsys, "--home", str(home), command, *port)
    assert_clean_error(code, err, "loaxa.db", "not a database")
    assert out == ""


def test_garbage_database_from_the_shell(home: Path) -> None:
    (home / "loaxa.db").write_bytes(b"this is not SQLite\n" * 100)
    r = loaxa("--home", str(home), "diary")
    assert_clean_error(r.returncode, r.stderr, "loaxa.db", "not a database")


@pytest.mark.parametrize("command", ["nodes", "diary", "web"])
def test_database_file_missing(capsys: pytest.CaptureFixture[str], home: Path,
                               command: str) -> None:
    for f in home.glob("loaxa.db*"):
        f.unlink()
    code, _, err = run_main(capsys, "--home", str(home), command)
    assert_clean_error(code, err, "no database", "loaxa.db")
    assert not (home / "loaxa.db").exists()


@pytest.mark.parametrize("command", ["nodes", "diary"])
def test_database_with_a_lost_table(capsys: pytest.CaptureFixture[str], home: Path,
                                    command: str) -> None:
    with sqlite3.connect(home / "loaxa.db") as db:
        db.execute("DROP TABLE nodes" if command == "nodes" else "DROP TABLE asrun")
    code, _, err = run_main(capsys, "--home", str(home), command, *(
        ["--day", "2026-11-23"] if command == "diary" else []))
    assert_clean_error(code, err, "cannot read the database", "no such table")


def test_database_from_a_newer_loaxa(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    with sqlite3.connect(home / "loaxa.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999_future'")
    code, _, err = run_main(capsys, "--home", str(home), "nodes")
    assert_clean_error(code, err, "schema", "9999_future")


@pytest.mark.parametrize("command", ["nodes", "diary", "web", "demo"])
def test_home_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                        command: str) -> None:
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    port = ["--port", str(find_free_port())] if command in ("web", "demo") else []
    code, _, err = run_main(capsys, "--home", str(f), command, *port)
    assert_clean_error(code, err, str(f), "not a directory")
    assert f.read_text() == "not a directory"


@pytest.mark.parametrize("command", ["nodes", "diary", "web"])
def test_directory_without_marker(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  command: str) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "loaxa.db").write_bytes(b"")
    code, _, err = run_main(capsys, "--home", str(foreign), command)
    assert_clean_error(code, err, str(foreign), "not a LoaXa state directory", MARKER)


def test_demo_refuses_a_foreign_directory(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    foreign = tmp_path / "documents"
    foreign.mkdir()
    (foreign / "report.docx").write_bytes(b"keep me")
    code, _, err = run_main(capsys, "--home", str(foreign), "demo", "--duration", "1",
                            "--port", str(find_free_port()))
    assert_clean_error(code, err, str(foreign), "not a LoaXa state directory",
                       "choose another --home")
    assert sorted(p.name for p in foreign.iterdir()) == ["report.docx"]
    assert processes_mentioning(str(foreign)) == []


def test_home_create_rules(tmp_path: Path) -> None:
    # An empty directory is adopted; a non-empty one without the marker is refused.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert Home.create(empty).root == empty
    assert (empty / MARKER).is_file()
    assert Home.create(empty).root == empty  # and reused
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(HomeError, match="not a LoaXa state directory"):
        Home.create(full)
    assert not (full / MARKER).exists()
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(HomeError, match="not a directory"):
        Home.create(f)
    with pytest.raises(HomeError, match="cannot create"):
        Home.create(f / "below-a-file")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / MARKER).mkdir()
    with pytest.raises(HomeError, match="not a LoaXa state directory"):
        Home.create(odd)


# --- commune files -------------------------------------------------------------------------

BAD_COMMUNES = {
    "broken-toml": ("[commune\nid = 'x'\n", ["bad commune file"]),
    "no-commune": ("[[villages]]\nid='a'\nname='A'\nnodes=['a-1']\n", ["[commune]"]),
    "no-villages": ("[commune]\nid='x'\nname='Xã X'\n", ["[[villages]]"]),
    "bad-node-id": ("[commune]\nid='x'\nname='Xã X'\n[[villages]]\nid='a'\nname='A'\n"
                    "nodes=['Node One']\n", ["bad node id", "Node One"]),
    "twice": ("[commune]\nid='x'\nname='Xã X'\n[[villages]]\nid='a'\nname='A'\n"
              "nodes=['n1', 'n1']\n", ["listed twice"]),
    "bad-timezone": ("[commune]\nid='x'\nname='Xã X'\ntimezone='Mars/Olympus'\n"
                     "[[villages]]\nid='a'\nname='A'\nnodes=['n1']\n", ["timezone"]),
    "reserved-id": ("[commune]\nid='x'\nname='Xã X'\n[[villages]]\nid='a'\nname='A'\n"
                    "nodes=['headend']\n", ["reserved"]),
    "villages-not-tables": ("villages = [1, 2]\n[commune]\nid='x'\nname='Xã X'\n",
                            ["must be a [[villages]] table"]),
}


@pytest.mark.parametrize("case", sorted(BAD_COMMUNES))
def test_demo_with_a_bad_commune_file_starts_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    text, words = BAD_COMMUNES[case]
    bad = tmp_path / f"{case}.toml"
    bad.write_text(text, encoding="utf-8")
    state = tmp_path / "state"
    code, out, err = run_main(capsys, "--home", str(state), "demo", "--commune", str(bad),
                              "--duration", "5", "--port", str(find_free_port()))
    assert_clean_error(code, err, str(bad), *words)
    assert not state.exists(), "the state directory was created before the check"
    assert "LoaXa demo" not in out


@pytest.mark.parametrize("case", ["missing", "directory", "binary"])
def test_demo_with_an_unreadable_commune_file(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path, case: str) -> None:
    path = tmp_path / "commune.toml"
    if case == "directory":
        path.mkdir()
    elif case == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage" * 50)
    code, _, err = run_main(capsys, "--home", str(tmp_path / "state"), "demo",
                            "--commune", str(path))
    assert_clean_error(code, err, str(path))
    assert not (tmp_path / "state").exists()


def test_demo_with_a_bad_commune_file_from_the_shell(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[commune]\nid = \n", encoding="utf-8")
    state = tmp_path / "state"
    r = loaxa("--home", str(state), "demo", "--commune", str(bad), "--duration", "30",
              "--port", str(find_free_port()), timeout=30)
    assert_clean_error(r.returncode, r.stderr, str(bad))
    assert not state.exists()
    # Nothing was started for this state directory: no broker, no simulated nodes.
    assert processes_mentioning(str(state)) == []
    assert processes_mentioning(str(tmp_path)) == []


def test_demo_and_web_refuse_a_busy_port(capsys: pytest.CaptureFixture[str], home: Path,
                                         tmp_path: Path) -> None:
    with port_in_use() as port:
        code, _, err = run_main(capsys, "--home", str(home), "web", "--port", str(port))
        assert_clean_error(code, err, str(port), "already in use")
        state = tmp_path / "new-state"
        code, _, err = run_main(capsys, "--home", str(state), "demo", "--port", str(port))
        assert_clean_error(code, err, str(port), "already in use")
        assert not state.exists()


# --- what the commands print ---------------------------------------------------------------

def test_times_are_in_the_commune_timezone_not_the_machines(home: Path) -> None:
    # The machine says New York (UTC-5); the commune is in Hà Nội (UTC+7).
    env = {"TZ": "America/New_York"}
    nodes = loaxa("--home", str(home), "nodes", env=env)
    assert nodes.returncode == 0, nodes.stderr
    line = next(ln for ln in nodes.stdout.splitlines() if ln.startswith("tl-napan-1"))
    assert "2026-11-23 03:30:00" in line
    assert "kết nối" in line and "Bản tin sáng" in line  # the title, not the command id
    assert "Asia/Ho_Chi_Minh" in nodes.stdout

    diary = loaxa("--home", str(home), "diary", "--day", "2026-11-23", env=env)
    assert diary.returncode == 0, diary.stderr
    assert "Asia/Ho_Chi_Minh" in diary.stdout
    assert "2026-11-23 03:30:00  2026-11-23 03:33:00  tl-napan-1" in diary.stdout
    assert "15:30" not in diary.stdout and "20:30" not in diary.stdout
    # The UTC date of the record (the 22nd) holds nothing in the commune's calendar.
    earlier = loaxa("--home", str(home), "diary", "--day", "2026-11-22", env=env)
    assert earlier.returncode == 0
    assert "không có gì được ghi" in earlier.stdout


def test_diary_default_day_is_today_in_the_commune(capsys: pytest.CaptureFixture[str],
                                                   home: Path) -> None:
    before = datetime.now(VN).date()
    code, out, _ = run_main(capsys, "--home", str(home), "diary")
    after = datetime.now(VN).date()
    assert code == 0
    assert out.startswith(tuple(f"Sổ nhật ký {d.isoformat()} (Asia/Ho_Chi_Minh)"
                                for d in {before, after}))


@pytest.mark.parametrize("day", ["0001-01-01", "1900-01-01", "1999-12-31", "9999-12-31"])
def test_diary_far_from_any_record_is_empty_and_says_so(
        capsys: pytest.CaptureFixture[str], home: Path, day: str) -> None:
    code, out, err = run_main(capsys, "--home", str(home), "diary", "--day", day)
    assert code == 0, err
    assert out.strip() == (f"Sổ nhật ký {day} (Asia/Ho_Chi_Minh): không có gì được ghi trong "
                           "ngày này (nothing recorded).")
    assert err == ""


def test_nodes_on_an_empty_state_directory(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    h = Home.create(tmp_path / "fresh")
    open_db(h.db_url).dispose()
    code, out, _ = run_main(capsys, "--home", str(h.root), "nodes")
    assert code == 0
    assert "Chưa có cụm loa nào" in out and "loaxa demo" in out


def test_web_serves_an_existing_state_directory(home: Path) -> None:
    engine = open_db(Home.open(home).db_url)
    auth.add_user(engine, "kythuat", "mat-khau-thu-nghiem", "technician", ["*"], START_MS)
    token = auth.new_token(engine, "kythuat", "test", START_MS)
    engine.dispose()
    port = find_free_port()
    proc = subprocess.Popen([str(LOAXA), "--home", str(home), "web", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/nodes",
                                             headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(req, timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1].decode()
                assert time.monotonic() < deadline, "web did not start"
                time.sleep(0.1)
        assert "tl-napan-1" in body and "Bản tin sáng" in body
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode in (0, -15)


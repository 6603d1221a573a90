"""`loaxa demo` as a user runs it: nodes online and a diary entry within 60 s, the page shows
them, a later command sees the same state, and stopping leaves no process behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.processes import processes_mentioning
from support.web_site import post_login

from headend.nodes.broker import find_free_port

LOAXA = str(Path(sys.executable).parent / "loaxa")



def logged_in(base: str, home: Path) -> httpx.Client:
    """A client logged in as the demo's officer, with the password the demo made."""
    login = wait_for(lambda: (home / "demo-login.txt").exists() and
                     (home / "demo-login.txt").read_text().split(), 60, "demo login")
    client = httpx.Client(base_url=base, timeout=5)
    r = post_login(client, "canbo", login[-1])
    assert r.status_code == 303, r.text
    return client


def wait_for(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
        except (OSError, httpx.HTTPError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout} s")


@pytest.mark.parametrize("stop_with", ["duration", "sigint"])
def test_demo_shows_nodes_and_diary_and_cleans_up(tmp_path: Path, stop_with: str) -> None:
    home = tmp_path / "home"
    port = find_free_port()
    args = [LOAXA, "--home", str(home), "demo", "--port", str(port)]
    if stop_with == "duration":
        args += ["--duration", "25"]
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        client = logged_in(base, home)

        def get_json(path: str) -> object:
            return client.get(path).raise_for_status().json()

        def online() -> list[str]:
            nodes = get_json("/api/v1/nodes")
            assert isinstance(nodes, list)
            return [n["id"] for n in nodes if n["online"]]

        nodes = wait_for(lambda: len(online()) >= 5 and online(), 60, "5 online nodes")
        diary = wait_for(lambda: get_json("/api/v1/asrun"), 60, "a diary entry")
        assert time.monotonic() - started < 60
        assert nodes
        assert diary[0]["outcome"] == "aired"  # type: ignore[index]
        page = client.get("/c/tan-lang").text
        assert "Thôn Nà Pàn" in page and "Hoạt động" in page and "Thông báo thử nghiệm" in page
        # Another command, run while the demo runs, sees the same state directory.
        out = subprocess.run([LOAXA, "--home", str(home), "nodes"], capture_output=True,
                             text=True, check=True).stdout
        assert "tl-napan-1" in out
        if stop_with == "sigint":
            proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert not processes_mentioning(str(home)), "processes left behind"
    # After the demo, the diary is still there for the next command.
    out = subprocess.run([LOAXA, "--home", str(home), "diary"], capture_output=True, text=True,
                         check=True).stdout
    assert out.count("Thông báo thử nghiệm") == 5

"""A LoaXa process killed with SIGKILL cannot clean up after itself: its simulated node hosts
notice and leave, and its Mosquitto is stopped by the next start on the same state dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from support.loaxa_stack import wait_until

from headend.nodes.broker import Broker, find_free_port


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_sim_hosts_exit_when_their_controller_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from hwsim.fleet import Fleet, SimNode
        f = Fleet(root=Path({str(tmp_path)!r}), broker_port=1, media_hosts=[],
                  nodes=[SimNode("n1", "00" * 32, "pw")], per_process=1)
        f.start()
        print(" ".join(str(p.popen.pid) for p in f._procs), flush=True)
        time.sleep(600)
    """)
    ctl = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert ctl.stdout is not None
    host_pids = [int(p) for p in ctl.stdout.readline().split()]
    assert host_pids and all(alive(p) for p in host_pids)
    ctl.send_signal(signal.SIGKILL)
    ctl.wait()
    wait_until(lambda: not any(alive(p) for p in host_pids), 10, "orphaned hosts to exit")


def test_a_stale_broker_is_stopped_by_the_next_start(tmp_path: Path) -> None:
    first = Broker(tmp_path, port=find_free_port(), headend_password="pw")
    first.write_config({"n1": "x"})
    first.start()
    stale_pid = first.pid
    assert stale_pid is not None
    first._proc = None  # the owner dies without stopping it (as after kill -9)
    second = Broker(tmp_path, port=find_free_port(), headend_password="pw")
    second.write_config({"n1": "x"})
    try:
        second.start()
        wait_until(lambda: not alive(stale_pid), 10, "the stale broker to stop")
        assert second.running
    finally:
        second.stop()
        if alive(stale_pid):
            os.kill(stale_pid, signal.SIGKILL)

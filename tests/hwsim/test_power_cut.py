"""Power cuts on a node: the MicroPython process running the real firmware over hal.sim is
killed (SIGKILL) in the middle of a media download and in the middle of plan, sequence-number
and as-run writes. After the restart the cache and the plan are valid, nothing acknowledged as
written is lost, and the item still airs or is reported missed.

SIGKILL stops the writer at any instruction, so these tests prove the write order (temporary
file, then rename; two checksummed slots for the counter). The flash filesystem's own
guarantee (littlefs is copy-on-write; the Pi's storage fsyncs before renaming) is the board's.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import random
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.loaxa_stack import wait_until

from hal.sim import SlotCounter
from hwsim.fleet import micropython_binary

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "firmware" / "power_cut_node.py"
RATE = 100  # media: 8-bit mono at 100 Hz, 100 bytes per simulated second


def bulletin(seconds: int) -> bytes:
    pcm = bytes((i * 7 + i // 251) % 256 for i in range(seconds * RATE))
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE, 1, 8)
    return (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm)


class Media(http.server.ThreadingHTTPServer):
    """Serves /bul.wav; with `stall_after` set it sends that many bytes and then nothing."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.stall_after: int | None = None
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Media

    def do_GET(self) -> None:
        data = self.server.data
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        cut = self.server.stall_after
        self.wfile.write(data if cut is None else data[:cut])
        self.wfile.flush()
        if cut is not None:
            self.server.release.wait(60)  # hold the download open until the power cut

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def media() -> Iterator[Media]:
    srv = Media(bulletin(60))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.release.set()
    srv.shutdown()


class Board:
    """One node's MicroPython process, started and killed like a power supply."""

    def __init__(self, node_dir: Path, *args: str) -> None:
        self.dir = node_dir
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.out: list[str] = []

    def power_on(self) -> None:
        env = dict(os.environ, MICROPYPATH=f"{REPO}:{REPO / 'tests' / 'firmware'}:.frozen")
        self.out = []
        self.proc = subprocess.Popen(
            [micropython_binary(), "-X", "heapsize=512K", str(SCRIPT), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.reader = threading.Thread(target=self._read, args=(self.proc, self.out), daemon=True)
        self.reader.start()

    @staticmethod
    def _read(proc: subprocess.Popen[str], out: list[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            # A line the cut broke off ("PLAN " without its number) was not said: the node
            # says each fact, flushed, after the write it reports (or, for ACKED, before).
            if line.endswith("\n"):
                out.append(line[:-1])

    def cut(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.reader.join(10)  # every line the node printed before the cut, read

    def lines(self, word: str) -> list[str]:
        return [line.split(" ", 1)[1] for line in list(self.out) if line.startswith(word + " ")]

    def wait_record(self, timeout: float) -> dict[str, object]:
        rec = wait_until(lambda: self.lines("RECORD"), timeout,
                         f"the as-run record; node said: {self.out[-20:]}")
        assert self.proc is not None
        self.proc.wait(10)
        return dict(json.loads(rec[0]))


def flash(node_dir: Path) -> Path:
    return node_dir / "flash"


def check_cache(node_dir: Path) -> None:
    """Every cache entry is whole: its content hashes to its name."""
    for f in flash(node_dir).glob("m-*"):
        assert not f.name.endswith(".part"), f"{f.name} survived the restart"
        assert hashlib.sha256(f.read_bytes()).hexdigest() == f.name[2:], f.name


def start_air(tmp_path: Path, media: Media, rate: int, start_s: int) -> Board:
    now = time.time_ns() // 1_000_000
    # 12:00 in Vietnam (UTC+7) today: outside the quiet hours
    sim_epoch = now - now % 86_400_000 + 5 * 3_600_000
    data = media.data
    return Board(tmp_path / "node", "air", str(tmp_path / "node"), str(media.server_port),
                 str(sim_epoch), str(now), str(rate), str(start_s), str(len(data)),
                 hashlib.sha256(data).hexdigest())


def test_power_cut_during_a_media_download_the_item_still_airs(
        tmp_path: Path, media: Media) -> None:
    media.stall_after = 2500  # of 6044 bytes: the download is half done when the power goes
    board = start_air(tmp_path, media, rate=10, start_s=40)
    board.power_on()
    part = wait_until(lambda: [p for p in flash(board.dir).glob("m-*.part")
                               if p.stat().st_size > 0], 20,
                      f"a download in progress; node said {board.out[-10:]}")
    plan_before = (flash(board.dir) / "plan.json").read_bytes()
    board.cut()
    assert part[0].exists()  # the cut download is still there, half written
    media.release.set()
    media.stall_after = None
    board.power_on()
    rec = board.wait_record(30)
    assert board.lines("BOOT")[0].startswith("plan 1 ")  # the stored plan, not a new one
    assert (flash(board.dir) / "plan.json").read_bytes() == plan_before
    assert rec["outcome"] == "aired" and rec["src"] == "cache", rec
    check_cache(board.dir)
    # What the loudspeaker got is the whole bulletin, not the cut download.
    audio = sorted((board.dir / "audio").glob("*.pcm"))
    assert len(audio) == 1 and audio[0].read_bytes() == media.data[44:]


def test_power_off_across_the_item_reports_it_missed(tmp_path: Path, media: Media) -> None:
    media.stall_after = 2500
    board = start_air(tmp_path, media, rate=40, start_s=30)
    board.power_on()
    wait_until(lambda: list(flash(board.dir).glob("m-*.part")), 20, "a download in progress")
    board.cut()
    media.release.set()
    media.stall_after = None
    time.sleep(3)  # 120 simulated seconds: the item (30 s to 90 s) passes while off
    board.power_on()
    rec = board.wait_record(30)
    assert rec["outcome"] == "missed" and rec["reason"] == "node was off", rec
    check_cache(board.dir)
    assert not list((board.dir / "audio").glob("*.pcm")) or all(
        p.stat().st_size == 0 for p in (board.dir / "audio").glob("*.pcm"))


class Churn:
    """A churning node's flash across power cuts (tests/firmware/power_cut_node.py churn),
    against what the node said it had written before each cut."""

    def __init__(self, node_dir: Path) -> None:
        self.dir = node_dir
        self.wanted: set[int] = set()  # record ids said stored and not dropped by an ack
        self.found: list[int] | None = None  # plan version, counter, records after a cut
        self.last_plan = self.last_seq = self.trims = 0

    def check_boot(self, board: Board) -> None:
        """The node boots from what the last cut left."""
        boot = wait_until(lambda: board.lines("BOOT"), 10, f"boot; node said {board.out[-5:]}")
        if self.found is not None:
            assert [int(x) for x in boot[0].split()] == self.found

    def check_cut(self, board: Board) -> None:
        # Every line of the run counts, the simulated acks too: they drop older records.
        plans, seqs = board.lines("PLAN"), board.lines("SEQ")
        self.last_plan = int(plans[-1]) if plans else self.last_plan
        self.last_seq = int(seqs[-1]) if seqs else self.last_seq
        self.wanted |= {int(x) for x in board.lines("REC")}
        acked = [int(x) for x in board.lines("ACKED")]
        self.trims += len(acked)
        if acked:
            self.wanted = {r for r in self.wanted if r >= acked[-1]}
        # What was written before the cut is there, whole: the plan written last or the one
        # being written when the power went, never a torn file.
        node_flash = flash(self.dir)
        plan = json.loads((node_flash / "plan.json").read_bytes())
        assert plan["ver"] in (self.last_plan, self.last_plan + 1)
        assert len(plan["items"]) == 40
        seq = SlotCounter(str(node_flash / "seq.ctr")).value
        assert seq in (self.last_seq, self.last_seq + 1), (seq, self.last_seq)
        rids = [r["rid"] for r in json.loads((node_flash / "asrun.json").read_bytes())]
        assert len(rids) == len(set(rids)), "a record doubled"
        assert self.wanted <= set(rids), f"records lost: {sorted(self.wanted - set(rids))[:5]}"
        self.found = [plan["ver"], seq, len(rids)]
        self.last_plan, self.last_seq = plan["ver"], seq  # a run that writes nothing keeps them


def test_power_cuts_during_plan_sequence_and_as_run_writes_lose_nothing(
        tmp_path: Path) -> None:
    """Cuts at random moments of a node writing as fast as it can."""
    churn = Churn(tmp_path / "node")
    board = Board(churn.dir, "churn", str(churn.dir))
    rng = random.Random(6)
    rounds = 0
    # 16 cuts, and more (up to 40) until some fell after the simulated acks' trims: a loaded
    # machine writes less between cuts.
    while rounds < 16 or (churn.trims < 2 and rounds < 40):
        rounds += 1
        board.power_on()
        churn.check_boot(board)
        wait_until(lambda: len(board.lines("REC")) >= 3, 20,
                   f"writes under way; node said {board.out[-5:]}")
        time.sleep(rng.uniform(0.0, 0.4))
        board.cut()
        churn.check_cut(board)
    assert churn.last_plan > 16 and churn.last_seq > 16  # the cuts fell among many writes
    assert churn.trims >= 2  # and among the simulated acks' trims of the stored records


def test_a_power_cut_halfway_through_each_write_loses_nothing(tmp_path: Path) -> None:
    """Random cuts mostly land between writes; here the node stops in the middle of its n-th
    file write since boot (half the bytes on disk) and the power goes there, for each n over
    a few rounds of plan, counter, state and as-run writes and the acks' trims."""
    churn = Churn(tmp_path / "node")
    warm = Board(churn.dir, "churn", str(churn.dir))  # a plan and records to lose first
    warm.power_on()
    wait_until(lambda: len(warm.lines("REC")) >= 5, 20, f"writes; node said {warm.out[-5:]}")
    warm.cut()
    churn.check_cut(warm)
    cut_in: set[str] = set()
    for n in range(1, 19):
        board = Board(churn.dir, "churn", str(churn.dir), str(n), "6")
        board.power_on()
        cut = wait_until(lambda b=board: b.lines("CUT"), 10, "the cut")
        board.cut()
        cut_in.add(cut[0])
        if board.lines("BOOT"):  # the first writes are the board's own, before the node is up
            churn.check_boot(board)
        churn.check_cut(board)
    assert {"plan.json.tmp", "seq.ctr", "state.json.tmp", "asrun.json.tmp"} <= cut_in, cut_in
    assert churn.trims >= 2, churn.trims

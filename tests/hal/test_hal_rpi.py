"""hal/rpi on a PC: gpiozero's MockFactory for the pins, the real mpv writing what the speaker
would get to a PCM file (--ao=pcm), a real Node from firmware/node.py on top."""
import asyncio
import io
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from firmware import protocol
from firmware.node import Node
from hal.rpi import RpiBoard, launcher
from hal.rpi.ota import AbOta, AbSlots
from hal.rpi.storage import DirStorage
from hal.rpi.system import SystemdWatchdog
from hal.sim import SimClock

ROOT = Path(__file__).resolve().parents[2]
MPV = shutil.which("mpv") or "/usr/bin/mpv"
pytestmark = pytest.mark.skipif(not os.path.exists(MPV), reason="mpv not installed")

KEY = "22" * 32
NODE_ID = "n-rpi-1"
RATE = 16000
RELAY, LED, BUTTON = 17, 27, 22


class RecordingPin(MockPin):
    """A mock pin that keeps its changes with wall-clock times (mpv's log uses the same)."""

    def __init__(self, factory, info):
        self.changes = []
        super().__init__(factory, info)

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            self.changes.append((time.time(), value))
        return changed


def noon_ms():
    """12:00 local (UTC+7) today: outside the default quiet hours whatever the real time."""
    day = 24 * 3600 * 1000
    return int(time.time() * 1000) // day * day + 5 * 3600 * 1000


def mpv_wrapper(tmp, log):
    """mpv behind a script that logs when mpv starts and when it has exited (by then every
    PCM byte it got is in the output file: ao_pcm writes on its own schedule)."""
    path = tmp / "mpv-logged"
    path.write_text(f'#!/bin/sh\necho "start $(date +%s.%N)" >> {log}\n{MPV} "$@"\nrc=$?\n'
                    f'echo "exit $(date +%s.%N) $rc" >> {log}\nexit $rc\n')
    path.chmod(0o755)
    return str(path)


def make_board(tmp, mpv=MPV, pin_class=RecordingPin):
    out = tmp / "speaker.pcm"
    cfg = {"id": NODE_ID, "key": KEY, "broker": {"host": "127.0.0.1", "port": 1, "password": "x"},
           "media_hosts": [], "rpi": {
               "relay_pin": RELAY, "led_pin": LED, "button_pin": BUTTON, "mpv": mpv,
               "data_dir": str(tmp / "data"), "run_dir": str(tmp / "run"),
               "install_dir": str(tmp / "opt"),
               "mpv_args": ["--ao=pcm", f"--ao-pcm-file={out}", "--ao-pcm-waveheader=no",
                            "--ao-pcm-append=yes"]}}
    board = RpiBoard(cfg, pin_factory=MockFactory(pin_class=pin_class),
                     clock=SimClock(sim_epoch_ms=noon_ms()))
    return board, cfg, out


def sine(hz, seconds, amp=12000):
    t = np.arange(int(RATE * seconds)) / RATE
    return (amp * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def wav(pcm):
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm)


def peak_hz(pcm):
    x = np.frombuffer(pcm, "<i2").astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec)) * RATE / len(x)


def mpv_log(log):
    starts, exits = [], []
    for line in Path(log).read_text().splitlines():
        kind, at = line.split()[:2]
        (starts if kind == "start" else exits).append(float(at))
    return starts, exits


async def until(cond, timeout_s):
    t = time.monotonic() + timeout_s
    while time.monotonic() < t:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return False


def command(op, args, seq=1):
    now = noon_ms()
    cmd = protocol.make_command(protocol.Signer(protocol.node_key(KEY)), f"c-{seq}", NODE_ID,
                                seq, now, now + 600000, op, args)
    return protocol.encode_command(cmd)


@pytest.fixture
def media_server(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    srv = ThreadingHTTPServer(("127.0.0.1", 0),
                              partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, srv.server_address[1]
    srv.shutdown()


def test_relay_closes_before_audio_and_opens_after(tmp_path, media_server):
    """A signed play command through a real Node: the relay pin goes high before mpv even
    starts, and low only after mpv has exited with all of the bulletin in the speaker file."""
    media_root, port = media_server
    pcm = sine(440, 1.5)
    (media_root / "b.wav").write_bytes(wav(pcm))
    log = tmp_path / "mpv.log"
    board, cfg, out = make_board(tmp_path, mpv=mpv_wrapper(tmp_path, log))
    cfg["media_hosts"] = [f"127.0.0.1:{port}"]
    relay = board.relay.relay.pin

    async def go():
        node = Node(board, cfg)
        node._on_command(command("play", {"url": f"http://127.0.0.1:{port}/b.wav"}))
        assert await until(lambda: node.pending and not board.amp.is_on(), 15)
        return node.pending[-1]

    rec = asyncio.run(go())
    assert rec["outcome"] == protocol.AIRED
    (on_t, on), (off_t, off) = relay.changes
    assert (on, off) == (True, False)
    starts, exits = mpv_log(log)
    assert len(starts) == 1 and len(exits) == 1
    assert on_t < starts[0] < exits[0] < off_t
    assert off_t - exits[0] < 1.0  # post-roll, not left on
    heard = out.read_bytes()
    assert len(heard) == len(pcm)  # every sample reached the speaker, once
    assert abs(peak_hz(heard) - 440) < 2
    board.shutdown()


def test_test_button_plays_test_tone(tmp_path):
    """Pressing the (mock) button pin: the node plays its test tone, the tone's PCM reaches
    mpv's output at the tone's frequency, with the relay closed around it."""
    board, cfg, out = make_board(tmp_path)
    relay = board.relay.relay.pin

    async def go():
        node = Node(board, cfg)
        if not board.button.callbacks:
            pytest.skip("firmware/node.py does not register board.on_test_button yet")
        board.bind_loop(asyncio.get_running_loop())
        button = board.button.button.pin
        button.drive_low()
        await asyncio.sleep(0.1)
        button.drive_high()
        assert await until(lambda: node.pending and not board.amp.is_on(), 20)
        return node.pending[-1]

    rec = asyncio.run(go())
    assert rec["kind"] == "test" and rec["outcome"] == protocol.AIRED
    heard = out.read_bytes()
    seconds = protocol.TONE_SECONDS_DEFAULT
    assert len(heard) == seconds * RATE * 2
    assert abs(peak_hz(heard) - protocol.TONE_HZ_DEFAULT) < 2
    assert [v for _, v in relay.changes] == [True, False]
    assert board.button.presses == 1
    board.shutdown()


def test_mpv_killed_mid_play_is_restarted(tmp_path):
    board, _, out = make_board(tmp_path)
    audio = board.mpv_audio
    block = sine(1000, 0.1)

    async def go():
        audio.open(RATE, 16, 1, "kill-test")
        first = audio.pid()
        for i in range(20):  # 2 s
            if i == 8:
                os.kill(first, signal.SIGKILL)
            await audio.write(block)
        await audio.drain()
        audio.close()
        return first

    t0 = time.monotonic()
    first = asyncio.run(go())
    took = time.monotonic() - t0
    assert audio.restarts == 1 and "kill-test" in audio.last_error
    assert took < 4  # paced at real time, no hang
    heard = out.read_bytes()
    # The killed mpv's buffered output is lost; what was written after the restart is heard.
    assert len(heard) >= 1.0 * RATE * 2
    assert abs(peak_hz(heard) - 1000) < 5
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
    board.shutdown()


def test_mpv_that_keeps_dying_fails_the_playback(tmp_path):
    """A broken mpv is restarted once, then write() raises OSError (the node records a
    partial playback) instead of hanging."""
    board, _, _ = make_board(tmp_path, mpv="/bin/false")
    audio = board.mpv_audio

    async def go():
        audio.open(RATE, 16, 1, "broken")
        for _ in range(50):
            await audio.write(sine(500, 0.1))

    t0 = time.monotonic()
    with pytest.raises(OSError):
        asyncio.run(go())
    assert time.monotonic() - t0 < 5
    assert audio.restarts == 2
    board.shutdown()


def test_volume_at_start_and_through_mpv_ipc(tmp_path):
    """The level in force when mpv starts is applied to what is heard (mpv's cubic curve:
    50 -> 0.125 of the amplitude); a change while playing reaches mpv over its IPC socket.
    (ao_pcm renders only at the end, so the change itself is read back, not heard.)"""
    board, _, out = make_board(tmp_path)
    audio = board.mpv_audio
    audio.set_volume(50)

    async def play(change_to=None):
        audio.open(RATE, 16, 1, "vol")
        for i in range(6):
            if i == 3 and change_to is not None:
                audio.set_volume(change_to)
                reply = audio._ipc({"command": ["get_property", "volume"]})
                assert reply is not None and reply["data"] == change_to
            await audio.write(sine(1000, 0.1, amp=20000))
        await audio.drain()

    asyncio.run(play())
    # (mpv 0.35's ao_pcm may pad the end of a stream with junk: look at what was written)
    x = np.abs(np.frombuffer(out.read_bytes(), "<i2").astype(float))[:6 * RATE // 10]
    assert 20000 * 0.11 < x.max() < 20000 * 0.14
    asyncio.run(play(change_to=80))
    assert audio.volume == 80 and audio.last_error is None
    board.shutdown()


def test_led_patterns_and_relay_polarity(tmp_path):
    board, cfg, _ = make_board(tmp_path)
    board.led.set("on")
    assert board.gpio_led.led.pin.state
    board.led.set("off")
    assert not board.gpio_led.led.pin.state
    board.led.set("play")
    time.sleep(0.35)
    board.led.set("off")
    assert len([v for _, v in board.gpio_led.led.pin.changes if v]) >= 2  # it blinked
    board.shutdown()
    # An active-low relay board: "on" drives the pin low.
    cfg["rpi"]["relay_active_high"] = False
    low = RpiBoard(cfg, pin_factory=MockFactory(pin_class=RecordingPin))
    assert low.relay.relay.pin.state and not low.amp.is_on()
    low.amp.on()
    assert not low.relay.relay.pin.state and low.amp.is_on()
    low.shutdown()


def test_storage_atomic_and_counter(tmp_path):
    st = DirStorage(str(tmp_path / "d"))
    st.write("plan.json", b"one")
    st.write("plan.json", b"two")
    assert st.read("plan.json") == b"two" and st.names() == ["plan.json"]
    c = st.counter("seq.ctr")
    for v in range(1, 6):
        c.set(v)
    assert st.counter("seq.ctr").value == 5
    # A torn write damages only the slot being written: the previous value survives.
    with open(tmp_path / "d" / "seq.ctr", "r+b") as f:
        f.seek(0)  # 6 goes to slot 0
        f.write(b"00000000000000000006 garbage")
    assert st.counter("seq.ctr").value == 5


def test_systemd_watchdog_notifies(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    wd = SystemdWatchdog()
    wd.feed()  # not started: nothing
    wd.start(8000)
    wd.feed()
    got = [sock.recv(100) for _ in range(3)]
    assert got == [b"WATCHDOG_USEC=8000000", b"WATCHDOG=1", b"WATCHDOG=1"]
    sock.close()


# --- A/B OTA and the launcher --------------------------------------------------------

def image(extra=None):
    """The firmware/ and hal/ trees of this checkout as an OTA payload (.tar.gz)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d in ("firmware", "hal"):
            tar.add(ROOT / d, arcname=d,
                    filter=lambda ti: None if "__pycache__" in ti.name else ti)
        for name, data in (extra or {}).items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def install_root(tmp):
    root = tmp / "opt"
    for d in ("firmware", "hal"):
        shutil.copytree(ROOT / d, root / "a" / d, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "a" / "firmware" / "SLOT").write_text("a")
    os.symlink("a", root / "current")
    return root


def flash(root, data):
    ota = AbOta(str(root), "a")
    ota.begin(len(data))
    for i in range(0, len(data), 4096):
        ota.write(data[i:i + 4096])
    ota.finish()


PROBE = ("import json, os, firmware, hal.rpi.ota as o; "
         "json.dump({'from': firmware.__file__, 'slot': os.environ['LOAXA_SLOT'], "
         "'trial': o.AbOta.from_env().on_trial()}, open(%r, 'w')); "
         "o.AbOta.from_env().confirm() if %s else None; raise SystemExit(%d)")


def test_ota_trial_confirmed_keeps_new_slot(tmp_path):
    root = install_root(tmp_path)
    flash(root, image({"firmware/SLOT": b"b"}))
    assert (root / "b" / "firmware" / "SLOT").read_text() == "b"
    assert os.readlink(root / "current") == "a"  # nothing switches before the restart
    probe = tmp_path / "probe.json"
    status = launcher.launch(str(root), ["-c", PROBE % (str(probe), True, 0)])
    seen = json.loads(probe.read_text())
    assert status == 0
    assert seen["slot"] == "b" and seen["trial"] is True
    assert seen["from"].startswith(str(root / "b"))  # the new code ran
    assert os.readlink(root / "current") == "b"
    assert AbSlots(str(root)).state() == {"confirmed": "b"}
    # Later starts stay on b (EXIT_REBOOT and all).
    launcher.launch(str(root), ["-c", PROBE % (str(probe), False, 75)])
    assert json.loads(probe.read_text())["slot"] == "b"
    assert os.readlink(root / "current") == "b"
    assert launcher.reset_cause(json.loads((root / "launcher.json").read_text())) == "soft"


def test_ota_trial_without_confirm_rolls_back(tmp_path):
    root = install_root(tmp_path)
    flash(root, image({"firmware/SLOT": b"b"}))
    probe = tmp_path / "probe.json"
    status = launcher.launch(str(root), ["-c", PROBE % (str(probe), False, 3)])
    assert status == 3 and json.loads(probe.read_text())["slot"] == "b"
    assert os.readlink(root / "current") == "a"
    assert AbSlots(str(root)).state()["rolled_back"] == "b"
    launcher.launch(str(root), ["-c", PROBE % (str(probe), False, 0)])
    assert json.loads(probe.read_text())["slot"] == "a"


def test_ota_power_cut_during_trial_rolls_back(tmp_path):
    """The launcher itself dies with the trial node (power cut, watchdog): the next start
    counts the trial boot as failed and goes back."""
    root = install_root(tmp_path)
    flash(root, image())
    slots = AbSlots(str(root))
    assert launcher.prepare(slots) == "b"  # first trial boot; then the power goes
    assert launcher.prepare(slots) == "a"
    assert slots.state()["rolled_back"] == "b"


@pytest.mark.parametrize("evil", ["../escape.py", "/tmp/abs.py", "firmware/../../x.py",
                                  "etc/passwd"])
def test_ota_refuses_unsafe_members(tmp_path, evil):
    root = install_root(tmp_path)
    data = image({evil: b"print('owned')"})
    with pytest.raises(ValueError):
        flash(root, data)
    assert not (root / "b").exists() and not (tmp_path / "escape.py").exists()
    assert not os.path.exists("/tmp/abs.py")
    assert "next" not in AbSlots(str(root)).state()
    assert os.readlink(root / "current") == "a"


def test_ota_truncated_image_refused(tmp_path):
    root = install_root(tmp_path)
    data = image()
    ota = AbOta(str(root), "a")
    ota.begin(len(data))
    ota.write(data[:-100])
    with pytest.raises(ValueError):
        ota.finish()
    assert "next" not in AbSlots(str(root)).state()


# --- install.sh ------------------------------------------------------------------------

def test_install_sh_into_temp_root(tmp_path):
    cfg = tmp_path / "node.json"
    cfg.write_text(json.dumps({"id": NODE_ID, "key": KEY}))
    dest = tmp_path / "root"
    script = ROOT / "deploy" / "rpi" / "install.sh"
    for _ in range(2):  # idempotent
        r = subprocess.run(["bash", str(script), "--prefix", str(dest), "--config", str(cfg)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    opt = dest / "opt" / "loaxa"
    assert os.readlink(opt / "current") == "a"
    for d in ("firmware", "hal"):
        assert (opt / "a" / d).is_dir() and not (opt / "a" / (d + ".new")).exists()
    assert (opt / "a" / "hal" / "rpi" / "launcher.py").read_bytes() == \
        (ROOT / "hal" / "rpi" / "launcher.py").read_bytes()
    assert not list((opt / "a").rglob("__pycache__"))
    conf = dest / "etc" / "loaxa" / "node.json"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert json.loads(conf.read_text())["id"] == NODE_ID
    unit = (dest / "etc" / "systemd" / "system" / "loaxa-node.service").read_text()
    for line in ("Type=notify", "NotifyAccess=all", "Restart=always", "User=loaxa",
                 "SupplementaryGroups=gpio audio", "WatchdogSec=",
                 "ExecStart=/opt/loaxa/venv/bin/python -m hal.rpi.launcher"):
        assert line in unit
    assert "PrivateDevices=" not in unit  # would hide /dev/gpiochip* and /dev/snd
    # Privileged steps were only printed.
    assert "+ (system) systemctl enable loaxa-node.service" in r.stdout
    # After an OTA to b, a re-install updates b, the slot that runs.
    os.remove(opt / "current")
    os.symlink("b", opt / "current")
    r = subprocess.run(["bash", str(script), "--prefix", str(dest)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and (opt / "b" / "hal" / "rpi").is_dir()


def test_main_runs_with_mock_gpio(tmp_path):
    """python -m hal.rpi.main --mock-gpio starts a node (no broker here: it keeps trying),
    tells systemd it is ready, and on SIGTERM leaves the relay open and exits cleanly."""
    _, cfg, _ = make_board(tmp_path)
    path = tmp_path / "node.json"
    path.write_text(json.dumps(cfg))
    nsock = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(nsock)
    sock.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=nsock, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "hal.rpi.main", "--config", str(path),
                          "--mock-gpio"], env=env, cwd=str(ROOT), stderr=subprocess.PIPE,
                         text=True)
    try:
        assert sock.recv(100) == b"READY=1"
        time.sleep(0.5)
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0, p.stderr.read() if p.stderr else ""
    finally:
        if p.poll() is None:
            p.kill()
        sock.close()

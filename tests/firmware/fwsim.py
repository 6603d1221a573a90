# Helpers for plan/cache/node tests over hal.sim, under MicroPython and CPython: tiny WAV media,
# a local asyncio HTTP server (static files, live streams, cut downloads), a node on a fast
# SimClock, and readers for what the simulated hardware recorded.
import hashlib
import json
import os
import random
import struct
from binascii import hexlify

import fwtest

from firmware import protocol
from firmware.node import Node
from hal.sim import SimBoard, SimClock

KEY = "11" * 32
SIGNER = protocol.Signer(protocol.node_key(KEY))
NODE = "n-plan"
HOUR = 3600 * 1000
MIN = 60 * 1000
RATE = 100  # Hz, 8-bit mono: 100 bytes per simulated second (small media for long slots)


def wav_header(rate=RATE, bits=8, channels=1, data_len=0x7FFFFFF0):
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8,
                      channels * bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", (data_len + 36) & 0xFFFFFFFF) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_len))


_PERIOD = bytes(range(251))


def pattern(n, start=0):
    """PCM whose every byte says where it is: byte i is (start + i) % 251. Built from whole
    periods (few large allocations: the MicroPython test heap fragments easily)."""
    start %= 251
    reps = (start + n) // 251 + 1
    return (_PERIOD * reps)[start:start + n]


def wav_file(seconds, rate=RATE):
    """A WAV of pattern(seconds * rate), built in place: one allocation of its size (the
    MicroPython test heap has little room for the copies that concatenation makes)."""
    n = seconds * rate
    head = wav_header(rate, data_len=n)
    out = bytearray(len(head) + n)
    out[:len(head)] = head
    i = len(head)
    while i < len(out):
        k = min(251, len(out) - i)
        out[i:i + k] = _PERIOD[:k]
        i += k
    return out


def sha(data):
    return hexlify(hashlib.sha256(data).digest()).decode()


def media(port, path, data):
    return {"url": "http://127.0.0.1:%d%s" % (port, path), "sha": sha(data), "size": len(data)}


def day_noon_utc():
    """A simulated epoch: 12:00 local (UTC+7) today, outside the default quiet hours."""
    import time
    now = int(time.time()) * 1000
    return (now // (24 * HOUR)) * 24 * HOUR + 5 * HOUR


class Server:
    """Routes: path -> bytes (served whole), ("live", fill_byte, seconds) a WAV stream that
    never ends by itself (seconds of data at RATE, then EOF), ("cut", bytes, n) headers
    promise all of bytes but only n are sent, or an int HTTP status."""

    def __init__(self):
        self.routes = {}
        self.hits = {}
        self.port = 0
        self._srv = None

    async def start(self):
        self._srv, self.port = await fwtest.serve(self._handle)
        return self

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        if self._srv is not None:
            self._srv.close()

    async def _handle(self, reader, writer):
        try:
            line = await reader.readline()
            while True:
                h = await reader.readline()
                if not h or h == b"\r\n":
                    break
            path = line.split()[1].decode()
            self.hits[path] = self.hits.get(path, 0) + 1
            r = self.routes.get(path, 404)
            if isinstance(r, int):
                writer.write(b"HTTP/1.0 %d X\r\nContent-Length: 0\r\n\r\n" % r)
            elif isinstance(r, (bytes, bytearray)):
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(r))
                for i in range(0, len(r), 4096):
                    writer.write(r[i:i + 4096])
                    await writer.drain()
            elif r[0] == "cut":
                body = r[1]
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                writer.write(body[:r[2]])
            elif r[0] == "live":
                writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + wav_header())
                left = r[2] * RATE
                block = bytes([r[1]]) * 256
                while left > 0:
                    n = min(left, 256)
                    writer.write(block[:n])
                    await writer.drain()
                    left -= n
            await writer.drain()
        except Exception:
            pass
        finally:
            try:
                writer.close()
                await writer.wait_closed()
            except Exception:
                pass


def tmpdir(name):
    return "/tmp/loaxa-fwplan-%s-%d" % (name, random.getrandbits(30))


def make_node(port, epoch, rate=50, name="node", clock=None, **extra):
    clock = clock or SimClock(rate=rate, sim_epoch_ms=epoch)
    board = SimBoard(tmpdir(name), clock=clock)
    cfg = {"id": NODE, "key": KEY,
           "broker": {"host": "127.0.0.1", "port": 1, "password": "x"},
           "media_hosts": ["127.0.0.1:%d" % port], "cache_bytes": 200000,
           "relay_timeout_ms": 2000}
    for k in extra:
        cfg[k] = extra[k]
    node = Node(board, cfg)
    node.acks = []
    node.rejected = []

    async def ack(cid, status, reason=None, detail=None, extra=None):
        node.acks.append((cid, status, reason))

    def reject(err):
        node.rejected.append((err.cmd_id, err.reason))

    node._ack = ack  # offline: keep what the node would have said
    node._reject = reject
    return node


def item(iid, s, e, **kw):
    it = {"id": iid, "kind": "vov_relay", "p": 0, "s": s, "e": e, "off": 0,
          "title": iid, "lang": "vi", "q": 0}
    for k in kw:
        it[k] = kw[k]
    return it


def plan_bytes(ver, now, items, quiet=None, fallback=None, node=NODE):
    p = protocol.make_plan(SIGNER, node, ver, now, now, now + 48 * HOUR,
                           quiet or [1305, 300, 420], items, fallback)
    return protocol.encode_plan(p)


def events(node):
    out = []
    with open(node.board.events.path) as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
    return out


def recordings(node):
    """[{label, start, end, bytes, file}] from the audio_open/audio_close events."""
    out = []
    for ev in events(node):
        if ev["event"] == "audio_open":
            out.append({"label": ev["label"], "start": ev["at"], "end": None, "bytes": 0,
                        "file": ev["file"]})
        elif ev["event"] == "audio_close" and out and out[-1]["end"] is None:
            out[-1]["end"] = ev["at"]
            out[-1]["bytes"] = ev["bytes"]
    return out


def records(node, item_id=None):
    return [r for r in node.pending
            if item_id is None or r.get("item") == item_id or r.get("cmd") == item_id]


def pcm(rec, n=None):
    """The PCM a recording holds (its first n bytes): read at its known size, in one
    allocation (an open-ended read grows its buffer by copies, on a small heap)."""
    with open(rec["file"], "rb") as f:
        return f.read(os.stat(rec["file"])[6] if n is None else n)


async def wait_done(node, ids, timeout_ms=20000):
    """Until the items are done, nothing is on air and each has its as-run record (written
    shortly after the item, once the next one has started)."""
    def finished():
        return all(i in node.done for i in ids) and node.on_air is None and not node.closing
    ok = await fwtest.until(finished, timeout_ms, 10)
    assert ok, ("not done", ids, node.done, node.on_air)


def command(node, op, args, seq):
    """A command signed as the headend signs it, handed to the node as MQTT would."""
    now = node.clock.time_ms()
    cmd = protocol.make_command(SIGNER, "c%d" % seq, NODE, seq, now, now + MIN, op, args)
    node._on_command(protocol.encode_command(cmd))
    return cmd["id"]

# Node-side pieces that need no broker: the WAV header reader and the flash counter that holds
# the replay-protection sequence number. Run under CPython and MicroPython.
import os
import random
import struct

import fwtest

from firmware import wav
from hal.sim import SimStorage, SlotCounter


class FakeStream:
    def __init__(self, data, step=7):
        self.data = data
        self.pos = 0
        self.step = step  # hand out small pieces, as a slow socket would

    async def read(self, n):
        n = min(n, self.step)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


def wav_bytes(rate=16000, bits=16, channels=1, tag=1, data=b"\x01\x02" * 10, extra=b""):
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8,
                      channels * bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def header(data):
    return fwtest.run(wav.read_header(FakeStream(data)))


def header_error(data):
    try:
        header(data)
    except wav.WavError as e:
        return str(e)
    return None


def test_wav_header_of_the_esp32_profile():
    assert header(wav_bytes()) == (16000, 16, 1, 20)


def test_wav_header_skips_other_chunks():
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\x00"  # odd size is padded
    assert header(wav_bytes(extra=extra)) == (16000, 16, 1, 20)


def test_wav_header_refuses_what_the_node_cannot_play():
    assert header_error(b"ID3\x03" + b"\x00" * 40) == "not a WAV file"
    assert header_error(wav_bytes(tag=3)) == "unsupported format"
    assert header_error(wav_bytes(bits=24)) == "unsupported format"
    assert header_error(wav_bytes(rate=96000)) == "unsupported format"
    assert header_error(wav_bytes()[:30]) == "stream ended in the header"


def _tmpdir(name):
    path = "/tmp/loaxa-fwtest-" + name + "-" + str(random.getrandbits(30))
    SimStorage(path)
    return path + "/flash"


def test_counter_survives_reopen():
    d = _tmpdir("ctr")
    c = SlotCounter(d + "/seq.ctr")
    assert c.value == 0
    for v in (1, 2, 3, 10, 11):
        c.set(v)
    assert SlotCounter(d + "/seq.ctr").value == 11


def test_counter_survives_a_torn_write():
    d = _tmpdir("torn")
    c = SlotCounter(d + "/seq.ctr")
    c.set(41)
    c.set(42)
    # Power cut while writing 43: its slot (odd) holds garbage, the even slot still has 42.
    with open(d + "/seq.ctr", "r+b") as f:
        f.seek(SlotCounter.SLOT)
        f.write(b"0000000000000000004")
    assert SlotCounter(d + "/seq.ctr").value == 42


def test_storage_write_is_atomic_replace():
    d = _tmpdir("st")
    s = SimStorage(d[:-len("/flash")])
    s.write("state.json", b'{"a":1}')
    s.write("state.json", b'{"a":2}')
    assert s.read("state.json") == b'{"a":2}'
    assert s.read("missing") is None
    assert "state.json.tmp" not in os.listdir(d)


class _Amp:
    def __init__(self, verifies):
        self._verifies = verifies

    def verifies(self):
        return self._verifies


class _Board:
    def __init__(self, verifies):
        self.amp = _Amp(verifies)


class _Heard:
    """What asrun.heard reads of a node: the amplifier's verdict and whether it is sensed."""

    def __init__(self, amp_fault=False, verifies=True):
        self.amp_fault = amp_fault
        self.board = _Board(verifies)


def test_aired_means_heard():
    from firmware import asrun
    from firmware import protocol as P
    ok, faulty, blind = _Heard(), _Heard(amp_fault=True), _Heard(verifies=False)
    assert asrun.heard(ok, P.AIRED, None) == (P.AIRED, None)
    assert asrun.heard(ok, P.PARTIAL, "stream ended early") == (P.PARTIAL, "stream ended early")
    # A silent amplifier: nothing was heard, whatever the audio did.
    assert asrun.heard(faulty, P.AIRED, None) == (P.OUTCOME_FAILED, P.R_AMP_FAULT)
    assert asrun.heard(faulty, P.PARTIAL, "x") == (P.OUTCOME_FAILED, P.R_AMP_FAULT)
    # Not sensed: aired, unverified, with any reason it already had kept beside it.
    assert asrun.heard(blind, P.AIRED, None) == (P.AIRED, P.R_NOT_VERIFIED)
    assert asrun.heard(blind, P.PARTIAL, "stream ended early") == (
        P.PARTIAL, "stream ended early; " + P.R_NOT_VERIFIED)
    # What did not air stays as it was.
    assert asrun.heard(faulty, P.MISSED, "expired") == (P.MISSED, "expired")

# Reading the header of a PCM WAV stream: the ESP32 profile's media format (stock MicroPython
# has no MP3 decoder). Only the header is parsed; the data is streamed to the audio output.
import struct

# Real media is 8-48 kHz; rates down to 100 Hz are allowed so simulator tests can compress a
# simulated week into little data (a 100 Hz WAV is harmless: it is just very low quality).
MIN_RATE = 100


class WavError(ValueError):
    pass


async def read_exactly(resp, n):
    buf = b""
    while len(buf) < n:
        chunk = await resp.read(n - len(buf))
        if not chunk:
            raise WavError("stream ended in the header")
        buf += chunk
    return buf


async def read_header(resp):
    """Consume RIFF/WAVE chunks up to 'data'; return (rate, bits, channels, data_bytes)."""
    return (await read_header_at(resp))[:4]


async def read_header_at(resp):
    """As read_header, plus the header length (where the data starts) as a fifth value."""
    head = await read_exactly(resp, 12)
    at = 12
    if head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise WavError("not a WAV file")
    fmt = None
    for _ in range(16):  # a WAV with more chunks than this before 'data' is not ours
        cid_size = await read_exactly(resp, 8)
        at += 8
        cid = cid_size[0:4]
        size = struct.unpack("<I", cid_size[4:8])[0]
        if cid == b"data":
            if fmt is None:
                raise WavError("data before fmt")
            return fmt[0], fmt[1], fmt[2], size, at
        if size > 4096:
            raise WavError("oversized chunk")
        body = await read_exactly(resp, size + (size & 1))
        at += size + (size & 1)
        if cid == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[0:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag != 1 or bits not in (8, 16) or channels not in (1, 2) or not MIN_RATE <= rate <= 48000:
                raise WavError("unsupported format")
            fmt = (rate, bits, channels)
    raise WavError("no data chunk")


def frame_bytes(bits, channels):
    return (bits // 8) * channels


def offset_bytes(pos_ms, rate, bits, channels):
    """Bytes of PCM before the sample due pos_ms into the audio, aligned to a whole frame."""
    if pos_ms <= 0:
        return 0
    return (pos_ms * rate // 1000) * frame_bytes(bits, channels)


def bytes_for_ms(ms, rate, bits, channels):
    """Whole frames' bytes covering ms of audio (at least one frame when ms > 0)."""
    if ms <= 0:
        return 0
    n = (ms * rate + 999) // 1000
    return n * frame_bytes(bits, channels)


class FileStream:
    """A flash file read through the async read(n) interface of an HTTP response."""

    def __init__(self, f):
        self.f = f

    async def read(self, n):
        return self.f.read(n)

    def seek(self, pos):
        self.f.seek(pos)

    def close(self):
        f = self.f
        self.f = None
        if f is not None:
            f.close()

# Reading the header of a PCM WAV stream: the ESP32 profile's media format (stock MicroPython
# has no MP3 decoder). Only the header is parsed; the data is streamed to the audio output.
import struct


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
    head = await read_exactly(resp, 12)
    if head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise WavError("not a WAV file")
    fmt = None
    for _ in range(16):  # a WAV with more chunks than this before 'data' is not ours
        cid_size = await read_exactly(resp, 8)
        cid = cid_size[0:4]
        size = struct.unpack("<I", cid_size[4:8])[0]
        if cid == b"data":
            if fmt is None:
                raise WavError("data before fmt")
            return fmt[0], fmt[1], fmt[2], size
        if size > 4096:
            raise WavError("oversized chunk")
        body = await read_exactly(resp, size + (size & 1))
        if cid == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[0:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag != 1 or bits not in (8, 16) or channels not in (1, 2) or not 8000 <= rate <= 48000:
                raise WavError("unsupported format")
            fmt = (rate, bits, channels)
    raise WavError("no data chunk")

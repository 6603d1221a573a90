"""The local stand-in radio stations: each mode, patterns that tell stations apart, a WAV
header the node firmware accepts, and a prompt stop."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.audio_check import BytesReader, dominant_hz, rms_dbfs

from firmware import wav
from hwsim.stations import LIVE_DATA_SIZE, Stations, byte_pattern, tone_pattern


@pytest.fixture
def stations(tmp_path: Path) -> Iterator[Stations]:
    (tmp_path / "hello.txt").write_bytes(b"xin chao")
    with Stations(static_dir=tmp_path) as st:
        st.add("vov1", tone_pattern(440))
        st.add("langson", tone_pattern(660))
        st.add("eight", byte_pattern(3), bits=8)
        yield st


def raw_get(st: Stations, path: str, nbytes: int, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Read up to ``nbytes`` of the raw response; (data, closed by the server)."""
    with socket.create_connection(("127.0.0.1", st.port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        buf = b""
        try:
            while len(buf) < nbytes:
                got = s.recv(65536)
                if not got:
                    return buf, True
                buf += got
        except TimeoutError:
            return buf, False
        except ConnectionResetError:
            return buf, True
        return buf, False


def split(resp: bytes) -> tuple[bytes, bytes]:
    head, _, body = resp.partition(b"\r\n\r\n")
    return head, body




def test_live_stream_header_accepted_by_firmware(stations: Stations) -> None:
    resp, closed = raw_get(stations, "/vov1", 64_000)
    head, body = split(resp)
    assert head.startswith(b"HTTP/1.0 200") and b"audio/wav" in head and not closed
    reader = BytesReader(body)
    rate, bits, channels, size = asyncio.run(wav.read_header(reader))
    assert (rate, bits, channels, size) == (16000, 16, 1, LIVE_DATA_SIZE)
    pcm = reader.data[: len(reader.data) // 2 * 2]
    assert abs(dominant_hz(pcm, 16000) - 440) < 5
    assert -16 < rms_dbfs(pcm) < -14  # a -12 dBFS peak sine is about -15 dBFS RMS


def test_patterns_tell_stations_apart(stations: Stations) -> None:
    bodies = {}
    for name in ("vov1", "langson", "eight"):
        resp, _ = raw_get(stations, f"/{name}", 40_000)
        bodies[name] = split(resp)[1][44:]
    for name, pcm in bodies.items():
        assert stations.which(pcm) == name
        assert stations.which(pcm[1000:]) == name  # from any point in the stream
    assert abs(dominant_hz(bodies["langson"][:32000], 16000) - 660) < 5
    assert stations.which(b"\x00" * 20_000) is None
    rate, bits, _, _ = asyncio.run(wav.read_header(BytesReader(split(
        raw_get(stations, "/eight", 1000)[0])[1])))
    assert (rate, bits) == (16000, 8)


def test_connections_counted(stations: Stations) -> None:
    for _ in range(3):
        raw_get(stations, "/langson", 100)
    raw_get(stations, "/vov1", 100)
    assert stations.connections("langson") == 3
    assert stations.connections("vov1") == 1


def test_down_is_503_then_close(stations: Stations) -> None:
    stations.set_mode("vov1", "down")
    resp, closed = raw_get(stations, "/vov1", 1_000_000)
    assert resp.startswith(b"HTTP/1.0 503") and closed


def test_refuse_closes_without_response(stations: Stations) -> None:
    stations.set_mode("vov1", "refuse")
    resp, closed = raw_get(stations, "/vov1", 1_000_000)
    assert resp == b"" and closed
    assert stations.connections("vov1") == 1


def test_stall_sends_header_then_nothing(stations: Stations) -> None:
    stations.set_mode("vov1", "stall")
    resp, closed = raw_get(stations, "/vov1", 1_000_000, timeout=0.5)
    head, body = split(resp)
    assert head.startswith(b"HTTP/1.0 200") and len(body) == 44 and not closed


def test_mute_streams_digital_silence(stations: Stations) -> None:
    stations.set_mode("vov1", "mute")
    stations.set_mode("eight", "mute")
    body = split(raw_get(stations, "/vov1", 20_000)[0])[1][44:]
    assert len(body) > 10_000 and set(body) == {0}
    body8 = split(raw_get(stations, "/eight", 20_000)[0])[1][44:]
    assert len(body8) > 10_000 and set(body8) == {0x80}


def test_cut_after_n_bytes(stations: Stations) -> None:
    stations.set_mode("langson", "cut_after", 10_001)
    resp, closed = raw_get(stations, "/langson", 1_000_000)
    assert closed and len(split(resp)[1]) == 44 + 10_001


def test_mode_change_reaches_open_stream(stations: Stations) -> None:
    with socket.create_connection(("127.0.0.1", stations.port), timeout=3) as s:
        s.sendall(b"GET /vov1 HTTP/1.0\r\n\r\n")
        buf = b""
        while len(buf) < 20_000:
            buf += s.recv(65536)
        stations.set_mode("vov1", "down")  # the station drops mid-relay
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            got = s.recv(65536)
            if not got:
                break
        else:
            pytest.fail("stream not closed after the station went down")


def test_unknown_station_and_static_files(stations: Stations) -> None:
    assert raw_get(stations, "/nope", 1000)[0].startswith(b"HTTP/1.0 404")
    head, body = split(raw_get(stations, "/files/hello.txt", 1000)[0])
    assert head.startswith(b"HTTP/1.0 200") and body == b"xin chao"
    assert raw_get(stations, "/files/../x", 1000)[0].startswith(b"HTTP/1.0 404")
    assert stations.file_url("hello.txt").endswith("/files/hello.txt")
    assert stations.host == f"127.0.0.1:{stations.port}"
    assert stations.url("vov1") == f"http://127.0.0.1:{stations.port}/vov1"


def test_bad_arguments() -> None:
    with Stations() as st:
        with pytest.raises(ValueError):
            st.add("x", b"\x01\x02\x03")  # not whole 16-bit samples
        with pytest.raises(ValueError):
            st.add("a/b", tone_pattern(100))
        st.add("x", tone_pattern(100))
        with pytest.raises(ValueError):
            st.set_mode("x", "cut_after")
        with pytest.raises(ValueError):
            st.set_mode("x", "loud")  # type: ignore[arg-type]


def _stations_threads(port: int) -> set[threading.Thread]:
    """The live threads the Stations on `port` runs: its server loop ("stations:<port>") and
    one per request ("stations:<port>:request"). Only its own: another test's server (still
    served by a node process that outlived its test) may start request threads meanwhile."""
    name = f"stations:{port}"
    return {t for t in threading.enumerate() if t.name in (name, name + ":request")}


def test_stop_is_prompt_with_stalled_and_unread_streams() -> None:
    st = Stations().start()
    st.add("a", tone_pattern(300))
    st.add("b", tone_pattern(500))
    st.set_mode("b", "stall")
    socks = []
    for name in ("a", "a", "b"):
        s = socket.create_connection(("127.0.0.1", st.port), timeout=3)
        s.sendall(f"GET /{name} HTTP/1.0\r\n\r\n".encode())
        s.recv(100)  # connected and streaming; then never read again (buffers fill up)
        socks.append(s)
    time.sleep(0.3)
    assert len(_stations_threads(st.port)) == 4  # the server and three streams
    t0 = time.monotonic()
    st.stop()
    assert time.monotonic() - t0 < 2
    assert _stations_threads(st.port) == set()
    for s in socks:
        s.close()

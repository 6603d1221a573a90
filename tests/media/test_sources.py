"""Relay source probing against the local stand-in stations (no internet in tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydub import AudioSegment
from support.audio_check import sine

from headend.media.sources import SILENCE_DBFS, SourceStatus, probe, probe_async
from headend.nodes.broker import find_free_port
from hwsim.stations import Stations, byte_pattern, tone_pattern


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("files")
    tone = sine(440, sample_rate=44100, duration=5000, volume=-10)
    tone.export(d / "vov1.mp3", format="mp3", bitrate="64k")
    AudioSegment.silent(duration=5000, frame_rate=44100).export(
        d / "quiet.mp3", format="mp3", bitrate="32k")
    tone.export(d / "vov1.aac", format="adts", codec="aac", bitrate="64k")
    (d / "portal.html").write_text("<html><body>Đăng nhập Wi-Fi</body></html>" * 50)
    (d / "noise.bin").write_bytes(bytes(range(256)) * 200)
    (d / "live.m3u8").write_text("#EXTM3U\n#EXT-X-VERSION:3\nseg1.ts\n")
    return d


@pytest.fixture
def stations(files: Path) -> Iterator[Stations]:
    with Stations(static_dir=files) as st:
        st.add("vov1", tone_pattern(440))
        st.add("langson", tone_pattern(660, level_dbfs=-30))
        st.add("eight", byte_pattern(5), bits=8)
        st.add("stereo", tone_pattern(550, channels=2, rate=22050), channels=2, rate=22050)
        yield st


def check(st: SourceStatus, state: str) -> None:
    assert st.state == state, st


def test_live_pcm_stations_ok(stations: Stations) -> None:
    for name in ("vov1", "langson", "eight", "stereo"):
        st = probe(stations.url(name))
        check(st, "ok")
        assert st.url == stations.url(name) and st.level_dbfs is not None
        assert st.elapsed_s < 2  # the local station is not paced: no need to wait listen_s
    assert -16 < probe(stations.url("vov1")).level_dbfs < -14  # type: ignore[operator]
    assert -34 < probe(stations.url("langson")).level_dbfs < -32  # type: ignore[operator]
    assert "dBFS" in probe(stations.url("vov1")).detail


def test_muted_station_is_silent(stations: Stations) -> None:
    for name in ("vov1", "eight"):
        stations.set_mode(name, "mute")
        st = probe(stations.url(name))
        check(st, "silent")
        assert st.level_dbfs is not None and st.level_dbfs < SILENCE_DBFS


def test_down_refused_and_closed_port_are_unreachable(stations: Stations) -> None:
    stations.set_mode("vov1", "down")
    st = probe(stations.url("vov1"))
    check(st, "unreachable")
    assert "503" in st.detail and st.level_dbfs is None
    stations.set_mode("vov1", "refuse")
    check(probe(stations.url("vov1")), "unreachable")
    st = probe(f"http://127.0.0.1:{find_free_port()}/vov1", timeout_s=2)
    check(st, "unreachable")
    assert "connect" in st.detail
    check(probe(stations.url("nope")), "unreachable")  # 404
    check(probe("http://name.invalid/x", timeout_s=2), "unreachable")


def test_stalled_stream_times_out(stations: Stations) -> None:
    stations.set_mode("vov1", "stall")
    t0 = time.monotonic()
    st = probe(stations.url("vov1"), timeout_s=1.0, listen_s=1.0)
    check(st, "unreachable")
    assert "stalled" in st.detail
    assert 0.9 < time.monotonic() - t0 < 4


def test_stream_cut_short_is_unreachable(stations: Stations) -> None:
    stations.set_mode("vov1", "cut_after", 8000)  # a quarter of a second, then closed
    st = probe(stations.url("vov1"), listen_s=2.0)
    check(st, "unreachable")
    assert "ended" in st.detail


def test_mp3_and_aac_streams_decoded_with_ffmpeg(stations: Stations) -> None:
    st = probe(stations.file_url("vov1.mp3"))
    check(st, "ok")
    assert st.level_dbfs is not None and -15 < st.level_dbfs < -11
    check(probe(stations.file_url("vov1.aac")), "ok")
    check(probe(stations.file_url("quiet.mp3")), "silent")


def test_undecodable_data_is_bad(stations: Stations) -> None:
    for name in ("portal.html", "noise.bin"):
        st = probe(stations.file_url(name))
        check(st, "bad")
        assert st.level_dbfs is None
    st = probe(stations.file_url("live.m3u8"))
    check(st, "bad")
    assert "HLS" in st.detail


def test_probe_async(stations: Stations) -> None:
    async def both() -> list[SourceStatus]:
        return list(await asyncio.gather(probe_async(stations.url("vov1")),
                                         probe_async(stations.url("langson"))))

    assert [s.state for s in asyncio.run(both())] == ["ok", "ok"]

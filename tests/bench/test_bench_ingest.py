"""`loaxa bench ingest`, small: what the generator offered reached the reference subscriber
and was stored by the headend exactly once (counted by the generator, the headend and the
database independently)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from headend.bench.ingest import add_parser, measure, split_packets


def test_small_run_stores_everything_offered_exactly_once(tmp_path: Path) -> None:
    r = asyncio.run(measure(nodes=20, rate=400, seconds=3, asrun_share=0.25, root=tmp_path))
    assert r.problems == []
    ref, h = r.reference, r.headend
    # The generator really offered about the asked rate, in both phases.
    assert 1000 <= ref.offered <= 1220 and 1000 <= h.offered <= 1220
    assert ref.delivered == ref.offered
    # Every as-run record is one row, acked once to its node; every node's stored telemetry
    # is the last it sent; the headend counted as many messages committed as were offered.
    assert h.offered_asrun > 250
    assert r.asrun_rows == h.offered_asrun == r.asrun_acked
    assert r.telemetry_expected == 20 and r.telemetry_ok == 20
    # A batch is committed at the latest 2 s after its first message: within the window.
    assert 0 < h.stored <= h.offered
    assert "stored exactly once: yes" in r.report()


def test_packet_splitting_keeps_incomplete_tails() -> None:
    puback = b"\x40\x02\x00\x07"
    long_body = bytes(200)
    publish = b"\x30" + bytes([200 % 128 | 0x80, 200 // 128]) + long_body
    buf = bytearray(puback + publish[:100])
    assert split_packets(buf) == [(0x40, b"\x00\x07")]
    assert bytes(buf) == publish[:100]
    buf += publish[100:]
    assert split_packets(buf) == [(0x30, long_body)]
    assert buf == bytearray()


def test_parser_defaults_and_checks() -> None:
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="bench"))
    args = p.parse_args(["ingest"])
    assert (args.nodes, args.rate, args.seconds, args.asrun, args.generators) == \
        (1000, 12_000, 60, 20, 1)
    with pytest.raises(SystemExit):
        p.parse_args(["ingest", "--rate", "0"])

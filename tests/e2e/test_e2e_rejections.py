"""Every rejection case of protocol v1 on a live node: nothing plays, the node stays
connected, and the rejection is reported to the headend."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.loaxa_stack import Stack, wait_until

from firmware import protocol
from headend.media.store import write_test_tone

NODE = "n0001"
SHORT = "short.wav"


def now_ms() -> int:
    return int(time.time() * 1000)


def fresh(stack: Stack, op: str = "play", args: dict[str, Any] | None = None) -> dict[str, Any]:
    """A correctly signed command with the next sequence number, as a dict to tamper with."""
    args = args if args is not None else {"url": stack.media_url(), "title": "x"}
    [sent] = stack.headend.prepare([NODE], op, args)
    cmd: dict[str, Any] = json.loads(sent.payload)
    return cmd


def resign(stack: Stack, cmd: dict[str, Any], key_hex: str | None = None) -> bytes:
    secret = next(s for s in stack.secrets if s.id == NODE)
    signer = protocol.Signer(protocol.node_key(key_hex or secret.key))
    cmd["sig"] = signer.sign(protocol.signing_bytes(cmd))
    return protocol.encode_command(cmd)


def publish(stack: Stack, payload: bytes, node_id: str = NODE) -> None:
    client = stack.headend.client
    assert client is not None
    stack.run(client.publish(protocol.topic(node_id, protocol.CMD), payload, qos=1))


def rejection(stack: Stack, count_before: int) -> dict[str, Any]:
    got = wait_until(lambda: len(stack.headend.rejections) > count_before, 10, "a rejection")
    assert got
    return stack.headend.rejections[-1]


def _bad_signature(stack: Stack) -> bytes:
    return resign(stack, fresh(stack), key_hex="00" * 32)


def _forged_args(stack: Stack) -> bytes:
    cmd = fresh(stack)
    payload = resign(stack, cmd)
    # Change the URL after signing: the signature no longer covers what is sent.
    return payload.replace(b"test-tone.wav", b"other-tone.wav")


def _expired(stack: Stack) -> bytes:
    cmd = fresh(stack)
    cmd["iat"], cmd["exp"] = now_ms() - 120_000, now_ms() - 60_000
    return resign(stack, cmd)


def _not_yet_valid(stack: Stack) -> bytes:
    cmd = fresh(stack)
    cmd["iat"], cmd["exp"] = now_ms() + 600_000, now_ms() + 660_000
    return resign(stack, cmd)


def _wrong_node(stack: Stack) -> bytes:
    cmd = fresh(stack)
    cmd["node"] = "n0002"  # signed with n0001's key, but addressed to another node
    return resign(stack, cmd)


def _unknown_op(stack: Stack) -> bytes:
    cmd = fresh(stack)
    cmd["op"] = "format_flash"
    return resign(stack, cmd)


def _unknown_version(stack: Stack) -> bytes:
    cmd = fresh(stack)
    cmd["v"] = 2
    return resign(stack, cmd)


def _malformed_json(stack: Stack) -> bytes:
    return b'{"v":1,"id":"c1","node":"n0001",'


def _not_an_object(stack: Stack) -> bytes:
    return b'[1,2,3]'


def _missing_field(stack: Stack) -> bytes:
    cmd = fresh(stack)
    del cmd["exp"]
    return resign(stack, cmd)


def _float_seq(stack: Stack) -> bytes:
    cmd = fresh(stack)
    return protocol.encode_command(cmd).replace(b'"seq":%d' % cmd["seq"], b'"seq":1e9')


def _oversized(stack: Stack) -> bytes:
    cmd = fresh(stack)
    cmd["args"]["title"] = "x" * (protocol.MAX_PAYLOAD + 100)
    return resign(stack, cmd)


def _host_not_allowed(stack: Stack) -> bytes:
    return resign(stack, fresh(stack, args={"url": "http://203.0.113.9:80/x.wav"}))


def _bad_volume(stack: Stack) -> bytes:
    return resign(stack, fresh(stack, op="volume", args={"level": 400}))


CASES = [
    (_bad_signature, protocol.R_SIGNATURE),
    (_forged_args, protocol.R_SIGNATURE),
    (_expired, protocol.R_EXPIRED),
    (_not_yet_valid, protocol.R_NOT_YET_VALID),
    (_wrong_node, protocol.R_WRONG_NODE),
    (_unknown_op, protocol.R_UNKNOWN_OP),
    (_unknown_version, protocol.R_VERSION),
    (_malformed_json, protocol.R_MALFORMED),
    (_not_an_object, protocol.R_MALFORMED),
    (_missing_field, protocol.R_MALFORMED),
    (_float_seq, protocol.R_MALFORMED),
    (_oversized, protocol.R_OVERSIZED),
    (_host_not_allowed, protocol.R_HOST),
    (_bad_volume, protocol.R_BAD_ARGS),
]


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("rejections")).start()
    write_test_tone(s.home.media_dir, SHORT, seconds=0.3)
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize(("make", "reason"), CASES, ids=[c[0].__name__[1:] for c in CASES])
def test_node_rejects(shared_stack: Stack, make: Any, reason: str) -> None:
    stack = shared_stack
    connects = stack.fleet.status()[NODE]["connects"]
    played = len(stack.fleet.recordings(NODE))
    amp_ons = [e["event"] for e in stack.fleet.events(NODE)].count("amp_on")
    before = len(stack.headend.rejections)
    publish(stack, make(stack))
    rej = rejection(stack, before)
    assert rej["node"] == NODE
    assert rej["status"] == protocol.REJECTED
    assert rej["reason"] == reason
    time.sleep(0.5)  # give a wrongly accepted command the time to start playing
    assert len(stack.fleet.recordings(NODE)) == played, "a rejected command played audio"
    assert [e["event"] for e in stack.fleet.events(NODE)].count("amp_on") == amp_ons
    st = stack.fleet.status()[NODE]
    assert st["connected"] and st["connects"] == connects, st
    # The node is still fully working: a good command after the bad one plays.
    [good] = stack.play([NODE], name=SHORT)
    wait_until(lambda: stack.command(good).status == "done", 15, "the good command to finish")
    assert len(stack.fleet.recordings(NODE)) == played + 1


def test_replay_is_rejected_even_after_a_reboot(stack: Stack) -> None:
    [sent] = stack.headend.prepare([NODE], "volume", {"level": 55})
    publish(stack, sent.payload)
    wait_until(lambda: stack.command(sent.id).status == "done", 10, "volume done")

    before = len(stack.headend.rejections)
    publish(stack, sent.payload)  # the same bytes again: a replay
    assert rejection(stack, before)["reason"] == protocol.R_REPLAY
    assert [e.get("level") for e in stack.fleet.events(NODE)].count(55) == 1

    # Power-cycle every node: the last accepted sequence number is read back from flash.
    stack.fleet.stop()
    stack.fleet.start()
    stack.fleet.wait_connected(30)
    events_before = len(stack.fleet.events(NODE))
    before = len(stack.headend.rejections)
    publish(stack, sent.payload)
    rej = rejection(stack, before)
    assert rej["reason"] == protocol.R_REPLAY and rej["id"] == sent.id
    # A lower sequence number signed with the right key is a replay too.
    cmd = fresh(stack, op="ping", args={})
    cmd["seq"] = sent.seq - 1
    before = len(stack.headend.rejections)
    publish(stack, resign(stack, cmd))
    assert rejection(stack, before)["reason"] == protocol.R_REPLAY
    new_events = stack.fleet.events(NODE)[events_before:]
    assert not [e for e in new_events if e["event"] == "volume"], "a replay changed the volume"

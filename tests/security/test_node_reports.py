"""Node reports are signed and checked (issue #9, item 3), tried as an attacker holding one
node's broker password would, against the real parts: Mosquitto, the headend's gateway and
ingest, nodes running the real firmware under MicroPython.

- A forged record with the node's next record id (no signature, a wrong one, another node's,
  one over other bytes) is dropped without an answer: the real record with that id is stored
  when it comes, `diary verify` stays intact and the criterion 8.3 view does not move.
- A forged ack does not settle a command.
- A signed record that cannot be true (start after end, the year 3000, float times, huge ints,
  bools, nested junk, an impossible rid) is refused with an answer naming it and why; a real
  node that holds such records drops them and stops resending (its journal empties).
- A record id that comes back with other (signed) content: the first stays, one alarm.
- A play or emergency whose media does not hash to the command's sha: nothing airs, bad_hash.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.loaxa_stack import Stack, wait_until

from firmware import protocol
from headend.core.alarms import ASRUN_CONFLICT, ASRUN_REFUSED, list_alarms
from headend.core.models import AsRunRecord
from headend.diary import chain
from headend.diary.monthly import monthly_report, render_text
from headend.nodes.ingest import Answers

COMMUNE = "test-xa"
MIN = 60_000


def key_of(stack: Stack, node_id: str) -> str:
    return next(s.key for s in stack.secrets if s.id == node_id)


def signer(key: str) -> protocol.Signer:
    return protocol.Signer(protocol.node_key(key))


def signed(key: str, rec: dict[str, Any]) -> bytes:
    """The bytes the firmware would send for rec (firmware/protocol.py sign_report)."""
    return protocol.sign_report(signer(key), dict(rec))


def crafted(key: str, body: bytes) -> bytes:
    """Any bytes, validly signed: the signature over body, as the last field (signed_part
    cuts the last ',"sig":"...' out, wherever it is). What a stolen key allows."""
    return body[:-1] + b',"sig":"' + signer(key).sign(body).encode() + b'"}'


def record(node_id: str, rid: int, now: int, **fields: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"v": 1, "t": "asrun", "node": node_id, "rid": rid, "cmd": None,
                           "trigger": "manual", "kind": "test", "title": "Thử loa",
                           "media": "tone:1000Hz", "planned": None, "start": now - 5000,
                           "end": now - 1000, "outcome": "aired", "reason": None}
    rec.update(fields)
    return rec


def relay(node_id: str, rid: int, now: int, title: str = "VOV1 Thời sự") -> dict[str, Any]:
    """A forged plan relay (the kind criterion 8.3 counts)."""
    return record(node_id, rid, now, trigger="plan", item=f"vov@{rid}", kind="vov_relay", p=0,
                  lang="vi", title=title, media="http://10.0.0.2:8080/vov1", src="primary",
                  planned=now - 30 * MIN, planned_end=now - MIN, start=now - 30 * MIN,
                  end=now - MIN)


class Rogue:
    """A client with one node's broker password: publishes on its topics and reads the
    headend's answers on its asrun/ack topic. Its session is the node's (the broker makes the
    client id the username), so the real node is kept off the network meanwhile, or the two
    would take the session from each other; leave() gives it back."""

    def __init__(self, stack: Stack, node_id: str) -> None:
        secret = next(s for s in stack.secrets if s.id == node_id)
        self.stack = stack
        self.node_id = node_id
        stack.fleet.set_link(node_id, False)
        wait_until(lambda: not stack.fleet.status()[node_id]["connected"], 10, "node off")
        self.here = True
        self.answers: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"{node_id}-rogue")
        self.client.username_pw_set(node_id, secret.password)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", stack.broker.node_port)
        self.client.loop_start()
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.subscribe(protocol.topic(node_id, protocol.ASRUN_ACK), qos=1)
        assert subscribed.wait(5)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.answers.append(json.loads(message.payload))

    def publish(self, leaf: str, payload: bytes) -> None:
        info = self.client.publish(protocol.topic(self.node_id, leaf), payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    def refused(self) -> dict[Any, tuple[str, str]]:
        """rid -> (sig, why) of every refusal seen so far."""
        with self._lock:
            return {r["rid"]: (r["sig"], r["why"]) for a in self.answers
                    for r in a.get("refused", [])}

    def acked(self) -> list[int]:
        with self._lock:
            return [rid for a in self.answers for rid in a.get("rids", [])]

    def close(self) -> None:
        if self.here:
            self.here = False
            self.client.loop_stop()
            self.client.disconnect()

    def leave(self) -> None:
        """The rogue goes; the real node comes back on its link and reconnects."""
        self.close()
        self.stack.fleet.set_link(self.node_id, True)
        self.stack.fleet.wait_connected(30, [self.node_id])


@pytest.fixture
def rogue(stack: Stack) -> Iterator[Rogue]:
    r = Rogue(stack, "n0002")
    try:
        yield r
    finally:
        r.close()


def next_rid(stack: Stack, node_id: str) -> int:
    [state] = stack.fleet.node_dir(node_id).rglob("state.json")
    return int(json.loads(state.read_text())["rid"])


def rows(stack: Stack, node_id: str) -> dict[int, AsRunRecord]:
    with Session(stack.engine) as s:
        return {r.rid: r for r in s.scalars(select(AsRunRecord)
                                            .where(AsRunRecord.node_id == node_id))}


def view_8_3(stack: Stack) -> str:
    now = stack.clock.time_ms()
    d = datetime.fromtimestamp(now / 1000, UTC)
    return render_text(monthly_report(stack.engine, COMMUNE, d.year, d.month, now))


def settle(stack: Stack) -> None:
    time.sleep(0.3)  # delivery through the broker
    stack.run(stack.headend.flush())


def test_forged_records_and_acks_are_dropped_and_the_real_record_is_stored(
        stack: Stack, rogue: Rogue) -> None:
    node = rogue.node_id
    key = key_of(stack, node)
    now = stack.clock.time_ms()
    rid = next_rid(stack, node)
    # (a command the node has not answered, for a forged ack below; the diary shows it)
    [cmd] = stack.run(stack.run_async_prepare("play", {"url": stack.media_url()}, node=node))
    before = view_8_3(stack)
    fake = relay(node, rid, now)
    bulletin = record(node, rid, now, trigger="plan", item="tin@1", kind="local_bulletin",
                      p=0, lang="vi", title="Bản tin giả", planned=now - 10 * MIN,
                      planned_end=now - 5 * MIN, start=now - 10 * MIN, end=now - 5 * MIN,
                      src="cache")
    real_bytes = signed(key, fake)
    forgeries = [
        json.dumps(fake).encode(),  # no signature
        protocol.canonical({**fake, "sig": "0" * 64}),  # a made-up one
        signed(key_of(stack, "n0003"), fake),  # another node's key
        signed(key, bulletin).replace(b"B\xe1\xba\xa3n tin gi\xe1\xba\xa3", b"Tin th\xe1\xba\xadt"),
        real_bytes.replace(b'"outcome":"aired"', b'"outcome":"partial"'),  # over other bytes
        json.dumps(json.loads(real_bytes), indent=1).encode(),  # not the bytes signed
        signed(key, {**fake, "node": "n0003"}),  # (the gateway also checks the topic's node)
    ]
    assert b"Tin th" in forgeries[3]
    for payload in forgeries:
        rogue.publish(protocol.ASRUN, payload)
    # A forged ack does not settle a command the node has not answered.
    rogue.publish(protocol.ACK, json.dumps(protocol.ack(node, cmd.id, "done", now)).encode())
    rogue.publish(protocol.ACK, protocol.canonical(
        {**protocol.ack(node, cmd.id, "done", now), "sig": "1" * 64}))
    settle(stack)
    assert rid not in rows(stack, node)
    assert rogue.answers == []  # no answer at all: nothing the node could act on
    assert stack.command(cmd.id).status == "sent"
    assert view_8_3(stack) == before
    assert chain.verify(stack.engine, [COMMUNE]) == []
    # The node's real record with that id is stored when it comes.
    rogue.leave()
    [cid] = stack.play([node])
    got = wait_until(lambda: rows(stack, node).get(rid), 30, "the real record")
    assert (got.command_id, got.title, got.trigger) == (cid, "Bản tin thử", "command")
    wait_until(lambda: stack.fleet.status()[node]["pending"] == 0, 30, "the node's ack")
    assert chain.verify(stack.engine, [COMMUNE]) == []
    assert [a for a in list_alarms(stack.engine) if a.kind.startswith("asrun")] == []


def test_absurd_signed_records_are_refused_with_a_reason(stack: Stack, rogue: Rogue) -> None:
    """With the node's key (not only its password) anything can be signed; what cannot be a
    true record is still refused, each with an answer the node can act on."""
    node, key = rogue.node_id, key_of(stack, rogue.node_id)
    now = stack.clock.time_ms()
    year_3000 = int(datetime(3000, 1, 1, tzinfo=UTC).timestamp() * 1000)
    base = 2 ** 51
    rec = record(node, base, now)

    def body(rid: int, **fields: Any) -> bytes:
        return protocol.canonical({**rec, "rid": rid, **fields})

    cases: dict[int, bytes] = {
        base + 1: body(base + 1, start=now, end=now - 1000),  # start after end
        base + 2: body(base + 2, start=year_3000, end=year_3000 + 1000),
        base + 3: body(base + 3, start=0, end=1000),  # 1970: a clock never set
        base + 4: body(base + 4).replace(b'"start":%d' % (now - 5000),
                                         b'"start":%d.5' % (now - 5000)),  # a float time
        base + 5: body(base + 5).replace(b'"end":%d' % (now - 1000), b'"end":1e308'),
        base + 6: body(base + 6, p=10 ** 30),  # a huge int
        base + 7: body(base + 7, start=True),  # a bool for a time
        base + 8: body(base + 8, title={"a": [1, {"b": [2, [3]]}]}),  # nested junk
        base + 9: body(base + 9, title="t" * 2000),  # longer than any title
        base + 10: body(base + 10, start=now - 3 * 86_400_000, end=now - 1000),  # 3 days long
        base + 11: body(base + 11, trigger="plan", planned=now - 10 * 86_400_000,
                        planned_end=now - 10 * 86_400_000 + MIN),  # far from its plan item
        base + 12: body(base + 12, t="ack"),  # not an as-run record
        2 ** 53 + 1: body(2 ** 53 + 1),  # rid out of range
        -5: body(-5),
        0: body(0),
    }
    cases_with_float_rid = [body(base + 13).replace(b'"rid":%d' % (base + 13), b'"rid":7.0')]
    for payload in [*cases.values(), *cases_with_float_rid]:
        assert len(payload) < protocol.MAX_PAYLOAD
        rogue.publish(protocol.ASRUN, crafted(key, payload))
    settle(stack)
    refused = wait_until(lambda: len(rogue.refused()) >= len(cases) and rogue.refused(), 10,
                         "refusals")
    for rid, payload in cases.items():
        sig, why = refused[rid]
        assert sig == json.loads(crafted(key, payload))["sig"]
        assert why in (protocol.R_BAD_FIELD, protocol.R_BAD_TIME), (rid, why)
    assert refused[base + 1][1] == refused[base + 2][1] == protocol.R_BAD_TIME
    assert refused[base + 4][1] == refused[base + 6][1] == protocol.R_BAD_FIELD
    assert rogue.acked() == []
    assert rows(stack, node) == {}
    assert chain.verify(stack.engine, [COMMUNE]) == []
    [alarm] = [a for a in list_alarms(stack.engine) if a.kind == ASRUN_REFUSED]
    assert alarm.subject == node and alarm.commune_id == COMMUNE


def test_a_record_id_with_other_content_keeps_the_first_and_raises_one_alarm(
        stack: Stack, rogue: Rogue) -> None:
    node, key = rogue.node_id, key_of(stack, rogue.node_id)
    now = stack.clock.time_ms()
    rid = 2 ** 51 + 100
    first = signed(key, record(node, rid, now, title="Bản đầu"))
    other = signed(key, record(node, rid, now, title="Bản sau"))
    rogue.publish(protocol.ASRUN, first)
    settle(stack)
    wait_until(lambda: rogue.acked() == [rid], 10, "the first stored")
    rogue.publish(protocol.ASRUN, first)  # the same bytes again (a lost ack): acked again
    rogue.publish(protocol.ASRUN, other)
    rogue.publish(protocol.ASRUN, other)
    settle(stack)
    wait_until(lambda: rogue.acked() == [rid, rid] and rid in rogue.refused(), 10, "answers")
    assert rogue.refused()[rid] == (json.loads(other)["sig"], protocol.R_CONFLICT)
    assert [r.title for r in rows(stack, node).values()] == ["Bản đầu"]
    conflicts = [a for a in list_alarms(stack.engine) if a.kind == ASRUN_CONFLICT]
    assert [(a.subject, a.cleared_ms) for a in conflicts] == [(f"{node}:{rid}", None)]
    assert chain.verify(stack.engine, [COMMUNE]) == []


def test_media_that_does_not_match_the_commands_sha_never_airs(stack: Stack) -> None:
    node = "n0004"
    data = stack.tone.read_bytes()
    good = {"url": stack.media_url(), "sha": hashlib.sha256(data).hexdigest(),
            "size": len(data), "title": "Bản tin thử"}
    # An on-path attacker swapped the bytes: the command names other media.
    bad = {**good, "sha": hashlib.sha256(b"the real bulletin").hexdigest()}
    for op in ("play", "emergency"):
        [cmd] = stack.run(stack.headend.send([node], op, bad, title="x"))
        wait_until(lambda cid=cmd.id: stack.command(cid).status == "failed", 30, "failed")
        assert stack.command(cmd.id).reason == protocol.R_BAD_HASH
        got = wait_until(lambda cid=cmd.id: [r for r in stack.asrun() if r.command_id == cid],
                         30, "its record")
        assert [(r.outcome, r.reason, r.start_ms) for r in got] == [("failed", "bad_hash", None)]
        assert stack.fleet.recordings(node) == []
    # The right media plays (downloaded into the cache, checked, then played).
    [cmd] = stack.run(stack.headend.send([node], "emergency", good, title="x"))
    wait_until(lambda: stack.command(cmd.id).status == "done", 30, "aired")
    assert [r.label for r in stack.fleet.recordings(node)] == [cmd.id]


def test_a_node_drops_records_refused_for_good_and_stops_resending(tmp_path: Path) -> None:
    """Records a node kept in its journal that the headend can never store (a firmware bug
    wrote them): refused with a reason, and the MicroPython node empties its journal."""
    stack = Stack(tmp_path, nodes=2)
    node, key = "n0001", key_of(stack, "n0001")
    now = stack.clock.time_ms()
    base = 2 ** 40
    bad = [record(node, base + 1, now, start=now, end=now - 1000),
           record(node, base + 2, now, start=now + 3_000 * 365 * 86_400_000,
                  end=now + 3_000 * 365 * 86_400_000),
           record(node, base + 3, now, p=10 ** 30),
           record(node, base + 4, now, start=True, end=True),
           record(node, base + 5, now, title={"x": [1, {"y": [2]}]})]
    good = record(node, base + 6, now)
    journal = [json.loads(signed(key, r)) for r in [*bad, good]]
    flash = stack.fleet.node_dir(node) / "flash"
    flash.mkdir(parents=True)
    (flash / "asrun.json").write_text(json.dumps(journal))
    (flash / "state.json").write_text(json.dumps({"session": 0, "rid": base + 7,
                                                  "volume": 70}))
    answers: list[Answers] = []
    send_acks = stack.headend._send_acks

    async def spy(a: Answers) -> None:
        answers.append(a)
        await send_acks(a)

    stack.headend._send_acks = spy  # type: ignore[method-assign]
    stack.start()
    try:
        wait_until(lambda: stack.fleet.status()[node]["pending"] == 0, 60,
                   "the node's journal to empty")
        assert sorted(rows(stack, node)) == [base + 6]
        refused = {r["rid"]: r["why"] for a in answers for r in a.refused.get(node, [])}
        assert sorted(refused) == [base + 1, base + 2, base + 3, base + 4, base + 5]
        # Nothing more comes: the node resends every 30 s, and it has nothing left.
        n = len(answers)
        time.sleep(2)
        assert stack.fleet.status()[node]["pending"] == 0 and len(answers) == n
    finally:
        stack.stop()

"""`loaxa node ...` against real MicroPython nodes through the running headend's broker: the
test tone is heard at the right pitch and goes into the diary, volume, amplifier and reboot do
what they say, and bad requests are clear errors that send nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.audio_check import dominant_hz, rms_dbfs
from support.cli import node_cli, running
from support.loaxa_stack import Stack, wait_until

from headend.cli.main import main
from headend.core.models import Command, Node


def test_node_operations_from_the_command_line(stack: Stack,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    running(stack)
    code, out = node_cli(stack, capsys, "test-tone", "n0001", "--seconds", "2", "--hz", "800")
    assert code == 0 and "test-tone – n0001: xong (done)" in out, out
    (rec,) = stack.fleet.recordings("n0001")
    pcm = rec.pcm()
    assert abs(len(pcm) / (2 * rec.rate) - 2.0) < 0.05  # two seconds of it
    assert abs(dominant_hz(pcm, rec.rate) - 800) < 15 and rms_dbfs(pcm) > -20
    wait_until(lambda: [r for r in stack.asrun() if r.node_id == "n0001"], 15, "the record")
    (tone,) = [r for r in stack.asrun() if r.node_id == "n0001"]
    assert (tone.trigger, tone.kind, tone.outcome) == ("manual", "test", "aired")
    assert tone.title == "Thử loa: âm thử 800 Hz"
    with Session(stack.engine) as s:
        cmd = s.scalars(select(Command).where(Command.node_id == "n0001")).one()
        assert (cmd.op, cmd.operator, cmd.status) == ("test_tone", "KTV Hùng", "done")

    code, out = node_cli(stack, capsys, "volume", "n0002", "35")
    assert code == 0 and "'volume': 35" in out
    code, out = node_cli(stack, capsys, "amp", "n0003", "on")
    assert code == 0 and "'amp': True" in out
    assert stack.fleet.status()["n0003"]["amp"] is True
    code, out = node_cli(stack, capsys, "amp", "n0003", "off")
    assert code == 0 and "'amp': False" in out

    with Session(stack.engine) as s:
        before = s.get(Node, "n0004").session  # type: ignore[union-attr]
    code, out = node_cli(stack, capsys, "reboot", "n0004")
    assert code == 0 and "reboot – n0004: xong (done)" in out
    wait_until(lambda: stack.fleet.reboots("n0004") == 1, 15, "the reboot")

    def session() -> int:
        with Session(stack.engine) as s:
            node = s.get(Node, "n0004")
            return node.session if node and node.online else 0
    wait_until(lambda: session() > before, 30, "the node back with its next session")

    code, out = node_cli(stack, capsys, "report", "n0005")
    assert code == 0 and "report – n0005: xong (done)" in out


def test_bad_node_requests_send_nothing(stack: Stack,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    running(stack)
    code, out = node_cli(stack, capsys, "test-tone", "khong-co")
    assert code == 2 and "unknown node 'khong-co'" in out
    with pytest.raises(SystemExit):
        main(["--home", str(stack.home.root), "node", "volume", "n0001", "150"])
    assert "volume is 0 to 100, not 150" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--home", str(stack.home.root), "node", "test-tone", "n0001", "--seconds", "600"])
    assert "must be 1 to 60, not 600" in capsys.readouterr().err
    with Session(stack.engine) as s:
        assert s.scalars(select(Command)).all() == []
    stack.home.running_path.unlink()
    code, out = node_cli(stack, capsys, "report", "n0002")
    assert code == 2 and "loaxa serve" in out


def test_faults_on_a_node_raise_one_alarm_each_and_clear_once(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    from headend.core.alarms import AMP_FAULT, WEAK_SIGNAL, list_alarms

    running(stack)

    def history(kind: str) -> list[bool]:
        stack.run(stack.headend.flush())
        return [a.cleared_ms is None for a in list_alarms(stack.engine) if a.kind == kind]

    node = "n0001"
    stack.fleet.set_fault(node, signal_dbm=-111)
    for _ in range(2):  # a full report sends telemetry now
        assert node_cli(stack, capsys, "report", node)[0] == 0
        wait_until(lambda: history(WEAK_SIGNAL) == [True], 10, "weak signal raised once")
    stack.fleet.set_fault(node, signal_dbm=-75)
    assert node_cli(stack, capsys, "report", node)[0] == 0
    wait_until(lambda: history(WEAK_SIGNAL) == [False], 10, "weak signal cleared once")

    stack.fleet.set_fault(node, amp_fault=True)
    code, out = node_cli(stack, capsys, "amp", node, "on")
    assert code == 0 and "'amp_fault': True" in out
    wait_until(lambda: history(AMP_FAULT) == [True], 10, "amplifier fault raised")
    assert node_cli(stack, capsys, "amp", node, "off")[0] == 0
    stack.fleet.set_fault(node, amp_fault=False)
    code, out = node_cli(stack, capsys, "test-tone", node, "--seconds", "1")
    assert code == 0
    wait_until(lambda: history(AMP_FAULT) == [False], 10, "amplifier fault cleared once")

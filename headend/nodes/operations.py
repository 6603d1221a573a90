"""Remote operations on one node for technicians (`loaxa node ...`): test tone, volume,
amplifier on/off, reboot, full report. Each is a signed command sent through the running
headend's broker; the technician sees its acks as they come."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from firmware import protocol
from headend.nodes.gateway import HeadendOffline, tool_session

FINAL = (protocol.DONE, protocol.FAILED, protocol.REJECTED)


class NodeOpError(Exception):
    pass


@dataclass(frozen=True)
class NodeOp:
    op: str  # the protocol op
    title: str  # for the diary and the command log
    wait_s: float  # how long a healthy node takes to finish


def node_op(name: str, args: dict[str, Any]) -> NodeOp:
    if name == "test-tone":
        return NodeOp("test_tone", f"Thử loa: âm thử {args['hz']} Hz", args["seconds"] + 15)
    if name == "volume":
        return NodeOp("volume", f"Âm lượng {args['level']}", 15)
    if name == "amp":
        return NodeOp("amp", "Bật ampli" if args["on"] else "Tắt ampli", 15)
    if name == "reboot":
        return NodeOp("reboot", "Khởi động lại", 15)
    if name == "report":
        return NodeOp("report", "Báo cáo đầy đủ", 15)
    raise NodeOpError(f"unknown operation {name!r}")


async def follow_acks(headend: Any, cmd: Any, statuses: tuple[str, ...], wait_s: float,
                      on_ack: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """Publish the prepared command and report each of its acks in statuses as it comes;
    the final one (done, failed or rejected), or None when the node said nothing more for
    wait_s seconds from the send."""
    pending = {s: headend.waiters.add(cmd.id, [s]) for s in statuses}
    await headend.publish_commands([cmd])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        done, _ = await asyncio.wait(pending.values(), timeout=max(0.0, deadline - loop.time()),
                                     return_when=asyncio.FIRST_COMPLETED)
        if not done:
            return None
        for status, fut in list(pending.items()):
            if fut in done:
                del pending[status]
                msg = fut.result()
                on_ack(msg)
                if status in FINAL:
                    return dict(msg)


async def run_op(engine: Engine, broker_port: int, password: str, node_id: str, name: str,
                 args: dict[str, Any], operator: str,
                 on_ack: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Send the operation and report every ack; returns the final one (done, failed or
    rejected). A node that does not answer in time is an error saying so."""
    op = node_op(name, args)
    try:
        async with tool_session(engine, broker_port, password, "node") as headend:
            try:
                [cmd] = await asyncio.to_thread(headend.prepare, [node_id], op.op, args,
                                                120_000, operator, op.title)
            except KeyError:
                raise NodeOpError(f"unknown node {node_id!r}") from None
            final = await follow_acks(headend, cmd, (protocol.ACCEPTED, protocol.STARTED, *FINAL),
                                      op.wait_s, on_ack)
            if final is None:
                raise NodeOpError(f"{node_id} did not answer within {op.wait_s:.0f} s "
                                  "(offline? see `loaxa nodes`)")
            return final
    except HeadendOffline as e:
        raise NodeOpError(str(e)) from None

# Shared helpers for firmware tests that run under both MicroPython and CPython.
# ruff: noqa: SIM105  (MicroPython has no contextlib)
# The case modules (fw_*_cases.py) hold plain `test_*` functions with bare asserts; the pytest
# side (conftest.py, test_fw_transport.py) and tests/support/mp_runner.py both import and call them.
# Environment, set by the pytest side:
#   LOAXA_FW_BROKER   host:port of a mosquitto that stays up for the whole run
#   LOAXA_FW_BROKER2  host:port of a mosquitto that tests may stop and start
#   LOAXA_FW_HTTP     http://host:port of the test HTTP server (also controls BROKER2)
import asyncio
import os
import random
import sys

from firmware.mqtt import MQTTClient, sleep_ms, ticks_diff, ticks_ms, wait_ms

MICROPYTHON = sys.implementation.name == "micropython"


def run(coro, timeout_ms=30000):
    """Run one async test on a fresh event loop, with an overall timeout."""
    if MICROPYTHON:
        asyncio.new_event_loop()  # drop tasks a previous test left behind
    return asyncio.run(wait_ms(coro, timeout_ms))


def env(name):
    v = os.getenv(name)
    if not v:
        raise RuntimeError(f"{name} is not set: run these tests through pytest (tests/firmware)")
    return v


def hostport(name):
    v = env(name)
    i = v.rfind(":")
    return v[:i], int(v[i + 1:])


def broker():
    return hostport("LOAXA_FW_BROKER")


def broker2():
    return hostport("LOAXA_FW_BROKER2")


def http_base():
    return env("LOAXA_FW_HTTP")


def uid(prefix):
    return f"{prefix}-{random.getrandbits(32):08x}"


def client(prefix, addr=None, **kw):
    host, port = addr or broker()
    return MQTTClient(uid(prefix), host, port, **kw)


async def started(c, timeout_ms=5000):
    """Connect c and start its reader; returns the reader task."""
    await c.connect(timeout_ms)
    return asyncio.create_task(c.run())


async def stop(c, task):
    c.close()
    try:
        await task
    except (Exception, asyncio.CancelledError):
        pass


async def until(pred, timeout_ms=5000, step_ms=20):
    """Wait until pred() is true; False on timeout."""
    t0 = ticks_ms()
    while not pred():
        if ticks_diff(ticks_ms(), t0) > timeout_ms:
            return False
        await sleep_ms(step_ms)
    return True


async def control(action):
    """Ask the pytest side to do something (e.g. 'broker2/stop'); returns the body."""
    from firmware import http

    r = await http.get(http_base() + "/control/" + action, timeout_ms=15000)
    try:
        body = b""
        while True:
            chunk = await r.read(256)
            if not chunk:
                break
            body += chunk
        assert r.status == 200, (r.status, body)
        return body
    finally:
        r.close()


async def serve(handle):
    """Start an asyncio TCP server on a free-looking loopback port: (server, port)."""
    for _ in range(30):
        port = 20000 + random.getrandbits(14)
        try:
            srv = await asyncio.start_server(handle, "127.0.0.1", port)
            return srv, port
        except OSError:
            pass
    raise OSError("no free port")


async def read_packet(reader):
    """Read one whole MQTT packet (for fake brokers): fixed header + body, as bytes."""
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    shift = 7
    lb = head[1]
    while lb & 0x80:
        b = await reader.readexactly(1)
        head += b
        lb = b[0]
        n |= (lb & 0x7F) << shift
        shift += 7
    return head + (await reader.readexactly(n) if n else b"")

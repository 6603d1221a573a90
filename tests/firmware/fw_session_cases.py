# firmware/session.py: backoff rules (deterministic) and reconnects through a real mosquitto.
# Plain asserts; runs under MicroPython and CPython.
# ruff: noqa: SIM105  (MicroPython has no contextlib)
import asyncio

import fwtest

from firmware.mqtt import MQTTClient, sleep_ms
from firmware.session import Session


class AlwaysUp:
    def is_up(self):
        return True

    async def up(self):
        return


class SwitchLink:
    def __init__(self):
        self.ev = asyncio.Event()
        self.waits = 0

    def is_up(self):
        return self.ev.is_set()

    async def up(self):
        self.waits += 1
        await self.ev.wait()


class Stop(Exception):
    pass


def fixed(value):
    return lambda bits: value


def test_backoff_ceilings_and_full_jitter_bounds():
    s = Session(None, AlwaysUp(), None, rand=fixed(0xFFFF))
    ceilings = [s.ceiling_ms(i) for i in range(10)]
    assert ceilings == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000], ceilings
    assert s.ceiling_ms(500) == 60000  # no overflow however long the outage
    top = [s.next_delay_ms() for _ in range(8)]
    assert top == [999, 1999, 3999, 7999, 15999, 31999, 59999, 59999], top
    assert s.initial_delay_ms() == 1999  # default initial jitter 0..2000 ms

    s = Session(None, AlwaysUp(), None, rand=fixed(0))
    assert [s.next_delay_ms() for _ in range(8)] == [0] * 8
    assert s.initial_delay_ms() == 0

    s = Session(None, AlwaysUp(), None, rand=fixed(0x8000))
    assert [s.next_delay_ms() for _ in range(3)] == [500, 1000, 2000]

    # the real random source: every delay inside [0, ceiling), and spread out
    s = Session(None, AlwaysUp(), None, backoff_min_ms=1000, backoff_max_ms=4000)
    delays = []
    for _ in range(200):
        s.attempt = 5  # at the 4 s cap
        delays.append(s.next_delay_ms())
    assert min(delays) >= 0 and max(delays) < 4000, (min(delays), max(delays))
    assert len(set(delays)) > 150  # jittered, not lockstep
    assert min(delays) < 1000 and max(delays) > 3000


class FakeClient:
    """Scripted client: connect() fails or succeeds; run() stays up for `up_ms` fake ms."""

    def __init__(self, world, ok, up_ms):
        self.world = world
        self.ok = ok
        self.up_ms = up_ms
        self.closed = False

    async def connect(self, timeout_ms=10000):
        if not self.ok:
            raise OSError(111, "refused")
        return False

    async def run(self):
        await sleep_ms(0)
        self.world.now += self.up_ms
        raise OSError(104, "lost")

    def close(self):
        self.closed = True


def test_backoff_loop_resets_after_stable_connection():
    async def main():
        class World:
            now = 0

        world = World()
        script = [(False, 0), (False, 0), (False, 0), (True, 61000), (True, 5000), (False, 0)]
        made = []
        delays = []
        connected = []

        def make_client():
            ok, up = script[len(made)]
            c = FakeClient(world, ok, up)
            made.append(c)
            return c

        async def on_connected(c):
            connected.append(c)

        async def fake_sleep(ms):
            delays.append(ms)
            world.now += ms
            await sleep_ms(0)
            if len(made) == len(script):
                raise Stop()

        s = Session(make_client, AlwaysUp(), on_connected, clock=lambda: world.now,
                    rand=fixed(0xFFFF), sleep=fake_sleep)
        try:
            await s.run()
        except Stop:
            pass
        # initial jitter, 3 failures (1 s, 2 s, 4 s ceilings), a 61 s connection resets the
        # backoff (1 s), a 5 s one does not (2 s), then a failure (4 s)
        assert delays == [1999, 999, 1999, 3999, 999, 1999, 3999], delays
        assert s.connects == 2 and len(connected) == 2
        assert s.failures == 6
        assert all(c.closed for c in made)
        assert not s.connected

    fwtest.run(main())


def test_publish_when_not_connected_raises_oserror():
    async def main():
        s = Session(None, AlwaysUp(), None)
        try:
            await s.publish("a/b", b"x")
        except OSError:
            pass
        else:
            raise AssertionError("publish without a connection must raise OSError")

    fwtest.run(main())


async def _stop(task, s):
    task.cancel()
    try:
        await task
    except (Exception, asyncio.CancelledError):
        pass
    if s.client is not None:
        s.client.close()


def _session(addr, prefix, link, births, got, sub_topic, initial_jitter_ms=100):
    host, port = addr
    cid = fwtest.uid(prefix)
    holder = []

    def make_client():
        c = MQTTClient(cid, host, port, keepalive=5, clean=False,
                       will=(sub_topic + "/state", b"offline", True, 1))
        c.on_message = lambda t, p: got.append((t, p))
        return c

    async def on_connected(c):
        await c.subscribe(sub_topic + "/cmd", qos=1)
        await c.publish(sub_topic + "/state", b"online", qos=1, retain=True)
        assert not holder[0].connected  # only once on_connected is done
        await holder[0].publish(sub_topic + "/hello", b"via-session", qos=1)  # allowed here
        births.append(c)

    s = Session(make_client, link, on_connected, backoff_min_ms=100, backoff_max_ms=400,
                initial_jitter_ms=initial_jitter_ms)
    holder.append(s)
    return s


def test_session_reconnects_after_broker_restart():
    async def main():
        base = fwtest.uid("node")
        births = []
        got = []
        s = _session(fwtest.broker2(), "sess", AlwaysUp(), births, got, base)
        task = asyncio.create_task(s.run())
        try:
            await fwtest.wait_ms(s.wait_connected(), 5000)
            assert s.connects == 1 and len(births) == 1, s.last_error
            first = s.client
            await s.publish(base + "/cmd", b"one", qos=1)
            assert await fwtest.until(lambda: (base + "/cmd", b"one") in got)

            await fwtest.control("broker2/stop")
            assert await fwtest.until(lambda: not s.connected, 5000)
            try:
                await s.publish(base + "/cmd", b"lost", qos=0)
            except OSError:
                pass
            else:
                raise AssertionError("publish while disconnected must raise OSError")
            await sleep_ms(500)  # a few failed attempts against the dead port
            assert s.failures >= 2, s.failures
            assert s.last_delay_ms < 400

            await fwtest.control("broker2/start")
            assert await fwtest.until(lambda: s.connects == 2, 8000), s.last_error
            assert len(births) == 2  # on_connected ran again: re-subscribed, birth re-sent
            assert s.client is not first
            await s.publish(base + "/cmd", b"two", qos=1)
            assert await fwtest.until(lambda: (base + "/cmd", b"two") in got)
        finally:
            await _stop(task, s)

    fwtest.run(main(), 40000)


def test_session_waits_for_link():
    async def main():
        base = fwtest.uid("link")
        births = []
        got = []
        link = SwitchLink()
        s = _session(fwtest.broker(), "link", link, births, got, base, initial_jitter_ms=0)
        task = asyncio.create_task(s.run())
        try:
            await sleep_ms(300)
            assert link.waits == 1 and s.connects == 0 and not s.connected
            link.ev.set()
            await fwtest.wait_ms(s.wait_connected(), 5000)
            assert s.connects == 1 and len(births) == 1, s.last_error
        finally:
            await _stop(task, s)

    fwtest.run(main())

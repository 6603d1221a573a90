# Keeps one MQTT connection alive across link and broker outages. docs/transport.md has the rules.
# Runs unchanged under MicroPython and CPython 3.11.
import asyncio
import errno
import random

from firmware.mqtt import MQTTError, sleep_ms, ticks_diff, ticks_ms

BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 60000
STABLE_MS = 60000  # a connection up this long resets the backoff
INITIAL_JITTER_MS = 2000
CONNECT_TIMEOUT_MS = 10000


def full_jitter(ceiling_ms, rand):
    """A delay uniform in [0, ceiling_ms), from 16 random bits."""
    if ceiling_ms <= 0:
        return 0
    return ceiling_ms * rand(16) // 65536


class Session:
    """Owns the connect / serve / back off loop for one MQTTClient at a time.

    make_client(): returns a fresh, unconnected MQTTClient (callbacks already set).
    link: has `async up()` (returns once the IP link is usable) and `is_up()`.
    on_connected(client): async; runs after every successful connect, while the client's
        reader is already going (so it may subscribe and publish with QoS 1).
    clock(): monotonic milliseconds (default ticks_ms); used to time connection uptime.
    rand(bits): random source like random.getrandbits, injectable for tests.
    sleep(ms): async sleep, injectable for tests (default asyncio sleep).
    """

    def __init__(self, make_client, link, on_connected, clock=None,
                 backoff_min_ms=BACKOFF_MIN_MS, backoff_max_ms=BACKOFF_MAX_MS,
                 stable_ms=STABLE_MS, initial_jitter_ms=INITIAL_JITTER_MS,
                 connect_timeout_ms=CONNECT_TIMEOUT_MS, rand=None, sleep=None):
        self.make_client = make_client
        self.link = link
        self.on_connected = on_connected
        self.clock = clock or ticks_ms
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.stable_ms = stable_ms
        self.initial_jitter_ms = initial_jitter_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.rand = rand or random.getrandbits
        self.sleep = sleep or sleep_ms
        self.client = None  # the current client, also while it is connecting
        self.connected = False  # connected and on_connected has completed
        self._live = False  # CONNACK received: publish() is allowed (also inside on_connected)
        self.connects = 0  # successful connects (on_connected completed)
        self.failures = 0  # failed connect attempts and lost connections
        self.attempt = 0  # consecutive failures since the last stable connection
        self.last_error = None
        self.last_delay_ms = 0
        self._event = asyncio.Event()

    # --- backoff -------------------------------------------------------------------------------
    def ceiling_ms(self, attempt):
        """Upper bound of the delay after `attempt` consecutive failures (0-based)."""
        c = self.backoff_min_ms
        while attempt > 0 and c < self.backoff_max_ms:
            c <<= 1
            attempt -= 1
        return c if c < self.backoff_max_ms else self.backoff_max_ms

    def next_delay_ms(self):
        """Delay before the next attempt: full jitter over the current ceiling."""
        d = full_jitter(self.ceiling_ms(self.attempt), self.rand)
        self.attempt += 1
        self.last_delay_ms = d
        return d

    def initial_delay_ms(self):
        return full_jitter(self.initial_jitter_ms, self.rand)

    # --- the loop ------------------------------------------------------------------------------
    async def run(self):
        """Loop forever: wait for the link, connect, serve, back off. Cancel to stop."""
        await self.sleep(self.initial_delay_ms())  # nodes that power up together spread out
        while True:
            if not self.link.is_up():
                await self.link.up()
                await self.sleep(self.initial_delay_ms())  # a cell comes back for all nodes at once
            up_ms = await self._serve_once()
            if up_ms is not None and up_ms > self.stable_ms:
                self.attempt = 0
            self.failures += 1
            await self.sleep(self.next_delay_ms())

    async def _serve_once(self):
        """One connection: returns how long it was up (ms), or None if it never came up."""
        client = self.make_client()
        self.client = client
        try:
            await client.connect(self.connect_timeout_ms)
        except (OSError, MQTTError) as e:
            self.last_error = e
            client.close()
            self.client = None
            return None
        t0 = self.clock()
        self._live = True
        reader = asyncio.create_task(client.run())
        try:
            await self.on_connected(client)
            self.connected = True
            self.connects += 1
            self._event.set()
            await reader
            self.last_error = OSError(errno.ECONNRESET, "connection ended")
        except Exception as e:  # link loss (OSError), refusal (MQTTError), on_connected bugs
            self.last_error = e
        finally:
            self.connected = False
            self._live = False
            self._event.clear()
            client.close()
            self.client = None
        if not reader.done():
            try:
                await reader  # close() stopped it; collect its end so nothing is left dangling
            except (Exception, asyncio.CancelledError):
                pass
        return ticks_diff(self.clock(), t0)

    async def wait_connected(self):
        while not self.connected:
            await self._event.wait()

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=10000):
        """Publish on the current connection; OSError when there is none.
        Allowed from on_connected too (the client is connected and its reader running)."""
        c = self.client
        if not self._live or c is None:
            raise OSError(errno.ENOTCONN, "not connected")
        await c.publish(topic, payload, qos, retain, timeout_ms)

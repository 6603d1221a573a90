"""Someone on the 4G path: a TCP relay between nodes and the headend that records every
byte both ways and, when told, flips bits in what it forwards."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from headend.nodes.broker import find_free_port


class OnPath:
    """Listens on 127.0.0.1:<port> and relays to 127.0.0.1:<target>.

    seen: everything that crossed, both directions. tamper: while true, once a direction
    carries TLS application data (a record of type 0x17), every chunk in it has one bit of
    its last byte flipped on its way: what an attacker who cannot read would try.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = find_free_port()
        self.tamper = False
        self.connections = 0
        self.tampered = 0
        self._seen = bytearray()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def seen(self) -> bytes:
        with self._lock:
            return bytes(self._seen)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _relay(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            down_w.close()
            return
        await asyncio.gather(self._pipe(down_r, up_w), self._pipe(up_r, down_w),
                             return_exceptions=True)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        application = False
        try:
            while data := await r.read(4096):
                with self._lock:
                    self._seen += data
                application = application or data[0] == 0x17
                if self.tamper and application:
                    data = data[:-1] + bytes([data[-1] ^ 0x01])
                    self.tampered += 1
                w.write(data)
                await w.drain()
        finally:
            w.close()

    def start(self) -> OnPath:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        def close() -> None:
            if self._server is not None:
                self._server.close()
            self._loop.stop()
        self._loop.call_soon_threadsafe(close)
        self._thread.join(5)


@contextmanager
def on_path(target: int) -> Iterator[OnPath]:
    relay = OnPath(target).start()
    try:
        yield relay
    finally:
        relay.stop()

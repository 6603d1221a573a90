"""The 4G modem's serial line on a Raspberry Pi: pyserial behind the port interface that
firmware/modem.py uses (``write(bytes)`` and ``async read() -> bytes``).

Reads are non-blocking: the serial fd is watched with the event loop's add_reader, and bytes are
only taken off the line by the coroutine that returns them. So a read cancelled by the driver's
timeout loses nothing, and no thread or unbounded queue is needed.
"""

from __future__ import annotations

import asyncio

import serial  # type: ignore[import-untyped]

MAX_READ = 256  # bytes per read(): the driver keeps lines of at most 256 bytes


class SerialPort:
    def __init__(
        self,
        device: str | serial.Serial,
        baudrate: int = 115200,
        max_read: int = MAX_READ,
        rtscts: bool = False,
    ) -> None:
        if isinstance(device, str):
            # timeout=0: read() returns what is there at once; write_timeout: a wedged line
            # (flow control held off) raises instead of hanging the event loop for ever.
            self._ser = serial.Serial(
                device, baudrate, timeout=0, write_timeout=2, rtscts=rtscts
            )
        else:
            self._ser = device
            self._ser.timeout = 0
        self._max = max_read

    @property
    def serial(self) -> serial.Serial:
        """The pyserial object, e.g. for pppd to be handed the device after CONNECT."""
        return self._ser

    def write(self, data: bytes) -> None:
        self._ser.write(data)

    async def read(self) -> bytes:
        """The bytes available (at least one); waits for as long as it takes."""
        while True:
            data: bytes = self._ser.read(self._max)
            if data:
                return data
            await self._readable()

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        fd = self._ser.fileno()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            loop.remove_reader(fd)

    def close(self) -> None:
        self._ser.close()

# The modem's UART as firmware/modem.py reads and writes it.
# ruff: noqa: UP031, SIM105, RUF006, RUF012  (MicroPython: %-formatting, no contextlib)
import asyncio


class UartPort:
    """The modem's UART in the shape firmware/modem.py wants: write(bytes), and `await read()`
    returning the bytes there are (at least one), through asyncio's stream polling."""

    def __init__(self, uart):
        self.uart = uart
        self._r = asyncio.StreamReader(uart)  # type: ignore[call-arg]

    def write(self, data):
        self.uart.write(data)

    async def read(self):
        while True:
            data = await self._r.read(256)
            if data:
                return data

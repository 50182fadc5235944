"""Helpers for New Era tests: virtual-time runs and a simulated line with a raw or driver client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar

from pumpctl.clock import LoopClock, run
from pumpctl.drivers.newera.bus import NewEraBus
from pumpctl.drivers.newera.codec import ETX, STX
from simulators.newera import NewEraSimulator, SimPumpConfig
from simulators.newera.embedded import memory_bus
from simulators.serve import memory_link

T = TypeVar("T")


def vrun(coro: Coroutine[Any, Any, T]) -> T:
    """Run on the virtual-time loop: sleeps and timeouts cost no wall time."""
    return run(coro, virtual=True)


class RawClient:
    """A host that writes raw bytes and reads whole reply frames (for byte-exact tests)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._buf = bytearray()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.sleep(0)

    async def frame(self, timeout: float = 1.0) -> bytes | None:
        """The next complete frame's raw bytes (STX..ETX), or None if none comes in time."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = self._split()
                    if raw is not None:
                        return raw
                    chunk = await self.reader.read(256)
                    if not chunk:
                        return None
                    self._buf += chunk
        except TimeoutError:
            return None

    def _split(self) -> bytes | None:
        buf = self._buf
        start = buf.find(bytes([STX]))
        if start < 0 or len(buf) < start + 2:
            return None
        if 0x30 <= buf[start + 1] <= 0x39:
            end = buf.find(bytes([ETX]), start)
            if end < 0:
                return None
            raw = bytes(buf[start:end + 1])
            del buf[:end + 1]
            return raw
        total = 1 + buf[start + 1]
        if len(buf) < start + total:
            return None
        raw = bytes(buf[start:start + total])
        del buf[:start + total]
        return raw

    async def ask(self, data: bytes, timeout: float = 1.0) -> bytes | None:
        await self.send(data)
        return await self.frame(timeout)


@contextlib.asynccontextmanager
async def raw_line(pumps: int | Sequence[SimPumpConfig] = 1, *, baud: int | None = None,
                   ack_power_up: bool = True) -> AsyncIterator[tuple[NewEraSimulator, RawClient]]:
    sim = NewEraSimulator(LoopClock(), pumps, baud=baud)
    async with sim:
        reader, writer = memory_link(sim)
        client = RawClient(reader, writer)
        if ack_power_up:
            for unit in sim.units:
                assert await client.ask(f"{unit.address}\r".encode()) == (
                    b"\x02" + f"{unit.address:02d}A?R".encode() + b"\x03")
        yield sim, client
        writer.close()


@contextlib.asynccontextmanager
async def driver_line(pumps: int | Sequence[SimPumpConfig] = 1, *, timeout_s: float = 1.0,
                      baud: int | None = None,
                      ) -> AsyncIterator[tuple[NewEraSimulator, NewEraBus]]:
    clock = LoopClock()
    sim = NewEraSimulator(clock, pumps, baud=baud)
    async with sim:
        bus = memory_bus(sim, clock=clock, timeout_s=timeout_s)
        try:
            yield sim, bus
        finally:
            await bus.close()

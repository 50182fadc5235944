"""The in-memory pipe to the simulator: handled at once, in order, never re-entered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pumpctl.clock import LoopClock
from pumpctl.clock import run as run_clock
from simulators.newera import NewEraSimulator
from simulators.serve import memory_transport


class Recorder(asyncio.Protocol):
    """Collects what the simulator sends; can answer a reply with another request."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.transport: asyncio.Transport | None = None
        self.answer: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        while self.answer and self.transport is not None:
            self.transport.write(self.answer.pop(0))


def test_reply_is_there_when_write_returns() -> None:
    async def main() -> None:
        async with NewEraSimulator(LoopClock(), 1) as sim:
            client = Recorder()
            transport = memory_transport(sim, client)
            transport.write(b"0VER\r")
            assert bytes(client.received) == b"\x0200A?R\x03"  # no await in between
            transport.write(b"0VER\r")
            assert client.received.endswith(b"\x0200SNE1000V3.928\x03")
            transport.close()
    run_clock(main(), virtual=True)


def test_writes_from_inside_a_delivery_wait_their_turn_and_keep_order() -> None:
    async def main() -> None:
        async with NewEraSimulator(LoopClock(), 1) as sim:
            client = Recorder()
            transport = memory_transport(sim, client)
            client.answer = [b"0RAT1", b"2.5MH\r"]  # one request in two chunks, from the callback
            transport.write(b"0\r")  # acknowledges the power-up alarm
            transport.write(b"0RAT\r")  # written after them: must not overtake them
            assert sim.unit(0).rate == (0.0, "MH")  # nothing re-entered the simulator
            await asyncio.sleep(0)
            assert sim.unit(0).rate == (12.5, "MH")
            assert client.received.endswith(b"\x0200S\x03\x0200S12.50MH\x03")
            transport.close()
    run_clock(main(), virtual=True)


def test_a_simulator_error_goes_to_the_loop_not_to_the_writer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        seen: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        async with NewEraSimulator(LoopClock(), 1) as sim:
            client = Recorder()
            transport = memory_transport(sim, client)

            def broken(token: int, data: bytes) -> None:
                raise RuntimeError("simulator bug")

            monkeypatch.setattr(sim, "receive", broken)
            transport.write(b"0VER\r")  # does not raise
            transport.close()
        return seen

    seen = run_clock(main(), virtual=True)
    assert [str(c.get("exception")) for c in seen] == ["simulator bug"]

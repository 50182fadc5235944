"""The bus fed straight from a transport (`LineProtocol`): replies are matched in the
transport's callback, early bytes and a lost connection are not missed."""

from __future__ import annotations

import asyncio

import pytest

from pumpctl.clock import LoopClock
from pumpctl.drivers.base import AlarmKind, PumpProtocolError, PumpTimeout
from pumpctl.drivers.newera.bus import LineProtocol, NewEraBus
from pumpctl.drivers.newera.codec import frame_safe
from simulators.faults import parse_fault
from simulators.newera import NewEraSimulator
from simulators.serve import memory_transport

from .conftest import vrun


class _Sent:
    """A transport stand-in that records what the bus writes."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def close(self) -> None:
        self.closed = True


def test_bytes_and_a_loss_before_attach_are_handed_over() -> None:
    async def main() -> None:
        protocol = LineProtocol()
        # An unsolicited safe-mode alarm packet, split across two reads, before the bus exists.
        packet = frame_safe(b"00A?T")
        protocol.data_received(packet[:5])
        protocol.data_received(packet[5:])
        protocol.connection_lost(None)
        bus = NewEraBus(None, _Sent(), clock=LoopClock(), protocol=protocol)
        seen: list[tuple[int, AlarmKind]] = []
        bus.add_alarm_listener(lambda address, alarm: seen.append((address, alarm.kind)))
        assert not bus.closed
        protocol.attach(bus)
        assert seen == [(0, AlarmKind.WATCHDOG)]
        assert bus.garbled == 0 and bus.stale_replies == 0
        assert bus.closed
        with pytest.raises(PumpProtocolError, match="connection closed"):
            await bus.transact(0, "", safe=False)
    vrun(main())


def test_reply_matched_in_the_callback_and_loss_fails_the_request() -> None:
    async def main() -> None:
        async with NewEraSimulator(LoopClock(), 1) as sim:
            protocol = LineProtocol()
            transport = memory_transport(sim, protocol)
            bus = NewEraBus.from_transport(transport, protocol, clock=LoopClock(),
                                           timeout_s=0.5)
            reply = await bus.transact(0, "VER", safe=False)
            assert reply.alarm is not None and reply.alarm.kind is AlarmKind.POWER_RESET
            reply = await bus.transact(0, "VER", safe=False)
            assert reply.data == "NE1000V3.928"
            assert bus._task is None  # no reader task on this path

            # The far end goes away while a request waits: it fails at once, not by timeout.
            sim.inject(parse_fault("drop-replies@0s:count=-1"))
            request = asyncio.ensure_future(bus.transact(0, "DIS", safe=False))
            await asyncio.sleep(0)
            protocol.connection_lost(ConnectionResetError("line dropped"))
            with pytest.raises(PumpProtocolError, match="connection lost: line dropped"):
                await request
            await bus.close()
    vrun(main())


def test_late_reply_is_dropped_not_taken_as_the_next_answer() -> None:
    async def main() -> None:
        protocol = LineProtocol()
        sent = _Sent()
        bus = NewEraBus.from_transport(sent, protocol, clock=LoopClock(), timeout_s=0.2)
        with pytest.raises(PumpTimeout):
            await bus.transact(0, "RAT", safe=False)
        protocol.data_received(b"\x0200S1.000MH\x03")  # the late answer to RAT
        assert bus.stale_replies == 1
        task = asyncio.ensure_future(bus.transact(0, "DIS", safe=False))
        await asyncio.sleep(0.3)  # the bus first waits one more timeout for stragglers
        protocol.data_received(b"\x0200SI1.000W0.000ML\x03")
        reply = await task
        assert reply.data == "I1.000W0.000ML"
        assert sent.data == [b"0RAT\r", b"0DIS\r"]
    vrun(main())

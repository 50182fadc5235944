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


async def _bus_that_gave_up_on_rat(timeout_s: float, *, caller_deadline_s: float | None = None,
                                   ) -> tuple[LineProtocol, _Sent, NewEraBus]:
    """A bus whose `RAT` request went unanswered: it timed out, or (with `caller_deadline_s`)
    the caller's own deadline cancelled it first. Its reply is still owed."""
    protocol = LineProtocol()
    sent = _Sent()
    bus = NewEraBus.from_transport(sent, protocol, clock=LoopClock(), timeout_s=timeout_s)
    if caller_deadline_s is None:
        with pytest.raises(PumpTimeout):
            await bus.transact(0, "RAT", safe=False)
    else:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(caller_deadline_s):
                await bus.transact(0, "RAT", safe=False)
    return protocol, sent, bus


def test_late_reply_is_dropped_not_taken_as_the_next_answer() -> None:
    async def main() -> None:
        protocol, sent, bus = await _bus_that_gave_up_on_rat(0.2)
        protocol.data_received(b"\x0200S1.000MH\x03")  # the late answer to RAT
        assert bus.stale_replies == 1
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        task = asyncio.ensure_future(bus.transact(0, "DIS", safe=False))
        await asyncio.sleep(0)
        # The owed reply has come, so the line is clear: DIS goes out without a quiet wait.
        assert sent.data == [b"0RAT\r", b"0DIS\r"]
        protocol.data_received(b"\x0200SI1.000W0.000ML\x03")
        reply = await task
        assert reply.data == "I1.000W0.000ML"
        assert loop.time() == t0
    vrun(main())


def test_without_the_late_reply_the_next_request_waits_one_more_timeout() -> None:
    async def main() -> None:
        protocol, sent, bus = await _bus_that_gave_up_on_rat(0.2)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        task = asyncio.ensure_future(bus.transact(0, "DIS", safe=False))
        await asyncio.sleep(0.1)
        assert sent.data == [b"0RAT\r"]  # still waiting for the straggler
        await asyncio.sleep(0.11)
        assert sent.data == [b"0RAT\r", b"0DIS\r"]
        assert loop.time() - t0 >= 0.2
        protocol.data_received(b"\x0200SI1.000W0.000ML\x03")
        assert (await task).data == "I1.000W0.000ML"
        assert bus.quiet_waits == 1
    vrun(main())


def test_cancelled_request_reply_is_not_taken_as_the_next_answer() -> None:
    """A caller's own deadline cancels a request in flight; its reply arrives later, while
    the next request would otherwise be waiting for an answer of its own."""
    async def main() -> None:
        # The caller's 0.3 s deadline is shorter than the bus's own 1 s timeout.
        protocol, sent, bus = await _bus_that_gave_up_on_rat(1.0, caller_deadline_s=0.3)
        task = asyncio.ensure_future(bus.transact(0, "DIS", safe=False))
        await asyncio.sleep(0.05)
        assert sent.data == [b"0RAT\r"]  # DIS holds back: RAT's answer is still owed
        protocol.data_received(b"\x0200S1.000MH\x03")  # ... and here it is: dropped
        await asyncio.sleep(0.001)  # a few loop turns, far less than the 1 s quiet period
        assert sent.data == [b"0RAT\r", b"0DIS\r"]
        assert bus.stale_replies == 1
        protocol.data_received(b"\x0200SI1.000W0.000ML\x03")
        assert (await task).data == "I1.000W0.000ML"
    vrun(main())


def test_cancelled_while_waiting_for_a_straggler_sends_nothing() -> None:
    async def main() -> None:
        protocol, sent, bus = await _bus_that_gave_up_on_rat(0.5)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await bus.transact(0, "DIS", safe=False)
        assert sent.data == [b"0RAT\r"]
        # The straggler is still expected by the next sender; it arrives and is dropped.
        task = asyncio.ensure_future(bus.transact(0, "VOL", safe=False))
        await asyncio.sleep(0)
        assert sent.data == [b"0RAT\r"]
        protocol.data_received(b"\x0200S1.000MH\x03")
        await asyncio.sleep(0.001)  # far less than what is left of the 0.5 s quiet period
        assert sent.data == [b"0RAT\r", b"0VOL\r"]
        protocol.data_received(b"\x0200S5.000ML\x03")
        assert (await task).data == "5.000ML"
    vrun(main())


def test_an_owed_reply_holds_back_only_requests_to_its_own_pump() -> None:
    """Replies name their pump: a dead pump on a shared line must not slow the others."""
    async def main() -> None:
        protocol, sent, bus = await _bus_that_gave_up_on_rat(0.5)  # pump 0 owes a reply
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        other = asyncio.ensure_future(bus.transact(1, "DIS", safe=False))
        await asyncio.sleep(0)
        assert sent.data == [b"0RAT\r", b"1DIS\r"]  # pump 1 is asked at once
        protocol.data_received(b"\x0201SI1.000W0.000ML\x03")
        assert (await other).data == "I1.000W0.000ML" and loop.time() == t0
        assert bus.quiet_waits == 0
        same = asyncio.ensure_future(bus.transact(0, "DIS", safe=False))
        await asyncio.sleep(0.1)
        assert sent.data[-1] == b"1DIS\r"  # pump 0 still owes its RAT reply
        # ... and waits for it off the line: pump 1 is asked meanwhile.
        meanwhile = asyncio.ensure_future(bus.transact(1, "VOL", safe=False))
        await asyncio.sleep(0)
        assert sent.data[-1] == b"1VOL\r"
        protocol.data_received(b"\x0201S5.000ML\x03")
        assert (await meanwhile).data == "5.000ML"
        # Pump 0's late reply arrives: dropped, and pump 0 is asked straight away.
        protocol.data_received(b"\x0200S1.000MH\x03")
        await asyncio.sleep(0.001)
        assert sent.data[-1] == b"0DIS\r" and bus.stale_replies == 1 and bus.quiet_waits == 1
        protocol.data_received(b"\x0200SI2.000W0.000ML\x03")
        assert (await same).data == "I2.000W0.000ML"
    vrun(main())


def test_a_reply_late_in_real_time_is_not_timed_out_by_virtual_time() -> None:
    """In virtual time, a reply crossing a real socket (or pty) may take longer in wall time
    than the loop's I/O grace on a busy host. Virtual time must not jump to the request's
    deadline while it is on its way: here the device answers 100 ms of real time late, well
    within the 1 s request timeout, and the request gets its answer (before the fix: a
    PumpTimeout, the pty flake of the HIL scenarios under load)."""
    import socket
    import threading

    from pumpctl.clock import LoopClock
    from pumpctl.clock import run as run_clock

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def device() -> None:
        conn, _ = server.accept()
        with conn:
            request = conn.recv(64)
            assert request == b"0\r"
            threading.Event().wait(0.1)  # slow kernel delivery, a loaded host
            conn.sendall(b"\x0200S\x03")

    thread = threading.Thread(target=device, daemon=True)
    thread.start()

    async def main() -> tuple[str, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        bus = NewEraBus.from_streams(reader, writer, clock=LoopClock(), timeout_s=1.0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            reply = await bus.transact(0, "", safe=False)
        finally:
            await bus.close()
        return reply.status, loop.time() - t0

    try:
        status, virtual_s = run_clock(main(), virtual=True)
    finally:
        thread.join(5)
        server.close()
    assert status == "S"
    assert virtual_s < 1.0  # answered before its deadline, not after a virtual jump past it

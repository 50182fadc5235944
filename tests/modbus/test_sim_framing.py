"""The Modbus simulator's wire: RTU frames (CRC, silence, split and glued requests,
broadcast), MBAP frames (per connection, split and glued, a bad header), and the wire faults
(exception replies, busy, silence, split and glued replies, the common reply faults)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from pumpctl.clock import LoopClock, run
from pumpctl.drivers.modbus.pumpmap import load_map
from simulators.modbus import ModbusSimulator
from simulators.modbus.faults import parse_modbus_fault
from simulators.modbus.wire import silence_s

from .rawclient import (
    client_of,
    crc16,
    exception_of,
    mbap,
    read,
    registers_of,
    rtu,
    write_register,
)

READ_STATE = read(4, 0, 2)  # generic: state and alarm (4, 1 at power-up)
ACK = write_register(8, 4)


def test_the_crc_is_the_standard_one() -> None:
    # The Modbus specification's own example: 02 07 -> CRC 41 12 (low byte first).
    assert crc16(bytes([0x02, 0x07])) == bytes([0x41, 0x12])
    # And a reply frame of the simulator checks with it.
    async def main() -> bytes:
        sim = ModbusSimulator(LoopClock(), load_map("generic"), framer="rtu")
        got: list[bytes] = []
        async with sim:
            token = sim.connect(got.append)
            sim.receive(token, rtu(1, READ_STATE))
        return b"".join(got)

    frame = run(main(), virtual=True)
    assert frame == rtu(1, bytes([4, 4, 0, 4, 0, 1]))


def test_rtu_a_damaged_frame_is_ignored_and_the_line_recovers_after_silence() -> None:
    async def main() -> None:
        async with client_of("generic", framer="rtu") as c:
            bad = bytearray(rtu(1, READ_STATE))
            bad[-1] ^= 0xFF
            c.writer.write(bytes(bad))
            assert await c.reply(timeout_s=0.5) is None
            # Bytes right behind a damaged frame (no silence) are ignored with it ...
            c.writer.write(bytes(bad) + rtu(1, READ_STATE))
            assert await c.reply(timeout_s=0.5) is None
            assert c.sim._rtu is not None and c.sim._rtu.bad_frames == 2
            # ... a request after t3.5 of silence is answered.
            assert registers_of(await c.ask(READ_STATE) or b"") == [4, 1]

    run(main(), virtual=True)


def test_rtu_a_frame_split_over_writes_is_answered_once() -> None:
    async def main() -> None:
        async with client_of("generic", framer="rtu") as c:
            frame = rtu(1, READ_STATE)
            for piece in (frame[:1], frame[1:3], frame[3:7], frame[7:]):
                c.writer.write(piece)
            assert registers_of(await c.reply() or b"") == [4, 1]
            assert await c.reply(timeout_s=0.5) is None

    run(main(), virtual=True)


def test_rtu_glued_frames_are_each_answered_in_order() -> None:
    async def main() -> None:
        async with client_of("generic", framer="rtu") as c:
            c.writer.write(rtu(1, ACK) + rtu(1, READ_STATE) + rtu(1, read(3, 8, 1)))
            assert await c.reply() == ACK
            assert registers_of(await c.reply() or b"") == [0, 0]
            assert registers_of(await c.reply() or b"") == [0]

    run(main(), virtual=True)


def test_rtu_a_partial_frame_then_silence_is_dropped() -> None:
    async def main() -> None:
        async with client_of("generic", framer="rtu", baud=19200) as c:
            c.writer.write(rtu(1, READ_STATE)[:5])
            assert await c.reply(timeout_s=0.2) is None
            assert registers_of(await c.ask(READ_STATE) or b"") == [4, 1]

    run(main(), virtual=True)


def test_rtu_silence_is_3_5_characters_with_a_floor() -> None:
    assert silence_s(9600) == pytest.approx(3.5 * 11 / 9600)
    assert silence_s(115200) == 0.00175 and silence_s(None) == 0.00175


def test_rtu_broadcast_is_carried_out_by_every_unit_and_answered_by_none() -> None:
    async def main() -> None:
        async with client_of("generic", framer="rtu", units=3) as c:
            c.writer.write(rtu(0, ACK))
            assert await c.reply(timeout_s=0.5) is None
            assert all(c.sim.pump(u).alarm is None for u in (1, 2, 3))
            c.writer.write(rtu(0, READ_STATE))  # a broadcast read: nobody answers
            assert await c.reply(timeout_s=0.5) is None

    run(main(), virtual=True)


def test_mbap_each_connection_is_its_own_conversation() -> None:
    async def main() -> None:
        sim = ModbusSimulator(LoopClock(), load_map("generic"))
        a: list[bytes] = []
        b: list[bytes] = []
        async with sim:
            ta, tb = sim.connect(a.append), sim.connect(b.append)
            # A split over two connections: each keeps its own half-frame.
            request = mbap(7, 1, READ_STATE)
            sim.receive(ta, request[:5])
            sim.receive(tb, mbap(9, 1, ACK)[:3])
            sim.receive(ta, request[5:])
            assert a == [mbap(7, 1, bytes([4, 4, 0, 4, 0, 1]))] and b == []
            sim.receive(tb, mbap(9, 1, ACK)[3:])
            assert b == [mbap(9, 1, ACK)]
            # Glued: two requests in one write, two replies with their own transaction ids.
            a.clear()
            sim.receive(ta, mbap(1, 1, READ_STATE) + mbap(2, 1, read(3, 8, 1)))
            assert a == [mbap(1, 1, bytes([4, 4, 0, 0, 0, 0])), mbap(2, 1, bytes([3, 2, 0, 0]))]
            # A header that is not Modbus (protocol id 1) is dropped with what it carried.
            a.clear()
            sim.receive(ta, struct.pack(">HHHB", 3, 1, 6, 1) + READ_STATE)
            assert a == []
            sim.receive(ta, mbap(4, 1, READ_STATE))
            assert len(a) == 1

    run(main(), virtual=True)


def test_exception_fault_answers_the_code_for_count_requests_and_does_nothing() -> None:
    async def main() -> None:
        async with client_of("generic", faults=["exception@10s:code=4,count=2"]) as c:
            assert registers_of(await c.ask(READ_STATE) or b"") == [4, 1]
            await asyncio.sleep(10)
            assert await c.ask(ACK) == bytes([0x86, 4])
            assert await c.ask(READ_STATE) == bytes([0x84, 4])
            assert registers_of(await c.ask(READ_STATE) or b"") == [4, 1]  # ack not done

    run(main(), virtual=True)


def test_busy_fault_answers_exception_6_for_its_span() -> None:
    async def main() -> None:
        async with client_of("generic", faults=["busy@5s:for=20s"]) as c:
            await asyncio.sleep(6)
            assert exception_of(await c.ask(READ_STATE)) == 6
            await asyncio.sleep(19.5)
            assert exception_of(await c.ask(READ_STATE)) is None

    run(main(), virtual=True)


@pytest.mark.parametrize("framer", ["rtu", "socket"])
def test_silence_fault_answers_nothing_for_its_span(framer: str) -> None:
    async def main() -> None:
        async with client_of("generic", framer=framer,
                             faults=["silence@5s:for=30s", "silence@60s"]) as c:
            await asyncio.sleep(5)
            assert await c.ask(ACK, timeout_s=2) is None
            assert c.sim.pump(1).alarm is not None  # not carried out either
            await asyncio.sleep(30)
            assert await c.ask(ACK) == ACK
            await asyncio.sleep(30)
            assert await c.ask(READ_STATE, timeout_s=60) is None  # for good

    run(main(), virtual=True)


@pytest.mark.parametrize("framer", ["rtu", "socket"])
def test_split_replies_arrive_in_two_pieces(framer: str) -> None:
    async def main() -> None:
        sim = ModbusSimulator(LoopClock(), load_map("generic"), framer=framer)  # type: ignore[arg-type]
        got: list[tuple[float, bytes]] = []
        async with sim:
            sim.inject(parse_modbus_fault("split-replies@0s:count=1,gap=5ms"))
            token = sim.connect(lambda data: got.append((sim.clock.monotonic(), data)))
            request = rtu(1, READ_STATE) if framer == "rtu" else mbap(1, 1, READ_STATE)
            sim.receive(token, request)
            await asyncio.sleep(0.1)
            assert len(got) == 2 and got[1][0] - got[0][0] == pytest.approx(0.005)
            whole = got[0][1] + got[1][1]
            expected = bytes([4, 4, 0, 4, 0, 1])
            assert whole == (rtu(1, expected) if framer == "rtu" else mbap(1, 1, expected))
            sim.receive(token, request)  # the next reply is whole again
            assert len(got) == 3

    run(main(), virtual=True)


def test_glued_replies_carry_another_units_answer_behind_their_own() -> None:
    async def main() -> None:
        async with client_of("generic", framer="rtu", faults=["glue-replies@0s"]) as c:
            c.writer.write(rtu(1, READ_STATE))
            await asyncio.sleep(0.01)
            data = c.reader._buffer  # everything that arrived in the one write
            reply = bytes([4, 4, 0, 4, 0, 1])
            assert bytes(data) == rtu(1, reply) + rtu(2, reply)

    run(main(), virtual=True)


@pytest.mark.parametrize("framer", ["rtu", "socket"])
def test_common_reply_faults_act_on_modbus_frames(framer: str) -> None:
    async def main() -> None:
        faults = ["drop-replies@0s:count=1", "corrupt-bytes@1s:count=1",
                  "delay-replies@2s:count=1,delay=3"]
        async with client_of("generic", framer=framer, faults=faults) as c:
            assert await c.ask(READ_STATE, timeout_s=0.5) is None  # dropped
            await asyncio.sleep(1)
            c.writer.write(c.frame(READ_STATE))
            await asyncio.sleep(0.01)
            damaged = bytes(c.reader._buffer)
            c.reader._buffer.clear()
            good = rtu(1, bytes([4, 4, 0, 4, 0, 1])) if framer == "rtu" else \
                mbap(c.tid, 1, bytes([4, 4, 0, 4, 0, 1]))
            assert len(damaged) == len(good) and damaged != good
            assert damaged[1] == good[1] ^ 0x40  # byte 1, XOR 0x40 (the fault's defaults)
            await asyncio.sleep(1)
            assert await c.ask(READ_STATE, timeout_s=2.5) is None  # late ...
            assert registers_of(await c.reply(timeout_s=1) or b"") == [4, 1]  # ... not lost

    run(main(), virtual=True)


def test_inbound_corruption_is_a_frame_the_pump_never_takes() -> None:
    async def main() -> None:
        async with client_of("generic", faults=["corrupt-bytes@0s:count=1,inbound=1"]) as c:
            assert await c.ask(ACK, timeout_s=0.5) is None
            assert c.sim.pump(1).alarm is not None
            assert await c.ask(ACK) == ACK

    run(main(), virtual=True)


def test_power_reset_silences_the_pump_while_off() -> None:
    async def main() -> None:
        async with client_of("generic", faults=["power-reset@1s:off=10s"]) as c:
            await c.ask(ACK)
            await asyncio.sleep(2)
            assert await c.ask(READ_STATE, timeout_s=1) is None
            await asyncio.sleep(10)
            assert registers_of(await c.ask(READ_STATE) or b"") == [4, 1]  # power reset again

    run(main(), virtual=True)

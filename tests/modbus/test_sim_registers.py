"""The Modbus simulator serves a map exactly as written: reads, gaps, exceptions 2 and 3,
word order, live values from the pump, the generic map's command word and watchdog.

Driven by a client made of bytes (rawclient.py), in memory and in virtual time."""

from __future__ import annotations

import asyncio
import struct

import pytest

from pumpctl.clock import run
from simulators.pump import SimPumpState

from .rawclient import (
    Client,
    client_of,
    exception_of,
    f32_words,
    read,
    registers_of,
    words_f32,
    write_coil,
    write_register,
    write_registers,
)

# The generic map (configs/modbus/generic.yaml, from docs of modbus-syringe.md).
HR_DIAMETER, HR_RATE, HR_VOLUME, HR_DIRECTION, HR_WATCHDOG, HR_COMMAND = 0, 2, 4, 6, 7, 8
IR_STATE, IR_ALARM, IR_RATE, IR_INFUSED, IR_WITHDRAWN, IR_MODEL = 0, 1, 2, 4, 6, 10
RUN, STOP, CLEAR, ACK = 1, 2, 3, 4


async def acknowledged(client: Client) -> None:
    """The pump comes up with its power-reset alarm (IR 1 = 1), acknowledged with command 4."""
    assert await client.read_words(4, IR_STATE, 2) == [4, 1]
    assert await client.ask(write_register(HR_COMMAND, ACK)) == write_register(HR_COMMAND, ACK)
    assert await client.read_words(4, IR_STATE, 2) == [0, 0]


def test_a_whole_documented_block_reads_in_one_request() -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            words = await c.read_words(4, 0, 12)
            assert len(words) == 12 and words[IR_MODEL] == 0x5043  # "PC"
            holding = await c.read_words(3, 0, 9)
            assert words_f32(holding[HR_DIAMETER:HR_DIAMETER + 2]) == pytest.approx(26.59)
            assert holding[HR_COMMAND] == 0

    run(main(), virtual=True)


@pytest.mark.parametrize(("fc", "address", "count"), [
    (4, 12, 1),  # just past the input registers
    (4, 11, 2),  # the last one and one past it
    (3, 9, 1),  # past the holding registers
    (3, 0, 10),
    (1, 1, 1),  # the only coil is 0
    (2, 0, 1),  # no discrete inputs at all
])
def test_addresses_outside_the_map_answer_exception_2(fc: int, address: int, count: int) -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            reply = await c.ask(read(fc, address, count))
            assert reply == bytes([fc | 0x80, 2])

    run(main(), virtual=True)


def test_writes_outside_the_map_or_to_read_only_registers_answer_exception_2() -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            assert exception_of(await c.ask(write_register(9, 1))) == 2
            assert exception_of(await c.ask(write_coil(1, True))) == 2
            # Input registers cannot be written at all: FC 6 addresses holding registers, so
            # HR 9 does not exist, and IR 0 is out of reach of any write function.
            assert exception_of(await c.ask(write_registers(9, [0, 0]))) == 2

    run(main(), virtual=True)


def test_bad_values_answer_exception_3_and_change_nothing() -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            await acknowledged(c)
            before = await c.read_words(3, 0, 9)
            for address, value in [(HR_DIAMETER, 100.0), (HR_DIAMETER, 0.05),
                                   (HR_RATE, -1.0), (HR_RATE, 5000.0), (HR_RATE, float("nan")),
                                   (HR_VOLUME, -2.0)]:
                reply = await c.write_f32(address, value)
                assert reply == bytes([0x90, 3]), (address, value, reply)
            for address, value in [(HR_DIRECTION, 2), (HR_COMMAND, 9), (HR_COMMAND, 0)]:
                assert await c.ask(write_register(address, value)) == bytes([0x86, 3])
            assert await c.read_words(3, 0, 9) == before
            # A rate the 26.59 mm syringe allows (its maximum is about 1699 mL/h) is taken.
            assert await c.write_f32(HR_RATE, 1500.0) == struct.pack(">BHH", 16, HR_RATE, 2)
            assert await c.read_f32(3, HR_RATE) == 1500.0

    run(main(), virtual=True)


def test_the_rate_above_what_the_diameter_allows_is_refused() -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            await acknowledged(c)
            assert exception_of(await c.write_f32(HR_DIAMETER, 4.699)) is None  # a 1 mL syringe
            assert exception_of(await c.write_f32(HR_RATE, 60.0)) == 3  # max ~53 mL/h there
            assert exception_of(await c.write_f32(HR_RATE, 50.0)) is None

    run(main(), virtual=True)


def test_half_a_float_is_refused_with_the_maps_error_code() -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            assert await c.ask(write_register(HR_RATE, 0x4120)) == bytes([0x86, 3])
            assert exception_of(await c.ask(write_registers(HR_RATE + 1, [0, 0]))) == 3
            assert exception_of(await c.ask(write_registers(HR_RATE, [0x4120]))) == 3

    run(main(), virtual=True)


def test_a_run_is_served_live_from_the_pump() -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            await acknowledged(c)
            assert exception_of(await c.write_f32(HR_RATE, 60.0)) is None
            assert exception_of(await c.write_f32(HR_VOLUME, 0.5)) is None
            assert await c.ask(write_register(HR_COMMAND, RUN)) == write_register(HR_COMMAND, RUN)
            assert await c.read_words(3, HR_COMMAND, 1) == [0]  # the command word reads 0
            assert (await c.read_words(4, IR_STATE, 1)) == [1]  # infusing
            assert await c.read_bits(1, 0) == [0]  # the `running` coil: storage (see docs)
            assert await c.read_f32(4, IR_RATE) == 60.0
            await asyncio.sleep(15)
            infused = await c.read_f32(4, IR_INFUSED)
            assert infused == pytest.approx(0.25, abs=0.01)
            assert infused == pytest.approx(c.sim.pump(1).counters_ml()[0], abs=1e-6)
            await asyncio.sleep(60)  # the volume limit (0.5 mL at 1 mL/min) stops it
            assert await c.read_words(4, IR_STATE, 1) == [0]
            assert await c.read_f32(4, IR_RATE) == 0.0
            assert await c.read_f32(4, IR_INFUSED) == pytest.approx(0.5, abs=0.005)
            assert await c.ask(write_register(HR_COMMAND, CLEAR)) is not None
            assert await c.read_f32(4, IR_INFUSED) == 0.0

    run(main(), virtual=True)


def test_withdrawing_is_the_direction_register() -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            await acknowledged(c)
            c.sim.pump(1).model.empty_syringe()
            await c.ask(write_register(HR_DIRECTION, 1))
            await c.write_f32(HR_RATE, 30.0)
            await c.ask(write_register(HR_COMMAND, RUN))
            assert await c.read_words(4, IR_STATE, 1) == [2]
            assert exception_of(await c.ask(write_register(HR_DIRECTION, 0))) == 3  # moving
            await asyncio.sleep(60)
            assert await c.read_f32(4, IR_WITHDRAWN) == pytest.approx(0.5, abs=0.01)
            await c.ask(write_register(HR_COMMAND, STOP))
            assert await c.read_words(4, IR_STATE, 1) == [0]

    run(main(), virtual=True)


def test_an_alarm_shows_its_number_and_blocks_a_run_until_acknowledged() -> None:
    async def main() -> None:
        async with client_of("generic", faults=["occlusion@20s"]) as c:
            await acknowledged(c)
            await c.write_f32(HR_RATE, 60.0)
            await c.ask(write_register(HR_COMMAND, RUN))
            await asyncio.sleep(600)
            assert await c.read_words(4, IR_STATE, 2) == [4, 2]  # alarm: stall/occlusion
            assert exception_of(await c.ask(write_register(HR_COMMAND, RUN))) == 3
            await c.ask(write_register(HR_COMMAND, ACK))
            assert await c.read_words(4, IR_STATE, 2) == [0, 0]

    run(main(), virtual=True)


def test_the_watchdog_register_stops_the_pump_with_alarm_3_after_silence() -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            await acknowledged(c)
            await c.write_f32(HR_RATE, 60.0)
            assert await c.ask(write_register(HR_WATCHDOG, 5)) is not None
            await c.ask(write_register(HR_COMMAND, RUN))
            for _ in range(5):  # requests every 4 s keep it alive
                await asyncio.sleep(4)
                assert await c.read_words(4, IR_STATE, 1) == [1]
            await asyncio.sleep(5.5)
            pump = c.sim.pump(1)
            assert not pump.moving
            assert await c.read_words(4, IR_STATE, 2) == [4, 3]
            assert await c.read_words(3, HR_WATCHDOG, 1) == [5]
            assert exception_of(await c.ask(write_register(HR_WATCHDOG, 0))) is None

    run(main(), virtual=True)


@pytest.mark.parametrize("order", ["big", "little"])
def test_floats_are_served_in_the_word_order_asked_for(order: str) -> None:
    async def main() -> None:
        async with client_of("generic", word_order=order) as c:
            await acknowledged(c)
            reply = await c.ask(write_registers(HR_RATE, f32_words(12.5, order)))
            assert exception_of(reply) is None
            assert c.sim.pump(1).rate_ml_h == 12.5
            raw = await c.read_words(3, HR_RATE, 2)
            assert raw == f32_words(12.5, order)
            # 12.5 is 0x41480000: big is [0x4148, 0x0000], little the words swapped.
            assert raw == ([0x4148, 0] if order == "big" else [0, 0x4148])

    run(main(), virtual=True)


@pytest.mark.parametrize(("pdu", "code"), [
    (read(3, 0, 0), 3),  # a count of 0
    (read(3, 0, 126), 3),  # past the standard's 125
    (bytes([43, 14, 1, 0]), 1),  # device identification: not served
    (bytes([8, 0, 0, 0, 0]), 1),  # diagnostics
    (bytes([0x41]), 1),  # no such function
    (struct.pack(">BHH", 5, 0, 0x1234), 3),  # a coil is 0xFF00 or 0x0000
])
def test_malformed_or_unserved_requests_answer_exceptions(pdu: bytes, code: int) -> None:
    async def main() -> None:
        async with client_of("generic") as c:
            reply = await c.ask(pdu)
            assert reply == bytes([pdu[0] | 0x80, code])

    run(main(), virtual=True)


def test_report_server_id_names_the_pump() -> None:
    async def main() -> None:
        async with client_of("vindum-vp", framer="socket") as c:
            reply = await c.ask(bytes([17]))
            assert reply is not None and reply[0] == 17
            assert reply[2:2 + reply[1] - 1] == b"Vindum VP / VIPR" and reply[-1] == 0xFF

    run(main(), virtual=True)


def test_two_pumps_answer_at_their_own_unit_ids() -> None:
    async def main() -> None:
        async with client_of("generic", units=2) as c:
            assert await c.ask(write_register(HR_COMMAND, ACK), unit=2) is not None
            other = await c.ask(read(4, IR_ALARM, 1), unit=2)
            assert other is not None and registers_of(other) == [0]
            assert await c.read_words(4, IR_ALARM, 1) == [1]  # unit 1 untouched
            assert await c.ask(read(4, 0, 1), unit=3, timeout_s=0.5) is None  # nobody there
            assert c.sim.pump(2).state is SimPumpState.STOPPED

    run(main(), virtual=True)

"""The Vindum and ISCO maps as the simulator serves them: Vindum's gaps, one-float rule,
command-response register, action coils and busy period; ISCO's unit and mode coils, run coil,
alarm coils and volume dispensed. A client made of bytes, in memory, in virtual time."""

from __future__ import annotations

import asyncio

import pytest

from pumpctl.clock import run
from simulators.faults import parse_fault

from .rawclient import (
    Client,
    client_of,
    exception_of,
    f32_words,
    read,
    write_coil,
    write_register,
    write_registers,
)

# Vindum VP (configs/modbus/vindum-vp.yaml)
V_DIRECTION, V_MODE, V_RATE, V_TARGET, V_RATE_UNIT, V_AUTO_RETURN = 0, 2, 5, 25, 30, 37
V_IR_RESPONSE, V_IR_RATE, V_IR_VOLUME = 0, 7, 13
V_START, V_START_VOLUME, V_STOP, V_CLEAR_ERRORS = 15, 9, 19, 30
V_DI_RUNNING = 0


async def vindum_ready(c: Client, rate_ml_h: float = 60.0) -> None:
    """What the driver does before a run: rate unit mL/h, manual mode, the rate."""
    for address, value in [(V_RATE_UNIT, 1), (V_MODE, 1)]:
        assert await c.ask(write_register(address, value)) == write_register(address, value)
        assert await c.read_words(4, V_IR_RESPONSE, 1) == [0]
    assert exception_of(await c.write_f32(V_RATE, rate_ml_h)) is None
    assert await c.read_words(4, V_IR_RESPONSE, 1) == [0]


@pytest.mark.parametrize("framer", ["rtu", "socket"])
def test_vindum_block_reads_answer_the_gaps_with_0(framer: str) -> None:
    async def main() -> None:
        async with client_of("vindum-vp", framer=framer) as c:
            holding = await c.read_words(3, 0, 46)  # what the field IOC reads
            inputs = await c.read_words(4, 0, 43)
            assert len(holding) == 46 and len(inputs) == 43
            assert holding[4] == holding[32] == inputs[22] == 0  # the documented gaps
            assert await c.read_words(3, 4, 1) == [0]
            assert exception_of(await c.ask(read(3, 46, 1))) == 2
            assert exception_of(await c.ask(read(4, 43, 1))) == 2
            assert exception_of(await c.ask(write_register(4, 1))) == 2  # a gap is not writable

    run(main(), virtual=True)


def test_vindum_fc16_writes_exactly_one_float() -> None:
    async def main() -> None:
        async with client_of("vindum-vp") as c:
            before = await c.read_words(3, 0, 46)
            two_floats = write_registers(V_RATE, f32_words(1.0) + f32_words(2.0))
            assert await c.ask(two_floats) == bytes([0x90, 3])  # (HR 5-8: a_rate, b_rate)
            assert await c.ask(write_registers(V_RATE, [0x3F80])) == bytes([0x90, 3])
            assert await c.ask(write_register(V_RATE, 0x3F80)) == bytes([0x86, 3])  # half
            assert await c.ask(write_registers(V_MODE, [1])) == bytes([0x90, 3])  # one u16
            coils = bytes([15, 0, 0, 0, 2, 1, 0b11])
            assert await c.ask(coils) == bytes([0x8F, 1])  # FC 15 is refused
            assert await c.read_words(3, 0, 46) == before
            assert exception_of(await c.write_f32(V_TARGET, 2.5)) is None
            assert c.sim.pump(1).volume_target_ml == 2.5

    run(main(), virtual=True)


def test_vindum_command_response_register_tells_each_write() -> None:
    async def main() -> None:
        async with client_of("vindum-vp") as c:
            # A start before the rate unit and mode are selected: taken at the Modbus level,
            # refused by the pump, which says why in IR 0.
            assert await c.ask(write_coil(V_START, True)) == write_coil(V_START, True)
            assert await c.read_words(4, V_IR_RESPONSE, 1) == [4]
            assert not c.sim.pump(1).moving
            await vindum_ready(c)
            # 1-9 s of auto return are refused (0 and 10-120 are valid): HR 37 max 120.
            assert await c.ask(write_register(V_AUTO_RETURN, 121)) == \
                write_register(V_AUTO_RETURN, 121)
            assert await c.read_words(4, V_IR_RESPONSE, 1) == [1]
            assert await c.read_words(3, V_AUTO_RETURN, 1) == [0]  # unchanged
            assert exception_of(await c.ask(write_register(V_AUTO_RETURN, 60))) is None
            assert await c.read_words(4, V_IR_RESPONSE, 1) == [0]
            assert await c.read_words(3, V_AUTO_RETURN, 1) == [60]

    run(main(), virtual=True)


def test_vindum_action_coils_start_and_stop_and_read_back_0() -> None:
    async def main() -> None:
        async with client_of("vindum-vp") as c:
            await vindum_ready(c)
            assert await c.ask(write_coil(V_START, True)) == write_coil(V_START, True)
            assert await c.read_words(4, V_IR_RESPONSE, 1) == [0]
            assert await c.read_bits(1, V_START) == [0]
            assert await c.read_bits(2, V_DI_RUNNING) == [1]
            await asyncio.sleep(30)
            assert await c.read_f32(4, V_IR_RATE) == 60.0
            assert await c.read_f32(4, V_IR_VOLUME) == pytest.approx(0.5, abs=0.01)
            assert await c.ask(write_coil(V_STOP, True)) is not None
            assert await c.read_bits(2, V_DI_RUNNING) == [0]
            assert await c.read_bits(1, V_STOP) == [0]

    run(main(), virtual=True)


def test_vindum_volume_mode_stops_at_its_target_and_a_plain_start_does_not() -> None:
    async def main() -> None:
        async with client_of("vindum-vp") as c:
            await vindum_ready(c)
            await c.write_f32(V_TARGET, 0.25)
            await c.ask(write_coil(V_START_VOLUME, True))
            await asyncio.sleep(60)
            pump = c.sim.pump(1)
            assert not pump.moving and pump.counters_ml()[0] == pytest.approx(0.25, abs=0.005)
            await c.ask(write_coil(V_START, True))
            await asyncio.sleep(60)
            assert pump.moving and pump.counters_ml()[0] == pytest.approx(1.25, abs=0.01)

    run(main(), virtual=True)


def test_vindum_is_busy_for_a_while_after_a_direction_change() -> None:
    async def main() -> None:
        async with client_of("vindum-vp") as c:
            assert await c.ask(write_register(V_DIRECTION, 1)) is not None  # no change
            assert exception_of(await c.ask(write_register(V_MODE, 1))) is None
            assert await c.ask(write_register(V_DIRECTION, 2)) == write_register(V_DIRECTION, 2)
            assert await c.ask(write_register(V_RATE_UNIT, 1)) == bytes([0x86, 6])
            assert await c.read_words(3, V_DIRECTION, 1) == [2]  # reads are answered
            await asyncio.sleep(29)
            assert exception_of(await c.ask(write_register(V_RATE_UNIT, 1))) == 6
            await asyncio.sleep(1.5)  # busy_after_direction_change_s: 30
            assert exception_of(await c.ask(write_register(V_RATE_UNIT, 1))) is None

    run(main(), virtual=True)


def test_vindum_shows_an_alarm_on_its_error_words_until_cleared() -> None:
    async def main() -> None:
        async with client_of("vindum-vp") as c:
            assert await c.read_words(4, 29, 2) == [0, 0]  # no power-up alarm to show
            await vindum_ready(c)
            c.sim.pump(1).apply(parse_fault("syringe-empty@0s"))
            await c.ask(write_coil(V_START, True))
            await asyncio.sleep(1)
            assert await c.read_words(4, 29, 2) == [0, 1]  # A errors latched: non-zero
            assert await c.read_bits(2, 4) == [0]  # not a safety-pressure error
            assert await c.ask(write_coil(V_CLEAR_ERRORS, True)) is not None
            assert await c.read_words(4, 29, 2) == [0, 0]

    run(main(), virtual=True)


# ISCO D (configs/modbus/isco-d.yaml)
I_RUN, I_CONST_FLOW, I_UNIT_ML_H, I_EMPTY, I_OVER_PRESSURE = 0, 13, 89, 110, 112
I_FLOW_SET, I_FLOW, I_DISPENSED = 12, 74, 148


def test_isco_runs_only_in_the_flow_unit_and_mode_selected() -> None:
    async def main() -> None:
        async with client_of("isco-d") as c:
            assert exception_of(await c.write_f32(I_FLOW_SET, 30.0)) is None
            assert await c.ask(write_coil(I_RUN, True)) == bytes([0x85, 3])  # not selected
            assert not c.sim.pump(1).moving
            for coil in (I_UNIT_ML_H, I_CONST_FLOW):
                assert await c.ask(write_coil(coil, True)) == write_coil(coil, True)
            assert await c.ask(write_coil(I_RUN, True)) == write_coil(I_RUN, True)
            assert await c.read_bits(1, I_RUN) == [1]
            assert await c.read_f32(3, I_FLOW) == 30.0
            await asyncio.sleep(120)
            assert await c.read_f32(3, I_DISPENSED) == pytest.approx(1.0, abs=0.01)
            assert await c.ask(write_coil(I_RUN, False)) == write_coil(I_RUN, False)
            assert await c.read_bits(1, I_RUN) == [0]
            assert await c.read_f32(3, I_FLOW) == 0.0
            assert exception_of(await c.ask(write_registers(72, [0, 0]))) == 2  # read-only

    run(main(), virtual=True)


@pytest.mark.parametrize(("fault", "coil"), [("syringe-empty@5s", I_EMPTY),
                                             ("occlusion@5s", I_OVER_PRESSURE)])
def test_isco_alarms_are_its_status_coils(fault: str, coil: int) -> None:
    async def main() -> None:
        async with client_of("isco-d", faults=[fault]) as c:
            for setup in (I_UNIT_ML_H, I_CONST_FLOW):
                await c.ask(write_coil(setup, True))
            await c.write_f32(I_FLOW_SET, 60.0)
            await c.ask(write_coil(I_RUN, True))
            assert await c.read_bits(1, 109, 6) == [0] * 6
            await asyncio.sleep(600)
            bits = await c.read_bits(1, 109, 6)
            assert bits == [int(109 + i == coil) for i in range(6)]
            assert await c.read_bits(1, I_RUN) == [0]
            # No acknowledge on this pump: the alarm clears when a run is asked for again
            # (and comes back if its cause is still there).
            assert await c.ask(write_coil(I_RUN, True)) == write_coil(I_RUN, True)

    run(main(), virtual=True)


def test_isco_reads_its_documented_blocks_whole() -> None:
    async def main() -> None:
        async with client_of("isco-d") as c:
            assert len(await c.read_bits(1, 0, 142)) == 142
            assert len(await c.read_words(3, 0, 100)) == 100
            assert len(await c.read_words(3, 100, 62)) == 62  # 156-161: an undocumented tail
            assert len(await c.read_words(3, 200, 46)) == 46
            assert exception_of(await c.ask(read(3, 162, 1))) == 2
            assert exception_of(await c.ask(read(4, 0, 1))) == 2  # no input registers

    run(main(), virtual=True)

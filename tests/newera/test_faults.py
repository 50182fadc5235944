"""Each fault injection, and what the driver makes of it (virtual time, in-memory link)."""

from __future__ import annotations

import asyncio

import pytest

from pumpctl.clock import LoopClock
from pumpctl.drivers.base import (
    Alarm,
    AlarmKind,
    PumpAlarmError,
    PumpChecksumError,
    PumpProtocolError,
    PumpState,
    PumpTimeout,
)
from simulators.faults import Fault, FaultKind, parse_fault
from simulators.newera.embedded import embedded_newera
from simulators.physics import StallReason

from .conftest import driver_line, vrun


async def _running(d: object, rate: float = 52.5) -> None:
    from pumpctl.drivers.newera.driver import NewEraDriver

    assert isinstance(d, NewEraDriver)
    await d.set_rate(rate)
    await d.run()


def test_occlusion_builds_pressure_then_stall_alarm() -> None:
    async def main() -> None:
        faults = [parse_fault("occlusion@10m")]
        async with embedded_newera(LoopClock(), faults=faults) as (sim, d):
            await _running(d)
            await asyncio.sleep(599)
            assert (await d.status()).alarm is None
            pressure_before = sim.pump(0).model.pressure_kpa
            await asyncio.sleep(20)
            assert sim.pump(0).model.pressure_kpa > pressure_before * 10  # building up
            assert (await d.status()).state is PumpState.INFUSING
            await asyncio.sleep(60)  # 0.48 mL into a 0.004 mL/kPa line: stalls at 120 kPa
            status = await d.status()
            assert status.state is PumpState.ALARM
            assert status.alarm is not None and status.alarm.kind is AlarmKind.STALL
            assert sim.pump(0).model.stall is StallReason.OCCLUSION
            with pytest.raises(PumpAlarmError):
                await d.run()
    vrun(main())


def test_syringe_empty_stalls_the_motor() -> None:
    async def main() -> None:
        faults = [Fault(FaultKind.SYRINGE_EMPTY, 30.0)]
        async with embedded_newera(LoopClock(), faults=faults, safe_s=10) as (sim, d):
            seen: list[Alarm] = []
            d.add_alarm_listener(seen.append)
            await _running(d)
            await asyncio.sleep(31)
            # safe mode: the pump's own packet tells the driver before anyone asks
            assert seen and seen[0].kind is AlarmKind.STALL
            assert sim.pump(0).model.stall is StallReason.SYRINGE_EMPTY
            assert (await d.status()).alarm is not None
    vrun(main())


def test_drop_one_reply_is_retried_for_reads() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            sim.pump(0).apply(Fault(FaultKind.DROP_REPLIES, params={"count": 1}))
            assert (await d.dispensed()) == (0.0, 0.0)
            assert bus.requests >= 2
    vrun(main())


def test_dropped_replies_time_out() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            sim.pump(0).apply(Fault(FaultKind.DROP_REPLIES, params={"count": 2}))
            with pytest.raises(PumpTimeout, match="no reply from pump 0 to '0DIS'"):
                await d.dispensed()
            assert (await d.dispensed()) == (0.0, 0.0)  # and the line recovers
    vrun(main())


def test_dropped_reply_to_a_write_is_settled_by_read_back() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            await d.rate()
            sim.pump(0).apply(Fault(FaultKind.DROP_REPLIES, params={"count": 1}))
            sent_before = bus.requests
            assert await d.set_rate(12.5) == 12.5  # executed, only the answer was lost
            assert bus.requests - sent_before == 2  # RAT12.5MH once (no blind retry), then RAT
            assert sim.unit(0).rate == (12.5, "MH")
    vrun(main())


def test_delayed_replies_time_out_and_the_late_one_is_not_misread() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            sim.pump(0).apply(Fault(FaultKind.DELAY_REPLIES, params={"count": 2, "delay": 1.5}))
            with pytest.raises(PumpTimeout):
                await d.diameter()
            # the two late DIA replies arrive while nobody waits for them: dropped
            value, units = await d.volume_limit()
            assert (value, units.value) == (0.0, "ML")
            assert bus.stale_replies >= 1
    vrun(main())


def test_short_delay_within_timeout_is_harmless() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            sim.pump(0).apply(Fault(FaultKind.DELAY_REPLIES, params={"count": 3, "delay": 0.4}))
            assert await d.diameter() == 26.59
    vrun(main())


def test_corrupt_bytes_basic_mode_is_a_protocol_error() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            sim.pump(0).apply(Fault(FaultKind.CORRUPT_BYTES, params={"count": 2}))
            with pytest.raises(PumpProtocolError, match="length byte 0x70"):
                await d.diameter()
            assert await d.diameter() == 26.59
    vrun(main())


def test_corrupt_bytes_safe_mode_is_a_checksum_error() -> None:
    async def main() -> None:
        async with embedded_newera(LoopClock(), safe_s=30) as (sim, d):
            await d.stop_heartbeat()
            sim.pump(0).apply(Fault(FaultKind.CORRUPT_BYTES, params={"count": 2}))
            with pytest.raises(PumpChecksumError, match="CRC"):
                await d.diameter()
            sim.pump(0).apply(Fault(FaultKind.CORRUPT_BYTES, params={"count": 1}))
            assert await d.diameter() == 26.59  # one bad frame: the read is retried
    vrun(main())


def test_power_reset_stops_pump_and_raises_r_alarm() -> None:
    async def main() -> None:
        faults = [parse_fault("power-reset@90s:off=5s")]
        async with embedded_newera(LoopClock(), faults=faults) as (sim, d):
            await _running(d, 60)
            await asyncio.sleep(91)
            with pytest.raises(PumpTimeout):  # no power, no answer
                await d.dispensed()
            await asyncio.sleep(5)
            status = await d.status()
            assert status.alarm is not None and status.alarm.kind is AlarmKind.POWER_RESET
            assert status.infused_ml == 0.0  # the dispensed counter did not survive
            assert not sim.pump(0).model.running
            assert sim.pump(0).model.delivered_ml == pytest.approx(1.5, abs=0.01)
    vrun(main())


def test_stuck_motor_is_invisible_to_the_pump() -> None:
    async def main() -> None:
        faults = [Fault(FaultKind.STUCK_MOTOR, 0.0)]
        async with embedded_newera(LoopClock(), faults=faults) as (sim, d):
            await _running(d, 60)
            await asyncio.sleep(60)
            status = await d.status()
            # no error from the driver: the pump counts steps that move nothing. Only a
            # delivered-volume sensor (balance) or the pressure trend can tell.
            assert status.state is PumpState.INFUSING and status.alarm is None
            assert status.infused_ml == pytest.approx(1.0, abs=0.01)
            assert sim.pump(0).model.delivered_ml == 0.0
    vrun(main())


def test_free_flow_delivers_more_than_the_pump_counts() -> None:
    async def main() -> None:
        faults = [parse_fault("free-flow@0s:factor=1.5")]
        async with embedded_newera(LoopClock(), faults=faults) as (sim, d):
            await _running(d, 60)
            await asyncio.sleep(600)
            status = await d.status()
            assert status.alarm is None and status.infused_ml == pytest.approx(10.0, abs=0.01)
            assert sim.pump(0).model.delivered_ml == pytest.approx(15.0, rel=0.01)
    vrun(main())


def test_ignore_first_command_quirk_is_tolerated_at_open() -> None:
    async def main() -> None:
        faults = [Fault(FaultKind.IGNORE_FIRST, 0.0)]
        async with embedded_newera(LoopClock(), faults=faults) as (_, d):
            assert d.identity is not None and d.identity.model == "NE-1000"
    vrun(main())


def test_inject_times_count_from_simulator_start() -> None:
    async def main() -> None:
        async with embedded_newera(LoopClock()) as (sim, d):
            await _running(d, 60)
            await asyncio.sleep(10)
            sim.pump(0).inject(Fault(FaultKind.STUCK_MOTOR, 30.0))  # 30 s after start, not now
            await asyncio.sleep(40)
            # moved for about 30 s (less the start-up slack), then stuck
            assert sim.pump(0).model.delivered_ml == pytest.approx(0.5, abs=0.01)
            assert (await d.status()).infused_ml == pytest.approx(50 / 60, abs=0.01)
    vrun(main())


def test_corrupted_request_gets_com_and_is_a_checksum_error() -> None:
    async def main() -> None:
        async with embedded_newera(LoopClock(), safe_s=30) as (sim, d):
            fault = parse_fault("corrupt-bytes@0s:inbound=1,count=2")
            sim.pump(0).apply(fault)
            with pytest.raises(PumpChecksumError, match=r"\?COM"):
                await d.diameter()  # both attempts arrive damaged; the pump says so
            assert await d.diameter() == 26.59
    vrun(main())

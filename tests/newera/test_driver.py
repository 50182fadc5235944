"""NewEraDriver against the simulator over the in-memory link, in virtual time."""

from __future__ import annotations

import asyncio

import pytest

from pumpctl.clock import LoopClock
from pumpctl.drivers.base import (
    Alarm,
    AlarmKind,
    Direction,
    PumpAlarmError,
    PumpDriver,
    PumpNotApplicable,
    PumpOutOfRange,
    PumpState,
    ReadbackMismatch,
)
from pumpctl.drivers.newera import codec
from pumpctl.drivers.newera.codec import RateUnit
from simulators.newera import SimPumpConfig
from simulators.newera import unit as newera_unit
from simulators.newera.embedded import embedded_newera
from simulators.pump import PumpAlarm

from .conftest import driver_line, vrun


def test_open_identifies_and_takes_over_power_up_alarm() -> None:
    async def main() -> None:
        async with driver_line() as (_, bus):
            d = bus.pump(0)
            assert isinstance(d, PumpDriver)
            await d.open()
            assert d.identity is not None
            assert (d.identity.model, d.identity.firmware) == ("NE-1000", "3.928")
            assert d.alarm_at_open is not None and d.alarm_at_open.kind is AlarmKind.POWER_RESET
            assert d.alarm is None  # a pump found freshly powered is not an alarm of ours
            assert d.safe_s == 0
    vrun(main())


def test_every_setting_is_read_back() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            assert await d.set_diameter(14.0) == 14.0
            assert sim.pump(0).model.diameter_mm == 14.0
            assert await d.set_rate(0.1255) == pytest.approx(0.1255)  # needs µL/h
            assert sim.unit(0).rate == (125.5, "UH")
            assert await d.set_volume_limit(0.5) == pytest.approx(0.5)
            assert sim.unit(0).volume == (500.0, "UL")  # 14 mm and below: µL
            assert await d.set_volume_limit(35) == 35
            assert sim.unit(0).volume == (35.0, "ML")  # 35000 µL has too many digits
            assert await d.set_volume_limit(0.0005) == pytest.approx(0.0005)
            assert sim.unit(0).volume == (0.5, "UL")  # and back, to write it exactly
            assert await d.set_direction(Direction.WITHDRAW) is Direction.WITHDRAW
            assert await d.set_direction(Direction.INFUSE) is Direction.INFUSE
            assert await d.rate() == (pytest.approx(0.1255), RateUnit.UL_H)
    vrun(main())


def test_run_status_pause_stop_and_counters() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            await d.set_rate(60.0)
            await d.set_volume_limit(0)
            await d.run()
            await asyncio.sleep(600)
            status = await d.status()
            assert status.state is PumpState.INFUSING
            assert status.infused_ml == pytest.approx(10.0, abs=0.01)
            assert status.rate_ml_h == 60.0 and status.direction is Direction.INFUSE
            await d.set_rate(30.0)  # while running: at once, same units
            await asyncio.sleep(600)
            assert (await d.status()).infused_ml == pytest.approx(15.0, abs=0.01)
            await d.pause()
            assert (await d.status()).state is PumpState.PAUSED
            await d.stop()
            assert (await d.status()).state is PumpState.STOPPED
            assert not sim.pump(0).paused
            await d.clear_counters()
            assert await d.dispensed() == (0.0, 0.0)
    vrun(main())


def test_rate_units_cannot_change_while_running() -> None:
    async def main() -> None:
        async with driver_line() as (_, bus):
            d = bus.pump(0)
            await d.open()
            await d.set_rate(52.5)
            await d.run()
            with pytest.raises(PumpOutOfRange, match="units cannot change while pumping"):
                await d.set_rate(0.1255)
            await d.stop()
            assert await d.set_rate(0.1255) == pytest.approx(0.1255)
    vrun(main())


def test_error_replies_become_errors() -> None:
    async def main() -> None:
        async with driver_line() as (_, bus):
            d = bus.pump(0)
            await d.open()
            with pytest.raises(PumpOutOfRange, match=r"\?OOR"):
                await d.set_rate(1700)  # just above the 60 mL syringe's maximum
            with pytest.raises(PumpOutOfRange, match=r"outside 0\.1-80\.0"):
                await d.set_diameter(81)
            with pytest.raises(PumpOutOfRange, match="cannot be written"):
                await d.set_rate(1234.5)
            await d.set_rate(10)
            await d.run()
            with pytest.raises(PumpNotApplicable, match=r"\?NA"):
                await d.set_diameter(10)
            reply = await bus.transact(0, "XYZ", safe=False)
            assert isinstance(codec.error_for(reply, "XYZ"), codec.CommandNotRecognised)
            await d.stop()
    vrun(main())


def test_readback_mismatch_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def sloppy_diameter(unit: newera_unit.NewEraUnit, data: str) -> str:
        if not data:
            return newera_unit.show_number(unit.pump.diameter_mm)
        unit.pump.model.set_diameter(float(data) + 0.01)  # a pump that does not do as told
        return ""

    monkeypatch.setitem(newera_unit._HANDLERS, "DIA", sloppy_diameter)

    async def main() -> None:
        async with driver_line() as (_, bus):
            d = bus.pump(0)
            await d.open()
            with pytest.raises(ReadbackMismatch, match="diameter") as info:
                await d.set_diameter(20)
            assert info.value.read == "20.01 mm"
    vrun(main())


@pytest.mark.parametrize(("letter", "kind"), [
    ("S", AlarmKind.STALL), ("T", AlarmKind.WATCHDOG), ("R", AlarmKind.POWER_RESET),
    ("E", AlarmKind.PROGRAM_ERROR), ("O", AlarmKind.PHASE_OUT_OF_RANGE)])
def test_every_alarm_is_reported_and_sticky(letter: str, kind: AlarmKind) -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            await d.set_rate(10)
            await d.run()
            sim.unit(0).raise_alarm(letter)  # basic mode: no auto packet, seen on next reply
            status = await d.status()
            assert status.state is PumpState.ALARM
            assert status.alarm is not None and status.alarm.kind is kind
            with pytest.raises(PumpAlarmError):
                await d.run()  # refused until acknowledged
            with pytest.raises(PumpAlarmError):
                await d.set_rate(20)
            await d.stop()  # always allowed
            await d.acknowledge_alarm()
            assert (await d.status()).alarm is None
            await d.run()
            assert (await d.status()).state is PumpState.INFUSING
    vrun(main())


def test_alarm_reply_to_a_write_means_not_executed() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            await d.rate()  # units known: set_rate goes straight to RAT
            sim.unit(0).raise_alarm("S")
            with pytest.raises(PumpAlarmError, match="not executed"):
                await d.set_rate(33)
            assert sim.unit(0).rate[0] != 33
    vrun(main())


def test_watchdog_does_not_fire_while_driver_lives_and_fires_when_it_dies() -> None:
    async def main() -> None:
        clock = LoopClock()
        async with embedded_newera(clock, safe_s=3) as (sim, d):
            seen: list[Alarm] = []
            d.add_alarm_listener(seen.append)
            await d.set_rate(52.5)
            await d.run()
            await asyncio.sleep(600)  # ten minutes with nothing but the heartbeat
            assert d.heartbeats > 100
            assert [a for _, a in sim.pump(0).alarm_log] == ["power_reset"]
            assert sim.pump(0).model.running
            await d.stop_heartbeat()  # the controller hangs / dies
            await asyncio.sleep(3.5)
            assert not sim.pump(0).model.running
            assert [a for _, a in sim.pump(0).alarm_log] == ["power_reset", "watchdog"]
            # the pump's unsolicited packet reached the driver without a request
            assert seen and seen[0].kind is AlarmKind.WATCHDOG
            assert d.alarm is not None and d.alarm.kind is AlarmKind.WATCHDOG
            with pytest.raises(PumpAlarmError):
                await d.run()
            await d.acknowledge_alarm()
            await d.run()
            await d.stop()
    vrun(main())


def test_safe_mode_off_and_on_again() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            await d.set_watchdog(5)
            assert sim.unit(0).safe_mode and await d.watchdog() == 5
            await d.set_watchdog(0)
            assert not sim.unit(0).safe_mode and await d.watchdog() == 0
            with pytest.raises(PumpOutOfRange, match="0-255"):
                await d.set_watchdog(256)
    vrun(main())


def test_driver_finds_a_pump_left_in_safe_mode() -> None:
    async def main() -> None:
        async with driver_line([SimPumpConfig(safe_s=4)]) as (sim, bus):
            d = bus.pump(0)
            await d.open()  # its first (safe-framed) packet reaches it in either mode
            assert d.safe_s == 4
            await asyncio.sleep(60)
            assert "watchdog" not in [a for _, a in sim.pump(0).alarm_log]  # heartbeat started
    vrun(main())


def test_two_pumps_on_one_line() -> None:
    async def main() -> None:
        async with driver_line(2) as (sim, bus):
            a, b = bus.pump(0), bus.pump(1)
            await a.open()
            await b.open()
            await asyncio.gather(a.set_rate(60), b.set_rate(30))
            await asyncio.gather(a.run(), b.run())
            await asyncio.sleep(120)
            sa, sb = await asyncio.gather(a.status(), b.status())
            assert sa.infused_ml == pytest.approx(2.0, abs=0.01)
            assert sb.infused_ml == pytest.approx(1.0, abs=0.01)
            await a.stop()
            assert (await b.status()).state is PumpState.INFUSING
            assert not sim.pump(0).model.running and sim.pump(1).model.running
    vrun(main())


def test_paced_line_takes_wire_time() -> None:
    async def main() -> None:
        async with driver_line(baud=9600) as (_, bus):
            d = bus.pump(0)
            await d.open()
            start = bus.clock.monotonic()
            await d.dispensed()
            # b"0DIS\r" out, STX "00SI0.000W0.000ML" ETX back: 10 bits a byte at 9600 baud
            assert bus.clock.monotonic() - start == pytest.approx((5 + 19) * 10 / 9600)
    vrun(main())


def test_scan_finds_the_addresses_on_the_line() -> None:
    async def main() -> None:
        configs = [SimPumpConfig(address=3), SimPumpConfig(address=42)]
        async with driver_line(configs) as (_, bus):
            assert await bus.scan() == [3, 42]
    vrun(main())


def test_set_address_moves_the_pump() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            await d.set_address(7)
            assert d.address == 7 and sim.unit(7).address == 7
            assert await d.diameter() == 26.59  # now spoken to at 7
            with pytest.raises(PumpOutOfRange, match="address 100"):
                await d.set_address(100)
    vrun(main())


def test_stall_found_at_open_stays_sticky_but_power_up_does_not() -> None:
    async def main() -> None:
        async with driver_line(2) as (sim, bus):
            sim.pump(1).alarm = PumpAlarm.STALL  # left stalled before this session
            a, b = bus.pump(0), bus.pump(1)
            await a.open()
            await b.open()
            assert a.alarm is None and a.alarm_at_open is not None
            assert b.alarm is not None and b.alarm.kind is AlarmKind.STALL
            with pytest.raises(PumpAlarmError):
                await b.run()
            await b.acknowledge_alarm()
            await b.set_rate(5)
            await b.run()
            assert sim.pump(1).model.running
    vrun(main())


def test_watchdog_can_be_armed_whatever_the_alarm_state() -> None:
    async def main() -> None:
        async with driver_line() as (sim, bus):
            d = bus.pump(0)
            await d.open()
            sim.unit(0).raise_alarm("S")
            await d.set_watchdog(5)  # answered with the alarm, then sent again
            assert sim.pump(0).watchdog_s == 5 and d.safe_s == 5
            assert d.alarm is not None and d.alarm.kind is AlarmKind.STALL  # still ours to ack
    vrun(main())

"""The Modbus driver against the project's Modbus simulator, for each shipped map: in memory
and in virtual time (a whole delivery in no wall time), and as RTU over a real pty.

Per map: a delivery (rate, volume target where the map has one, direction, run, stop, status,
counters) and an alarm with its acknowledgement, as the controller will drive them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from pumpctl.clock import LoopClock, run
from pumpctl.drivers.base import (
    AlarmKind,
    Direction,
    PumpAlarmError,
    PumpNotApplicable,
    PumpState,
    RunOutline,
)
from pumpctl.drivers.modbus.driver import ModbusPumpDriver
from pumpctl.drivers.modbus.pumpmap import WordOrder, load_map
from pumpctl.drivers.open import open_driver
from simulators.modbus import ModbusSimulator
from simulators.modbus.embedded import embedded_modbus
from simulators.modbus.faults import parse_modbus_fault
from simulators.serve.pty import PtyServer

MAPS = ["generic", "vindum-vp", "isco-d"]
RATE = 60.0  # mL/h: 1 mL per minute


@contextlib.asynccontextmanager
async def sim_driver(map_name: str, *, faults: Sequence[str] = (),
                     word_order: str | None = None
                     ) -> AsyncIterator[tuple[ModbusSimulator, ModbusPumpDriver]]:
    """A simulated pump with `map_name` and an opened driver on a memory transport to it."""
    async with embedded_modbus(LoopClock(), map_name,
                               faults=[parse_modbus_fault(f) for f in faults],
                               word_order=None if word_order is None else WordOrder(word_order),
                               ) as (sim, driver):
        yield sim, driver


async def deliver(driver: ModbusPumpDriver, volume_ml: float) -> None:
    """What the controller does before a run: prepare, syringe, rate, cap, direction, zero."""
    await driver.prepare(RunOutline((RATE,), volume_ml))
    await driver.set_diameter(26.59)
    assert await driver.set_rate(RATE) == pytest.approx(RATE)
    if driver.capabilities.volume_cap is not None:
        assert await driver.set_volume_limit(volume_ml) == pytest.approx(volume_ml)
    assert await driver.set_direction(Direction.INFUSE) is Direction.INFUSE
    await driver.clear_counters()
    assert (await driver.status()).infused_ml == pytest.approx(0.0, abs=1e-6)
    await driver.run()


@pytest.mark.parametrize("map_name", MAPS)
def test_a_delivery_in_virtual_time(map_name: str) -> None:
    async def scenario() -> None:
        async with sim_driver(map_name) as (_, driver):
            await deliver(driver, 1.0)
            await asyncio.sleep(30)
            status = await driver.status()
            assert status.state is PumpState.INFUSING
            assert status.rate_ml_h == pytest.approx(RATE)
            assert status.infused_ml == pytest.approx(0.5, abs=0.02)
            assert status.direction is Direction.INFUSE and status.alarm is None
            if driver.capabilities.volume_cap is not None:
                await asyncio.sleep(60)  # the pump stops itself at its volume target
                status = await driver.status()
                assert status.state is PumpState.STOPPED
                assert status.infused_ml == pytest.approx(1.0, abs=0.01)
            await driver.stop()
            status = await driver.status()
            assert status.state is PumpState.STOPPED
            moved = status.infused_ml
            await asyncio.sleep(10)
            assert (await driver.status()).infused_ml == pytest.approx(moved)

    run(scenario(), virtual=True)


@pytest.mark.parametrize("map_name", MAPS)
def test_an_occlusion_alarm_and_its_acknowledgement(map_name: str) -> None:
    async def scenario() -> None:
        async with sim_driver(map_name, faults=["occlusion@20s:clear_after=30s"]) as (_, d):
            await deliver(d, 5.0)
            for _ in range(60):  # poll as the controller does, until the pump says so
                await asyncio.sleep(1)
                if (await d.status()).alarm is not None:
                    break
            status = await d.status()
            assert status.state is PumpState.ALARM and status.alarm is not None
            assert status.alarm.kind is AlarmKind.STALL
            with pytest.raises(PumpAlarmError):
                await d.run()  # refused until acknowledged
            await d.stop()
            await asyncio.sleep(60)  # the occlusion clears
            await d.acknowledge_alarm()
            assert (await d.status()).alarm is None
            await d.run()
            assert (await d.status()).state is PumpState.INFUSING
            await d.stop()

    run(scenario(), virtual=True)


def test_isco_cannot_withdraw_and_has_no_volume_target() -> None:
    async def scenario() -> None:
        async with sim_driver("isco-d") as (_, driver):
            with pytest.raises(PumpNotApplicable, match="cannot withdraw"):
                await driver.set_direction(Direction.WITHDRAW)
            with pytest.raises(PumpNotApplicable, match="no volume target"):
                await driver.set_volume_limit(1.0)

    run(scenario(), virtual=True)


@pytest.mark.parametrize("order", ["big", "little"])
def test_vindum_in_either_word_order(order: str) -> None:
    async def scenario() -> None:
        async with sim_driver("vindum-vp", word_order=order) as (_, driver):
            await deliver(driver, 0.25)
            await asyncio.sleep(30)
            status = await driver.status()
            assert status.state is PumpState.STOPPED  # volume mode: stopped at the target
            assert status.infused_ml == pytest.approx(0.25, abs=0.01)

    run(scenario(), virtual=True)


@pytest.mark.realtime
@pytest.mark.parametrize("map_name", MAPS)
def test_rtu_over_a_pty(map_name: str, tmp_path: Path) -> None:
    link_path = tmp_path / "pump"

    async def scenario() -> None:
        clock = LoopClock()
        sim = ModbusSimulator(clock, load_map(map_name), 1, framer="rtu")
        async with sim, PtyServer(sim, link_path):
            url = f"modbus+rtu://{link_path}?map={map_name}&timeout=0.5&baud=115200"
            async with open_driver(url, clock=clock) as driver:
                assert isinstance(driver, ModbusPumpDriver)
                await deliver(driver, 1.0)
                await asyncio.sleep(20)
                status = await driver.status()
                assert status.state is PumpState.INFUSING
                assert status.infused_ml == pytest.approx(RATE * 20 / 3600, abs=0.02)
                await driver.stop()
                assert (await driver.status()).state is PumpState.STOPPED

    run(scenario(), virtual=True)

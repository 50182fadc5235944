"""A simulated Modbus pump and the project's own Modbus driver, in one process, in memory:
what `pumpctl run --sim isco-d` (or any map's name), the CI scenarios and the benchmarks run
on. The same as `simulators.newera.embedded`, for a register map instead of New Era."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from pumpctl.clock import Clock
from pumpctl.drivers.modbus.driver import ModbusPumpDriver
from pumpctl.drivers.modbus.line import ModbusLine
from pumpctl.drivers.modbus.link import DEFAULT_TIMEOUT_S, ModbusLink
from pumpctl.drivers.modbus.pumpmap import PumpMap, WordOrder, load_map
from simulators.modbus.faults import AnyFault
from simulators.modbus.simulator import Framer, ModbusSimulator, UnitConfig
from simulators.physics import PhysicsParams
from simulators.pump import PumpSetup
from simulators.serve.memory import memory_transport


def memory_line(sim: ModbusSimulator, *, clock: Clock | None = None,
                timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = 1) -> ModbusLine:
    """A `ModbusLine` on a memory transport to `sim`, framed as the simulator frames."""
    link = ModbusLink(sim.framer, clock=clock, timeout_s=timeout_s, retries=retries)
    memory_transport(sim, link)
    return ModbusLine(link, sim.map)


@contextlib.asynccontextmanager
async def embedded_modbus(clock: Clock, pump_map: PumpMap | str, *,
                          diameter_mm: float = 26.59, faults: Sequence[AnyFault] = (),
                          watchdog_s: int = 0, syringe_volume_ml: float = 60.0,
                          capacity_ml: float = 60.0, framer: Framer | None = None,
                          word_order: WordOrder | None = None, baud: int | None = None,
                          timeout_s: float = DEFAULT_TIMEOUT_S,
                          physics: PhysicsParams | None = None,
                          ) -> AsyncIterator[tuple[ModbusSimulator, ModbusPumpDriver]]:
    """An in-process simulated pump serving `pump_map` (a map or its name) and an opened
    driver talking to it in memory. With `watchdog_s` > 0 (and a map that has a watchdog)
    the driver arms it at open. Faults are scheduled relative to the simulator's start."""
    if isinstance(pump_map, str):
        pump_map = load_map(pump_map)
    setup = PumpSetup(diameter_mm=diameter_mm, capacity_ml=capacity_ml,
                      syringe_volume_ml=syringe_volume_ml,
                      physics=physics if physics is not None else PhysicsParams())
    unit = pump_map.line.unit or 1
    sim = ModbusSimulator(clock, pump_map, [UnitConfig(unit, setup)], framer=framer,
                          word_order=word_order, baud=baud)
    async with sim:
        for fault in faults:
            sim.inject(fault)
        line = memory_line(sim, clock=clock, timeout_s=timeout_s)
        driver = line.pump(unit, watchdog_s=watchdog_s if watchdog_s else None)
        try:
            await driver.open()
            yield sim, driver
        finally:
            await line.close()

"""A simulated New Era pump and the project's own New Era driver, in one process, in memory:
what `pumpctl run --sim`, the CI scenarios and the benchmarks run on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from pumpctl.clock import Clock
from pumpctl.drivers.newera.bus import DEFAULT_TIMEOUT_S, LineProtocol, NewEraBus
from pumpctl.drivers.newera.driver import NewEraDriver
from simulators.faults import Fault
from simulators.newera.simulator import NewEraSimulator
from simulators.newera.unit import SimPumpConfig
from simulators.serve.memory import memory_transport


def memory_bus(sim: NewEraSimulator, *, clock: Clock | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = 1) -> NewEraBus:
    """A `NewEraBus` on a memory transport to `sim`, reading replies as they are sent."""
    protocol = LineProtocol()
    transport = memory_transport(sim, protocol)
    return NewEraBus.from_transport(transport, protocol, clock=clock, timeout_s=timeout_s,
                                    retries=retries)


@contextlib.asynccontextmanager
async def embedded_newera(clock: Clock, *, diameter_mm: float = 26.59,
                          faults: Sequence[Fault] = (), safe_s: int = 0,
                          syringe_volume_ml: float = 60.0, capacity_ml: float = 60.0,
                          baud: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                          ) -> AsyncIterator[tuple[NewEraSimulator, NewEraDriver]]:
    """An in-process simulated pump and an opened `NewEraDriver` talking to it in memory.

    What `pumpctl run --sim` and the CI scenarios use. With `safe_s` > 0 the watchdog is armed
    and the driver's heartbeat runs. Faults are scheduled relative to the simulator's start.
    """
    config = SimPumpConfig(diameter_mm=diameter_mm, capacity_ml=capacity_ml,
                           syringe_volume_ml=syringe_volume_ml)
    sim = NewEraSimulator(clock, [config], baud=baud)
    async with sim:
        for fault in faults:
            sim.inject(fault)
        bus = memory_bus(sim, clock=clock, timeout_s=timeout_s)
        driver = bus.pump(0, safe_s=safe_s if safe_s else None)
        try:
            await driver.open()
            yield sim, driver
        finally:
            await bus.close()

"""The simulator kinds `pumpctl run --sim` can build, registered in pumpctl.drivers.open.

A kind builds an embedded simulated pump on the run's clock, its driver opened over an
in-memory line, and a delivered-volume sensor reading the simulator's physics (so stuck motor
and free flow, invisible to the pump's own counter, are seen as on a rig with a balance).
`newera` is the New Era simulator (the default); each Modbus register map of configs/modbus
(`generic`, `isco-d`, `vindum-vp`, and any a lab adds) is a kind of its own: the Modbus
simulator serving that map, driven by the Modbus driver.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from pumpctl.drivers.open import EmbeddedPump, SimulatedSetup, SimulatorKind, register_simulator
from pumpctl.drivers.sensors import ModelBalance
from simulators.physics import PhysicsParams


def _check_faults(texts: Sequence[str]) -> None:
    from simulators.faults import parse_faults

    parse_faults(list(texts), pumps=1)  # the embedded simulator has one pump, address 0


@contextlib.asynccontextmanager
async def _newera(setup: SimulatedSetup) -> AsyncIterator[EmbeddedPump]:
    from simulators.faults import parse_faults
    from simulators.newera.embedded import embedded_newera

    faults = parse_faults(list(setup.faults), pumps=1)
    if setup.physics is not None and not isinstance(setup.physics, PhysicsParams):
        raise TypeError(f"newera simulator physics must be PhysicsParams, not "
                        f"{type(setup.physics).__name__}")
    contents = setup.capacity_ml if setup.contents_ml is None else setup.contents_ml
    async with embedded_newera(setup.clock, diameter_mm=setup.diameter_mm, faults=faults,
                               capacity_ml=setup.capacity_ml, syringe_volume_ml=contents,
                               physics=setup.physics) as (sim, driver):
        model = sim.pump(0).model
        yield EmbeddedPump(driver, ModelBalance(model), lambda: model.delivered_ml)


def _check_modbus_faults(texts: Sequence[str]) -> None:
    from simulators.modbus.faults import parse_modbus_faults

    parse_modbus_faults(list(texts), units=[1])  # the embedded simulator: one pump, unit 1


def _modbus(map_name: str) -> Callable[[SimulatedSetup],
                                       contextlib.AbstractAsyncContextManager[EmbeddedPump]]:
    @contextlib.asynccontextmanager
    async def start(setup: SimulatedSetup) -> AsyncIterator[EmbeddedPump]:
        from pumpctl.drivers.modbus.pumpmap import load_map
        from simulators.modbus.embedded import embedded_modbus
        from simulators.modbus.faults import parse_modbus_faults

        pump_map = load_map(map_name)
        faults = parse_modbus_faults(list(setup.faults), units=[pump_map.line.unit or 1])
        if setup.physics is not None and not isinstance(setup.physics, PhysicsParams):
            raise TypeError(f"modbus simulator physics must be PhysicsParams, not "
                            f"{type(setup.physics).__name__}")
        contents = setup.capacity_ml if setup.contents_ml is None else setup.contents_ml
        async with embedded_modbus(setup.clock, pump_map, diameter_mm=setup.diameter_mm,
                                   faults=faults, capacity_ml=setup.capacity_ml,
                                   syringe_volume_ml=contents,
                                   physics=setup.physics) as (sim, driver):
            model = sim.pump(sim.first_unit).model
            yield EmbeddedPump(driver, ModelBalance(model), lambda: model.delivered_ml)

    return start


def register() -> None:
    from pumpctl.drivers.modbus.pumpmap import map_names

    register_simulator(SimulatorKind("newera", _check_faults, _newera))
    for name in map_names():
        if name != "newera":  # a map may not take the New Era simulator's name
            register_simulator(SimulatorKind(name, _check_modbus_faults, _modbus(name)))

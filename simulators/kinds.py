"""The simulator kinds `pumpctl run --sim` can build, registered in pumpctl.drivers.open.

A kind builds an embedded simulated pump on the run's clock, its driver opened over an
in-memory line, and a delivered-volume sensor reading the simulator's physics (so stuck motor
and free flow, invisible to the pump's own counter, are seen as on a rig with a balance).
`newera` is the New Era simulator; another protocol adds its kind here the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

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


def register() -> None:
    register_simulator(SimulatorKind("newera", _check_faults, _newera))

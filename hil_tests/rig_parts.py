"""The parts of a rig, opened for one test: pump drivers, a volume sensor, a balance, and for
a simulated rig the simulator behind them.

A simulated rig builds its pumps through the HIL simulator kind (hil_tests/kinds.py), so a
test gets the protocol-free `SimulatedPump` for fault injection beside the product's driver,
reached over the link the rig names (memory, pty, TCP). A hardware rig opens its pump URLs
and balance URL through the product's registries (`pumpctl.drivers.open`,
`pumpctl.drivers.balance.open`), exactly as `pumpctl run --pump URL` would.

The volume sensor is what the controller checks the pump's counter against: the balance
when the rig has one, else (simulated rigs) the simulator's physics model, as in
`pumpctl run --sim`; a hardware rig without a balance has none.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from pumpctl.clock import LoopClock
from pumpctl.drivers.balance.driver import MtSicsBalance
from pumpctl.drivers.base import PumpDriver
from pumpctl.drivers.sensors import ModelBalance, VolumeSensor
from pumpctl.rig import Rig
from simulators.faults import Fault, parse_fault
from simulators.line import SimLine
from simulators.pump import PumpSetup, SimulatedPump

from .kinds import KINDS, SimKind


@dataclass
class SimHandle:
    """The simulator behind a simulated rig: its pumps, and faults to inject. Fault times
    count from when the simulator started (the start of the test)."""

    kind: SimKind
    line: SimLine
    count: int

    def pump(self, index: int = 0) -> SimulatedPump:
        return self.line.pump(self.kind.address(index))

    def inject(self, fault: str | Fault) -> Fault:
        """Schedule a fault (`occlusion@10m`, or a parsed `Fault`); `pump=N` in its text
        picks the Nth pump (default: the first)."""
        parsed = parse_fault(fault) if isinstance(fault, str) else fault
        self.line.inject(parsed)
        return parsed

    def load_syringe(self, index: int = 0, contents_ml: float | None = None) -> None:
        """A fresh syringe on pump `index` (full unless told): what a nurse does between
        two sessions of a course."""
        model = self.pump(index).model
        model.load_syringe(model.capacity_ml if contents_ml is None else contents_ml)


@dataclass
class RigParts:
    rig: Rig
    clock: LoopClock
    drivers: list[PumpDriver]
    urls: list[str]  # as journaled: the real URL, or `sim:KIND+LINK`
    watchdog_s: int | None  # what a real URL arms (`safe=N`); None for simulated pumps
    sensor: VolumeSensor | None = None
    balance: MtSicsBalance | None = None
    sim: SimHandle | None = None
    notes: list[str] = field(default_factory=list)


def hil_kind(rig: Rig) -> SimKind | str:
    """The HIL simulator kind a simulated rig names, or why there is none."""
    assert rig.pump.sim is not None
    kind = KINDS.get(rig.pump.sim)
    if kind is None:
        return (f"rig {rig.name}: simulator kind {rig.pump.sim!r} is not registered in "
                f"hil_tests/kinds.py (known: {', '.join(sorted(KINDS))})")
    return kind


@contextlib.asynccontextmanager
async def open_rig(rig: Rig, workdir: Path) -> AsyncIterator[RigParts]:
    """Everything the rig has, opened on the running loop (virtual or real); closed on exit,
    simulators last. Pumps are left as they are: stopping them is the controller's job."""
    clock = LoopClock()
    async with contextlib.AsyncExitStack() as stack:
        if rig.pump.sim is not None:
            parts = await _simulated(rig, clock, workdir, stack)
        else:
            parts = await _hardware(rig, clock, stack)
        if rig.balance is not None:
            parts.balance = await _balance(rig, parts, stack)
            spec = rig.balance
            parts.sensor = parts.balance.volume_sensor(spec.density.f,
                                                       spec.evaporation.f / 1000)
        yield parts


async def _simulated(rig: Rig, clock: LoopClock, workdir: Path,
                     stack: contextlib.AsyncExitStack) -> RigParts:
    kind = hil_kind(rig)
    assert isinstance(kind, SimKind), kind  # the plugin skips such tests before they start
    syringe = rig.syringe()
    contents = rig.pump.contents.f if rig.pump.contents else syringe.capacity_ml
    setup = PumpSetup(diameter_mm=syringe.inner_diameter_mm, capacity_ml=syringe.capacity_ml,
                      syringe_volume_ml=contents, physics=rig.physics())
    count, link = rig.pump.count, rig.pump.link
    line = await stack.enter_async_context(kind.build(clock, [setup] * count))
    workdir.mkdir(parents=True, exist_ok=True)
    drivers = await stack.enter_async_context(
        kind.open_drivers(line, clock, link, workdir, count, rig.pump.watchdog_s))
    handle = SimHandle(kind, line, count)
    return RigParts(rig, clock, list(drivers), [f"sim:{kind.name}+{link}"] * count, None,
                    sensor=ModelBalance(handle.pump(0).model), sim=handle)


async def _hardware(rig: Rig, clock: LoopClock, stack: contextlib.AsyncExitStack) -> RigParts:
    from pumpctl.drivers.open import open_driver, parse_pump_url

    targets = [parse_pump_url(url) for url in rig.pump.urls]
    drivers = [await stack.enter_async_context(open_driver(t, clock=clock)) for t in targets]
    return RigParts(rig, clock, drivers, rig.pump.urls, targets[0].watchdog_s)


async def _balance(rig: Rig, parts: RigParts, stack: contextlib.AsyncExitStack) -> MtSicsBalance:
    spec = rig.balance
    assert spec is not None
    if spec.simulated:
        from simulators.balance import embedded_balance

        if parts.sim is None:
            raise ValueError(f"rig {rig.name}: a simulated balance can only weigh a "
                             "simulated pump")
        model = parts.sim.pump(0).model
        _, balance = await stack.enter_async_context(
            embedded_balance(parts.clock, lambda: model.delivered_ml, spec.sim_config()))
        return balance
    from pumpctl.drivers.balance.open import open_balance

    return await stack.enter_async_context(open_balance(spec.url))

"""HIL scenarios: the controller against the New Era simulator, over the same bytes a real
pump speaks. By default everything runs in one process in virtual time; the pty variants put
a real pseudo-terminal between driver and simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from pumpctl.clock import Clock, LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.drivers.newera.driver import NewEraDriver
from pumpctl.drivers.sensors import ModelBalance
from pumpctl.journal import read_records
from pumpctl.plan.compile import compile_plan_file
from pumpctl.plan.program import RateProgram
from pumpctl.run.controller import InfusionController, RunResult
from simulators.faults import Fault
from simulators.newera import NewEraSimulator, SimPumpConfig
from simulators.serve import PtyServer, memory_bus

REPO = Path(__file__).resolve().parent.parent
PLANS_DIR = REPO / "configs" / "plans"
STANDARD_PLAN = PLANS_DIR / "ketamine-0.5mgkg-40min.yaml"
SEED_PLANS = sorted(PLANS_DIR.glob("*.yaml"))


def compile_seed(path: Path, weight_kg: float = 70.0) -> RateProgram:
    """Seed plans compile at 70 kg; those beyond a soft limit get a recorded override."""
    return compile_plan_file(path, weight_kg=weight_kg, override_reason="HIL seed-plan scenario")


@dataclass
class SimRun:
    result: RunResult
    records: list[dict[str, Any]]
    sim: NewEraSimulator
    infused_ml: float  # the simulated pump's own counter at the end
    delivered_ml: float  # what physically left the line (the physics model)
    running: bool

    def alarms(self) -> list[str]:
        return [r["kind"] for r in self.records if r["type"] == "alarm"]

    def states(self) -> list[str]:
        return [r["state"] for r in self.records if r["type"] == "state"]


@contextlib.asynccontextmanager
async def sim_driver(sim: NewEraSimulator, clock: Clock, link: str, tmp_path: Path,
                     *, safe_s: int | None = None) -> AsyncIterator[NewEraDriver]:
    """A driver for address 0 of `sim`, over the in-memory link or a real pty."""
    if link == "memory":
        bus = memory_bus(sim, clock=clock)
        try:
            driver = bus.pump(0, safe_s=safe_s)
            await driver.open()
            yield driver
        finally:
            await bus.close()
        return
    from pumpctl.drivers.open import open_driver

    path = tmp_path / "ne-pty"
    async with PtyServer(sim, path):
        url = f"newera://{path}" + (f"?safe={safe_s}" if safe_s else "")
        async with open_driver(url, clock=clock) as driver:
            yield driver


Hook = Callable[[NewEraSimulator, InfusionController], Awaitable[None]]


class Scenario(Protocol):
    """What the `scenario` fixture hands a test: `run_scenario` on one simulator kind."""

    def __call__(self, program: RateProgram, tmp_path: Path, *, link: str = ...,
                 faults: Sequence[Fault] = ..., sensor: bool = ..., poll_s: float = ...,
                 pump: SimPumpConfig | None = ..., during: Hook | None = ...,
                 safe_s: int | None = ...) -> SimRun: ...


def run_scenario(program: RateProgram, tmp_path: Path, *, link: str = "memory",
                 faults: Sequence[Fault] = (), sensor: bool = True, poll_s: float = 1.0,
                 pump: SimPumpConfig | None = None, during: Hook | None = None,
                 safe_s: int | None = None) -> SimRun:
    """Run `program` on a fresh simulated pump in virtual time and collect the evidence."""
    async def main() -> SimRun:
        clock = LoopClock()
        config = pump or SimPumpConfig(diameter_mm=program.syringe.inner_diameter_mm)
        async with NewEraSimulator(clock, [config]) as sim:
            for f in faults:
                sim.inject(f)
            async with sim_driver(sim, clock, link, tmp_path, safe_s=safe_s) as driver:
                model = sim.pump(0).model
                ctl = InfusionController(
                    driver, program, journal_dir=tmp_path / "runs", clock=clock,
                    poll_s=poll_s, volume_sensor=ModelBalance(model) if sensor else None,
                    pump_url=f"sim+{link}")
                task = asyncio.create_task(ctl.run())
                if during is not None:
                    await during(sim, ctl)
                result = await task
                return SimRun(result, read_records(result.journal_path), sim, model.infused_ml,
                              model.delivered_ml, model.running)

    return run_clock(main(), virtual=True)


@pytest.fixture
def scenario() -> Scenario:
    """Run a program on a fresh simulated pump (the New Era simulator); tests that take this
    fixture run unchanged on every simulator kind it is parametrised with."""
    return run_scenario


@pytest.fixture
def standard() -> RateProgram:
    return compile_seed(STANDARD_PLAN)

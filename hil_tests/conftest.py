"""HIL scenarios: the controller against a simulated pump, over the same bytes a real pump
speaks. By default everything runs in one process in virtual time; the pty and TCP variants
put a real pseudo-terminal or socket between driver and simulator.

Scenarios taking `sim_kind` run once per simulator kind (kinds.py; on the rig's kind only when
`--rig` names one): they build the simulator and its driver through the kind and touch only
the protocol-free pump behind it. Scenarios taking the rig's fixtures (`driver`,
`controller_factory`, `sim`, `measure`...) run on whatever the rig is: the pytest plugin
(plugin.py, registered here) loads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pumpctl.clock import LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.drivers.sensors import ModelBalance
from pumpctl.journal import read_records
from pumpctl.plan.compile import compile_plan_file
from pumpctl.plan.program import RateProgram
from pumpctl.run.controller import InfusionController, RunResult, RunSettings
from simulators.faults import Fault
from simulators.pump import PumpSetup, SimulatedPump

from .kinds import Link, SimKind

# The HIL plugin: --rig, --hil-report, the rig's fixtures, measurements (docs/hil.md). Named
# here, in an initial conftest, so that `pytest hil_tests --rig FILE` knows the option.
pytest_plugins = ["hil_tests.plugin"]

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
    pump: SimulatedPump  # the simulated pump the run drove
    infused_ml: float  # the simulated pump's own counter at the end
    delivered_ml: float  # what physically left the line (the physics model)
    running: bool

    def alarms(self) -> list[str]:
        return [r["kind"] for r in self.records if r["type"] == "alarm"]

    def states(self) -> list[str]:
        return [r["state"] for r in self.records if r["type"] == "state"]


Hook = Callable[[SimulatedPump, InfusionController], Awaitable[None]]


def run_scenario(kind: SimKind, program: RateProgram, tmp_path: Path, *, link: Link = "memory",
                 faults: Sequence[Fault] = (), sensor: bool = True, poll_s: float = 1.0,
                 setup: PumpSetup | None = None, during: Hook | None = None,
                 safe_s: int | None = None) -> SimRun:
    """Run `program` on a fresh simulated pump of `kind` in virtual time and collect the
    evidence. `during` runs beside the controller with the simulated pump in hand."""
    async def main() -> SimRun:
        clock = LoopClock()
        pump_setup = setup or PumpSetup(diameter_mm=program.syringe.inner_diameter_mm)
        async with kind.build(clock, [pump_setup]) as sim:
            for f in faults:
                sim.inject(f)
            pump = sim.pump(kind.address(0))
            async with kind.open_drivers(sim, clock, link, tmp_path, 1, safe_s) as (driver,):
                model = pump.model
                ctl = InfusionController(
                    driver, program, RunSettings(journal_dir=tmp_path / "runs", poll_s=poll_s,
                                                 pump_url=f"sim+{link}"),
                    clock=clock, volume_sensor=ModelBalance(model) if sensor else None)
                task = asyncio.create_task(ctl.run())
                if during is not None:
                    await during(pump, ctl)
                result = await task
                return SimRun(result, read_records(result.journal_path), pump,
                              model.infused_ml, model.delivered_ml, model.running)

    return run_clock(main(), virtual=True)


@pytest.fixture
def standard() -> RateProgram:
    return compile_seed(STANDARD_PLAN)


# Scenarios on the wall clock: separate processes, real ptys and sockets.
WALL_CLOCK_MODULES = ("test_signals", "test_kill", "test_port_owner")
# ...of which a reduced kind still runs these: no full kind covers them for its protocol (a
# Modbus pump whose own watchdog stops it after SIGKILL, so that the run can be resumed:
# isco-d has no watchdog; generic has one).
ON_EVERY_KIND = ("test_resume_after_sigkill_completes_the_plan",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A `reduced` kind runs the in-process scenarios only, and of the fault matrix its first
    minute (see kinds.py)."""
    for item in items:
        params = getattr(item, "callspec", None)
        values = params.params.values() if params is not None else ()
        kinds = [v for v in values if isinstance(v, SimKind)]
        kinds += [v[0] for v in values if isinstance(v, tuple) and v
                  and isinstance(v[0], SimKind)]
        if not any(k.reduced for k in kinds):
            continue
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        link = params.params.get("link") if params is not None else None
        moment = params.params.get("moment") if params is not None else None
        if getattr(item, "originalname", "") in ON_EVERY_KIND:
            continue
        if module in WALL_CLOCK_MODULES or link in ("pty", "tcp"):
            item.add_marker(pytest.mark.skip(
                reason="reduced kind (CI time): wall-clock scenarios run on newera and isco-d"))
        elif module == "test_fault_matrix" and (
                (moment is not None and moment[0] != "first-minute")
                or item.name.startswith("test_the_last_seconds")):
            item.add_marker(pytest.mark.skip(
                reason="reduced kind (CI time): the fault matrix's first minute only; every "
                       "moment runs on newera and isco-d"))

"""Every seed protocol end to end on the rig (issue 12: "Scenarios, every rig").

On the default simulated rig in virtual time (about a second a plan); on a bench in real time
(40-100 minutes a plan: the rig's `limits` skip what the bench may not be asked to do). What
each run delivered is recorded as measurements against the plan: by the pump's counter within
the pump's resolution, as a dose within that resolution's worth of drug, and by the volume
sensor (the rig's balance, else the simulator's physics) within the syringe pump's accuracy
class plus the sensor's own allowance. Each run's report is drawn into the evidence folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pumpctl.journal import read_records
from pumpctl.plan.compile import compile_plan_file
from pumpctl.plan.program import RateProgram
from pumpctl.rig import Rig
from pumpctl.safety import SafetyTolerances

from .conftest import SEED_PLANS
from .plugin import ControllerFactory, Measure, skip_beyond_limits


def compile_for_rig(plan: Path, rig: Rig, weight_kg: float = 70.0) -> RateProgram:
    """A seed plan for the syringe (and pump profile) the rig has; those beyond a soft limit
    get a recorded override, as in every HIL scenario."""
    return compile_plan_file(plan, weight_kg=weight_kg, syringe=rig.pump.syringe,
                             pump=rig.pump.profile, override_reason="HIL seed-plan scenario")


def volume_resolution(program: RateProgram, records: list[dict[str, Any]]) -> float:
    """The pump's counter step at the plan's total, as its driver declared it in the
    journal's header, or the plan's own volume resolution if coarser."""
    from pumpctl.drivers.base import NumberFormat, Resolution

    res = records[0]["pump_capabilities"]["counters"]["resolution"]
    digits = NumberFormat(**res["digits"]) if res.get("digits") else None
    step = Resolution(res["step_ml"], digits).at(program.total_volume_ml)
    return max(step, program.limits.volume_resolution_ml)


@pytest.fixture(params=SEED_PLANS, ids=[p.stem for p in SEED_PLANS])
def seed_program(request: pytest.FixtureRequest, rig: Rig) -> RateProgram:
    """The seed plan compiled for the rig; skipped before the rig is opened if it is
    beyond the rig's limits (it comes before `controller_factory` in the test's arguments)."""
    program = compile_for_rig(request.param, rig)
    skip_beyond_limits(rig, program)
    return program


async def test_seed_protocol_delivers_the_plan(rig: Rig, seed_program: RateProgram,
                                               controller_factory: ControllerFactory,
                                               measure: Measure) -> None:
    program = seed_program
    ctl = controller_factory(program, report=True)
    result = await ctl.run()
    records = read_records(result.journal_path)
    total, dose = program.total_volume_ml, program.total_dose_mg
    q = volume_resolution(program, records)
    measure("delivered volume", result.delivered_volume_ml, "mL", low=total - q, high=total + q)
    dose_q = q * program.concentration_mg_per_ml
    measure("delivered dose", result.delivered_dose_mg, "mg", low=dose - dose_q,
            high=dose + dose_q)
    sensed = records[-1].get("measured_volume_ml")
    if sensed is not None:
        tol = SafetyTolerances()
        allowance = tol.volume_rel * total + tol.sensor_abs_ml
        measure("measured volume", sensed, "mL", low=total - allowance, high=total + allowance)
    measure("duration", result.duration_s, "s", low=program.duration_s - rig.poll.f - 1.0,
            high=program.duration_s * 1.02 + rig.poll.f + 5.0)
    assert result.outcome == "completed", (result.reason, [a["kind"] for a in result.alarms])
    assert result.stop_confirmed

"""Rate programs built directly (not compiled from a plan file) for controller unit tests."""

from __future__ import annotations

from pumpctl.drivers.newera.capabilities import capabilities
from pumpctl.plan.program import (
    PlannedStep,
    ProgramLimits,
    RateProgram,
    Segment,
    SyringeInfo,
)

# A pump with a 4-digit display (the New Era profile's capabilities), for tests where the
# counter's resolution growing with the volume matters.
NEWERA = capabilities()


def make_program(steps: list[tuple[float, float]] | None = None, *, concentration: float = 1.0,
                 weight: float | None = 70.0, max_rate: float = 1000.0) -> RateProgram:
    """A program of constant-rate steps given as (duration_s, rate_ml_h)."""
    steps = steps or [(2400.0, 52.5)]
    planned, segments, t = [], [], 0.0
    for i, (dur, rate) in enumerate(steps):
        vol = rate * dur / 3600.0
        planned.append(PlannedStep(label=f"step{i}", start_s=t, duration_s=dur,
                                   dose_mg=vol * concentration, volume_ml=vol))
        segments.append(Segment(start_s=t, duration_s=dur, rate_ml_h=rate, volume_ml=vol))
        t += dur
    total = sum(s.volume_ml for s in planned)
    return RateProgram(
        plan="test-plan", drug="ketamine", library_name="test", library_version="0",
        weight_kg=weight, concentration_mg_per_ml=concentration,
        total_dose_mg=total * concentration, total_volume_ml=total, duration_s=t,
        syringe=SyringeInfo(id="bd60", name="BD 60 mL", inner_diameter_mm=26.59, capacity_ml=60.0),
        pump_profile="newera-ne1000", steps=planned, segments=segments,
        limits=ProgramLimits(max_rate_ml_h=max_rate, min_rate_ml_h=0.01,
                             max_total_volume_ml=total, max_total_dose_mg=total * concentration,
                             volume_resolution_ml=0.001))

"""Seed protocols compile to the figures dose arithmetic says, at several weights and strengths."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pumpctl.plan.compile import compile_plan_file
from pumpctl.plan.errors import PlanError, SoftLimitOverrideRequired
from pumpctl.plan.library import load_pump_profile
from pumpctl.plan.program import RateProgram
from pumpctl.plan.representable import format_rate, program_rate_unit
from pumpctl.units import exact

from .conftest import PLANS, STANDARD, WritePlan, standard_plan

PROFILE = load_pump_profile("newera-ne1000")
SYRINGE_ML = 60

# plan file, dose mg/kg, minutes, needs a soft-limit override at 1 mg/mL
SEEDS = [
    ("ketamine-0.5mgkg-40min.yaml", "0.5", 40),
    ("ketamine-0.5mgkg-100min.yaml", "0.5", 100),
    ("ketamine-0.2mgkg-40min.yaml", "0.2", 40),
    ("ketamine-0.4mgkg-40min.yaml", "0.4", 40),
    ("ketamine-1.0mgkg-40min.yaml", "1.0", 40),
    ("ketamine-stepped-0.5mgkg-40min.yaml", "0.5", 40),
]
REASON = "approved protocol amendment 2"


def test_standard_protocol_acceptance_figures() -> None:
    program = compile_plan_file(STANDARD, weight_kg=70)
    assert program.total_dose_mg == 35.0
    assert program.total_volume_ml == 35.0
    assert program.duration_s == 2400.0
    assert program.concentration_mg_per_ml == 1.0
    assert [s.model_dump() for s in program.segments] == [
        {"start_s": 0.0, "duration_s": 2400.0, "rate_ml_h": 52.5, "volume_ml": 35.0}
    ]
    assert program.worst_rate_deviation == 0.0
    assert program.syringe.id == "bd-plastipak-60"
    assert program.soft_limit_overrides == []
    assert program.library_version == "2025.1-example"


def _assert_consistent(program: RateProgram, dose_mg: Fraction, volume_ml: Fraction,
                       duration_s: int) -> None:
    """Program totals match the arithmetic; segments tile time and add up to the volume."""
    resolution = program.limits.volume_resolution_ml
    assert program.total_dose_mg == pytest.approx(float(dose_mg), rel=1e-12)
    assert program.total_volume_ml == pytest.approx(float(volume_ml), rel=1e-12)
    assert abs(sum(s.volume_ml for s in program.segments) - float(volume_ml)) < resolution / 2
    assert abs(program.duration_s - duration_s) <= 1
    t = 0.0
    for segment in program.segments:
        assert segment.start_s == pytest.approx(t, abs=1e-6)
        assert segment.rate_ml_h * segment.duration_s / 3600 == pytest.approx(segment.volume_ml)
        assert program.limits.min_rate_ml_h <= segment.rate_ml_h <= program.limits.max_rate_ml_h
        t += segment.duration_s
    unit = program_rate_unit([s.rate_ml_h for s in program.segments], PROFILE)
    for segment in program.segments:  # every rate can be sent to the pump exactly
        assert Fraction(format_rate(segment.rate_ml_h, unit, PROFILE)) > 0
    assert program.limits.max_total_volume_ml == program.total_volume_ml
    assert program.limits.max_total_dose_mg == program.total_dose_mg


@pytest.mark.parametrize(("plan", "dose_per_kg", "minutes"), SEEDS)
@pytest.mark.parametrize("weight", [45.0, 70.0, 71.3, 98.6, 133.0])
@pytest.mark.parametrize("concentration", ["0.5 mg/mL", "0.8 mg/mL", "1 mg/mL", "2 mg/mL"])
def test_seed_protocols_at_several_weights_and_concentrations(
    plan: str, dose_per_kg: str, minutes: int, weight: float, concentration: str
) -> None:
    conc = Fraction(concentration.split()[0])
    dose = Fraction(dose_per_kg) * exact(weight)
    volume = dose / conc
    soft = conc > 1 or Fraction(dose_per_kg) > Fraction(3, 4)
    path = PLANS / plan
    if volume > SYRINGE_ML:
        with pytest.raises(PlanError, match="exceeds the capacity 60 mL") as info:
            compile_plan_file(path, weight_kg=weight, concentration=concentration,
                              override_reason=REASON)
        assert info.value.exit_code == 2
        return
    if soft:
        with pytest.raises(SoftLimitOverrideRequired) as refused:
            compile_plan_file(path, weight_kg=weight, concentration=concentration)
        assert refused.value.exit_code == 3
        assert all(p.severity == "soft" for p in refused.value.problems)
        program = compile_plan_file(path, weight_kg=weight, concentration=concentration,
                                    override_reason=REASON)
        assert program.soft_limit_overrides
        assert {o.reason for o in program.soft_limit_overrides} == {REASON}
    else:
        program = compile_plan_file(path, weight_kg=weight, concentration=concentration)
        assert program.soft_limit_overrides == []
    _assert_consistent(program, dose, volume, minutes * 60)
    assert program.weight_kg == weight
    # the ideal (uncompiled) rate, and how far the compiled ones stray from it
    ideal = float(volume) * 3600 / (minutes * 60)
    if plan.startswith("ketamine-stepped"):
        return  # three steps with their own rates
    worst = max(abs(s.rate_ml_h - ideal) / ideal for s in program.segments)
    assert program.worst_rate_deviation == pytest.approx(worst, rel=1e-9, abs=1e-15)
    assert worst < 1e-3


def test_stepped_ramp_keeps_each_steps_rate() -> None:
    program = compile_plan_file(PLANS / "ketamine-stepped-0.5mgkg-40min.yaml", weight_kg=70)
    # 0.1, 0.15, 0.25 mg/kg x 70 kg at 1 mg/mL over 10, 10, 20 min
    assert [s.rate_ml_h for s in program.segments] == [42.0, 63.0, 52.5]
    assert [s.start_s for s in program.segments] == [0.0, 600.0, 1200.0]
    assert [p.label for p in program.steps] == ["ramp 1", "ramp 2", "plateau"]


def test_saline_placebo_matches_the_active_arms_volume_and_rate() -> None:
    active = compile_plan_file(STANDARD, weight_kg=82.4)
    placebo = compile_plan_file(PLANS / "saline-placebo-40min.yaml", weight_kg=82.4)
    assert placebo.drug == "saline"
    assert placebo.total_volume_ml == active.total_volume_ml
    assert [s.rate_ml_h for s in placebo.segments] == [s.rate_ml_h for s in active.segments]
    assert placebo.total_dose_mg == pytest.approx(placebo.total_volume_ml * 9)  # mg NaCl


def test_loading_then_maintenance_in_micrograms() -> None:
    program = compile_plan_file(PLANS / "dexmedetomidine-loading-maintenance.yaml", weight_kg=70)
    # 1 µg/kg x 70 kg = 70 µg over 10 min; 0.5 µg/kg/h x 70 kg x 2 h = 70 µg; at 4 µg/mL
    assert program.total_dose_mg == pytest.approx(0.140)
    assert program.total_volume_ml == pytest.approx(35.0)
    pairs = [(s.rate_ml_h, s.duration_s) for s in program.segments]
    assert pairs == [(105.0, 600.0), (8.75, 7200.0)]
    # the library's hard maxima for this timing: 1.5 µg/kg + 1.5 µg/kg/h x 2 h, x 70 kg
    assert program.limits.hard_max_dose_mg == pytest.approx(0.0015 * 70 + 0.0015 * 70 * 2)


def test_weight_from_the_plan_and_option_wins(write_plan: WritePlan) -> None:
    data = standard_plan()
    data["weight"] = "80 kg"
    path = write_plan(data)
    assert compile_plan_file(path).total_dose_mg == 40.0
    assert compile_plan_file(path, weight_kg=60).total_dose_mg == 30.0


def test_limits_for_the_safety_monitor() -> None:
    program = compile_plan_file(STANDARD, weight_kg=70)
    lo, hi = PROFILE.rate_limits_ml_h(26.59)
    assert (program.limits.min_rate_ml_h, program.limits.max_rate_ml_h) == (lo, hi)
    assert program.limits.hard_max_dose_mg == pytest.approx(1.5 * 70)
    assert program.limits.volume_resolution_ml == 0.001
    assert [p.model_dump() for p in program.steps] == [
        {"label": "infusion", "start_s": 0.0, "duration_s": 2400.0, "dose_mg": 35.0,
         "volume_ml": 35.0}
    ]


def test_monitoring_timeline() -> None:
    program = compile_plan_file(STANDARD, weight_kg=70)
    vitals = [m.at_s for m in program.monitoring if m.kind == "vitals"]
    end = next(m.at_s for m in program.monitoring if m.kind == "infusion_end")
    obs_end = next(m.at_s for m in program.monitoring if m.kind == "observation_end")
    assessments = [m.at_s for m in program.monitoring if m.kind == "assessment"]
    assert end == program.duration_s == 2400
    assert obs_end - end >= 2 * 3600
    assert vitals == [i * 900.0 for i in range(int(obs_end // 900) + 1)]
    assert assessments == [4 * 3600.0, 24 * 3600.0, 72 * 3600.0, 7 * 86400.0]
    times = [m.at_s for m in program.monitoring]
    assert times == sorted(times)

"""Every kind of bad plan is refused with one clear line naming the field, value and limit."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from pumpctl.plan.compile import compile_plan_file
from pumpctl.plan.errors import PlanError, SoftLimitOverrideRequired

from .conftest import CONFIGS, PLANS, STANDARD, WritePlan, standard_plan

HIGH = PLANS / "ketamine-1.0mgkg-40min.yaml"


def _refused(path: Path, **kwargs: Any) -> PlanError:
    with pytest.raises(PlanError) as info:
        compile_plan_file(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return info.value


def test_one_mg_per_kg_needs_an_override_which_is_recorded() -> None:
    refused = _refused(HIGH, weight_kg=70)
    assert isinstance(refused, SoftLimitOverrideRequired)
    assert refused.exit_code == 3
    fields = {p.field for p in refused.problems}
    assert "steps[0].dose" in fields
    assert all(p.severity == "soft" for p in refused.problems)
    program = compile_plan_file(HIGH, weight_kg=70, override_reason="  arm C,  amendment 3 ")
    overridden = {o.field: o for o in program.soft_limit_overrides}
    assert overridden["steps[0].dose"].value == 1.0
    assert overridden["steps[0].dose"].limit == 0.75
    assert overridden["steps[0].dose"].bound == "soft_max"
    assert overridden["steps[0].dose"].reason == "arm C, amendment 3"
    assert program.total_dose_mg == 70.0


@pytest.mark.parametrize("override", [None, "anything"])
def test_two_mg_per_kg_is_refused_even_with_an_override(
    write_plan: WritePlan, override: str | None
) -> None:
    data = standard_plan()
    data["steps"][0]["dose"] = "2 mg/kg"
    data["concentration"] = "2 mg/mL"
    refused = _refused(write_plan(data), weight_kg=50, override_reason=override)  # 50 mL
    assert type(refused) is PlanError and refused.exit_code == 2
    hard = [p for p in refused.problems if p.severity == "hard"]
    found = [(p.field, p.value, p.limit) for p in hard]
    assert found == [("steps[0].dose", "2 mg/kg", "1.5 mg/kg")]
    assert "above the maximum 1.5 mg/kg (hard limit)" in str(refused)


@pytest.mark.parametrize("override", [None, "anything"])
def test_five_mg_per_ml_is_refused(override: str | None) -> None:
    refused = _refused(STANDARD, weight_kg=70, concentration="5 mg/mL", override_reason=override)
    assert refused.exit_code == 2
    assert "concentration: 5 mg/mL is above the maximum 2 mg/mL (hard limit)" in str(refused)


def test_soft_duration_and_hard_duration(write_plan: WritePlan) -> None:
    data = standard_plan()
    data["steps"][0]["over"] = "20 min"
    soft = _refused(write_plan(data), weight_kg=70)
    assert isinstance(soft, SoftLimitOverrideRequired)
    assert "steps[0].over: 20 min is below the minimum 30 min" in str(soft)
    data["steps"][0]["over"] = "5 min"
    hard = _refused(write_plan(data), weight_kg=70, override_reason="x")
    assert "steps[0].over: 5 min is below the minimum 10 min (hard limit)" in str(hard)


def test_syringe_too_small() -> None:
    refused = _refused(STANDARD, weight_kg=130)  # 65 mL
    assert "syringe: total volume 65 mL exceeds the capacity 60 mL" in str(refused)
    refused = _refused(STANDARD, weight_kg=70, syringe="bd-plastipak-20")
    assert "exceeds the capacity 20 mL" in str(refused)


def test_rate_outside_the_pump_profile_for_the_syringe(tmp_path: Path) -> None:
    slow = yaml.safe_load((CONFIGS / "pumps" / "newera-ne1000.yaml").read_text(encoding="utf-8"))
    slow["plunger_speed"]["max"] = "1 mm/min"  # about 33 mL/h with a 60 mL syringe
    path = tmp_path / "slow-pump.yaml"
    path.write_text(yaml.safe_dump(slow, allow_unicode=True), encoding="utf-8")
    refused = _refused(STANDARD, weight_kg=70, pump=str(path))
    assert "steps[0]: rate 52.5 mL/h is above the pump's maximum 33.318 mL/h" in str(refused)
    assert "26.59 mm" in str(refused)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "weight: a per-kg dose or limit needs the subject's weight"),
        ({"weight_kg": 19.9}, "weight: 19.9 kg is below the minimum 20 kg (hard limit)"),
        ({"weight_kg": 251}, "weight: 251 kg is above the maximum 250 kg (hard limit)"),
        ({"weight_kg": math.nan}, "--weight: nan kg must be a positive finite number"),
        ({"weight_kg": -70}, "--weight: -70 kg must be a positive finite number"),
        ({"weight_kg": 0}, "--weight: 0 kg must be a positive finite number"),
        ({"weight_kg": 70, "concentration": "1"}, "--concentration: '1' has no unit"),
        ({"weight_kg": 70, "concentration": "1 mg"}, "--concentration: '1 mg' has the wrong unit"),
        ({"weight_kg": 70, "concentration": "0 mg/mL"}, "must be greater than zero"),
        ({"weight_kg": 70, "syringe": "bd-9000"}, "--syringe: unknown syringe 'bd-9000'"),
        ({"weight_kg": 70, "pump": "acme"}, "pump: unknown pump profile 'acme'"),
        ({"weight_kg": 70, "override_reason": "   "}, "reason must not be empty"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], fragment: str) -> None:
    assert fragment in str(_refused(STANDARD, **kwargs))


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("drug",), "ketamin", "drug: unknown drug 'ketamin'"),
        (("syringe",), "nope-60", "syringe: unknown syringe 'nope-60'"),
        (("steps", 0, "dose"), "0.5 mg",
         "steps[0].dose: 0.5 mg is not in the library's dosing unit"),
        (("steps", 0, "dose"), 0.5, "steps[0].dose: 0.5 has no unit"),
        (("steps", 0, "over"), "40", "steps[0].over: '40' has no unit"),
        (("steps", 0, "over"), "40 mL", "steps[0].over: '40 mL' has the wrong unit"),
        (("steps", 0, "dose"), "nan mg/kg", "not a finite number"),
        (("steps", 0, "dose"), "-0.5 mg/kg",
         "steps[0].dose: '-0.5 mg/kg' must be greater than zero"),
        (("steps", 0, "dose"), "0 mg/kg", "must be greater than zero"),
        (("steps", 0, "over"), "0 min", "steps[0].over: '0 min' must be greater than zero"),
        (("steps", 0, "dose_rate"), "0.5 mg/kg/h", "give exactly one of dose, volume or dose_rate"),
        (("steps", 0, "dosage"), "0.5 mg/kg", "steps[0].dosage: unknown key"),
        (("weigth",), "70 kg", "weigth: unknown key"),
        (("weight",), "70", "weight: '70' has no unit"),
        (("weight",), "70 mL", "weight: '70 mL' has the wrong unit"),
        (("concentration",), "1 mg/kg", "concentration: '1 mg/kg' has the wrong unit"),
        (("steps",), [], "steps: List should have at least 1 item"),
        (("monitoring", "observe_after_end"), "1 h", "below the library's minimum observation 2 h"),
        (("monitoring", "vitals_every"), "30 min", "longer than the library's maximum interval"),
        (("monitoring", "assessments"), "4 h", "monitoring.assessments"),
    ],
)
def test_bad_plan_fields(
    write_plan: WritePlan, path: tuple[str | int, ...], value: object, fragment: str
) -> None:
    data = standard_plan()
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    refused = _refused(write_plan(data), weight_kg=70)
    assert fragment in str(refused)
    assert str(refused).startswith(str(Path(refused.source)))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("drug: ketamine\nsteps: [\n", "malformed YAML"),
        ("drug: ketamine\n  steps: x: y\n", "malformed YAML"),
        ("", "expected a mapping of keys, got an empty file"),
        ("- a\n- b\n", "expected a mapping of keys, got list"),
        ("just words", "expected a mapping of keys, got str"),
        ("drug: ketamine\n", "steps: required key is missing"),
        (b"\xff\xfe\x00bad".decode("latin-1"), "malformed YAML"),
    ],
)
def test_malformed_files(write_plan: WritePlan, text: str, fragment: str) -> None:
    assert fragment in str(_refused(write_plan(text), weight_kg=70))


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in str(_refused(tmp_path / "absent.yaml", weight_kg=70))


def test_all_problems_are_reported_together(write_plan: WritePlan) -> None:
    data = standard_plan()
    data["steps"][0]["dose"] = "0.5"
    data["steps"][0]["over"] = "40"
    data["colour"] = "blue"
    refused = _refused(write_plan(data), weight_kg=70)
    fields = [p.field for p in refused.problems]
    assert {"steps[0].dose", "steps[0].over", "colour"} <= set(fields)

"""Property tests: exact volumes, pump-expressible segments, hard limits never compiled,
and nothing but the project's validation error for any input.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pumpctl.plan.compile import compile_plan_file
from pumpctl.plan.errors import PlanError
from pumpctl.plan.library import load_library, load_pump_profile, load_syringes
from pumpctl.plan.representable import format_rate, program_rate_unit
from pumpctl.units import Kind, parse_quantity

from .conftest import standard_plan

PROFILE = load_pump_profile("newera-ne1000")
LIBRARY = load_library()
KETAMINE = LIBRARY.drugs["ketamine"]
SYRINGES = load_syringes()
FAST = settings(max_examples=150, deadline=None)


def decimals(lo: str, hi: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(lo), Decimal(hi), places=places, allow_nan=False,
                       allow_infinity=False)


def _write(tmp_path: Path, data: Any, name: str) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True) if not isinstance(data, str)
                    else data, encoding="utf-8")
    return path


steps = st.lists(
    st.tuples(decimals("0.01", "0.6", 3), st.integers(4, 90)), min_size=1, max_size=3
)
big_syringes = sorted(k for k, v in SYRINGES.items() if v.capacity_ml >= 30)


def hard_reasons(steps: list[tuple[Decimal, int]], w: Fraction, c: Fraction,
                 syringe: str) -> list[str]:
    """Hard-limit breaches worked out independently of the compiler, from the library."""
    inter = KETAMINE.intermittent
    assert inter is not None and inter.dose.hard_max is not None
    assert inter.duration.hard_min is not None and inter.duration.hard_max is not None
    conc = KETAMINE.concentrations.limits
    assert conc.hard_min is not None and conc.hard_max is not None
    reasons = []
    if not 20 <= w <= 250:
        reasons.append("weight")
    if not conc.hard_min.value <= c <= conc.hard_max.value:
        reasons.append("concentration")
    if sum(Fraction(d) for d, _ in steps) > inter.dose.hard_max.value:
        reasons.append("dose")
    seconds = sum(m for _, m in steps) * 60
    if not inter.duration.hard_min.value <= seconds <= inter.duration.hard_max.value:
        reasons.append("duration")
    if sum(Fraction(d) for d, _ in steps) * w / c > SYRINGES[syringe].capacity.value:
        reasons.append("syringe")
    lo, hi = PROFILE.rate_limits_ml_h(SYRINGES[syringe].inner_diameter_mm)
    for d, m in steps:
        rate = Fraction(d) * w / c * 60 / m
        if not lo <= rate <= hi:
            reasons.append("rate")
    return reasons


@FAST
@given(
    steps=steps,
    weight=st.one_of(decimals("20", "130", 1), decimals("10", "300", 1)),
    conc=st.one_of(decimals("0.5", "2", 2), decimals("0.1", "5", 2)),
    syringe=st.one_of(st.just("bd-plastipak-60"), st.sampled_from(big_syringes),
                      st.sampled_from(sorted(SYRINGES))),
)
def test_any_compiled_program_is_exact_expressible_and_within_hard_limits(
    tmp_path_factory: Any, steps: list[tuple[Decimal, int]], weight: Decimal, conc: Decimal,
    syringe: str,
) -> None:
    data = standard_plan()
    data["steps"] = [{"dose": f"{d} mg/kg", "over": f"{m} min"} for d, m in steps]
    path = _write(tmp_path_factory.mktemp("p"), data, "plan.yaml")
    w, c = Fraction(weight), Fraction(conc)
    reasons = hard_reasons(steps, w, c, syringe)
    try:
        program = compile_plan_file(path, weight_kg=float(weight), concentration=f"{conc} mg/mL",
                                    syringe=syringe, override_reason="property test")
    except PlanError as exc:
        # refused only for a real hard-limit reason, and said so in one line
        assert reasons, str(exc)
        assert exc.exit_code == 2 and "\n" not in str(exc)
        event("refused")
        return
    event("compiled")
    assert not reasons, f"compiled despite {reasons}"
    dose = sum((Fraction(d) for d, _ in steps), Fraction(0)) * w
    volume = dose / c
    minutes = sum(m for _, m in steps)
    # volume is dose / concentration: exactly in the program, to pump resolution in segments
    assert program.total_volume_ml == float(volume)
    segment_total = sum(s.volume_ml for s in program.segments)
    assert abs(segment_total - float(volume)) < PROFILE.volume_resolution_ml / 2
    assert abs(program.duration_s - minutes * 60) <= 1
    # every segment inside the pump profile for this syringe, and sendable exactly
    lo, hi = PROFILE.rate_limits_ml_h(SYRINGES[syringe].inner_diameter_mm)
    unit = program_rate_unit([s.rate_ml_h for s in program.segments], PROFILE)
    for s in program.segments:
        assert lo <= s.rate_ml_h <= hi
        assert Fraction(format_rate(s.rate_ml_h, unit, PROFILE)) > 0
        assert s.duration_s >= 1
    assert program.limits.hard_max_dose_mg is not None
    assert program.total_dose_mg <= program.limits.hard_max_dose_mg


@settings(max_examples=80, deadline=None)
@given(weight=decimals("20", "80", 1), dose=decimals("0.1", "0.75", 2),  # fits 60 mL
       minutes=st.integers(30, 120))
def test_valid_plans_in_the_soft_range_always_compile(
    tmp_path_factory: Any, weight: Decimal, dose: Decimal, minutes: int
) -> None:
    data = standard_plan()
    data["steps"] = [{"dose": f"{dose} mg/kg", "over": f"{minutes} min"}]
    path = _write(tmp_path_factory.mktemp("v"), data, "plan.yaml")
    program = compile_plan_file(path, weight_kg=float(weight))
    assert program.soft_limit_overrides == []
    assert program.total_volume_ml == float(Fraction(dose) * Fraction(weight))
    assert program.worst_rate_deviation < 1e-3


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["0.5 mg/kg", "40 min", "nan mg/kg", "-1 mg", "1e99 mL", "70 kg",
                     "ketamine", "bd-plastipak-60", "0 min", "1 mg/mL"]),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["drug", "steps", "dose", "over", "weight", "x",
                                         "volume", "dose_rate", "monitoring", "label"]),
                        inner, max_size=4),
    ),
    max_leaves=12,
)
FIELDS = ["drug", "concentration", "syringe", "pump", "weight", "steps", "monitoring", "name",
          "title", "unknown"]


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(FIELDS), value=yaml_values, weight=st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_random_field_values_raise_only_plan_errors(
    tmp_path_factory: Any, field: str, value: Any, weight: float | None
) -> None:
    data = standard_plan()
    data[field] = value
    path = _write(tmp_path_factory.mktemp("f"), data, "plan.yaml")
    try:
        compile_plan_file(path, weight_kg=weight)
    except PlanError as exc:
        assert exc.exit_code in (2, 3)
        assert "\n" not in str(exc)


@settings(max_examples=150, deadline=None)
@given(document=st.one_of(yaml_values, st.text(max_size=200)))
def test_random_yaml_documents_raise_only_plan_errors(tmp_path_factory: Any, document: Any) -> None:
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    path = _write(tmp_path_factory.mktemp("y"), text, "plan.yaml")
    try:
        compile_plan_file(path, weight_kg=70)
    except PlanError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_random_quantity_text_is_a_value_or_one_units_error(text: str) -> None:
    from pumpctl.units import UnitsError

    try:
        measured = parse_quantity(text, (Kind.DOSE_PER_KG, Kind.DOSE), "dose")
    except UnitsError as exc:
        assert str(exc).startswith("dose: ") and "\n" not in str(exc)
    else:
        assert measured.kind in (Kind.DOSE_PER_KG, Kind.DOSE)

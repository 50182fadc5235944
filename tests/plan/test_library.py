"""Drug library, syringe table and pump profile: the shipped files and broken variants."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from pumpctl.plan.errors import ConfigError
from pumpctl.plan.library import load_library, load_pump_profile, load_syringes

from .conftest import CONFIGS


def test_shipped_library_has_the_research_ketamine_entry() -> None:
    library = load_library()
    assert library.library.name and library.library.version
    ketamine = library.drugs["ketamine"]
    limits = ketamine.concentrations.limits
    assert [(name, b.f) for name, b in limits.bounds()] == [
        ("hard_min", 0.5), ("soft_min", 0.5), ("soft_max", 1.0), ("hard_max", 2.0)
    ]
    assert ketamine.intermittent is not None
    dose = ketamine.intermittent.dose
    assert [(name, b.f) for name, b in dose.bounds()] == [
        ("soft_min", 0.1), ("soft_max", 0.75), ("hard_max", 1.5)
    ]
    duration = ketamine.intermittent.duration
    assert [b.f for _, b in duration.bounds()] == [600, 1800, 7200, 14400]
    # not ketamine-shaped: a vehicle and a second active drug with its own modes
    assert library.drugs["saline"].vehicle
    assert library.drugs["dexmedetomidine"].continuous is not None


def test_every_syringe_has_a_sane_diameter_and_capacity() -> None:
    syringes = load_syringes()
    assert syringes["bd-plastipak-60"].inner_diameter_mm == 26.59
    assert syringes["bd-plastipak-60"].capacity_ml == 60
    makers = {s.manufacturer for s in syringes.values()}
    assert {"BD", "Terumo", "B. Braun"} <= makers
    for syringe in syringes.values():
        assert 1 <= syringe.capacity_ml <= 60
        # a syringe's bore grows with its volume: a 60 mL barrel is about 26-30 mm
        assert 4 < syringe.inner_diameter_mm < 30


def test_pump_rate_limits_scale_with_the_syringe_cross_section() -> None:
    profile = load_pump_profile("newera-ne1000")
    lo60, hi60 = profile.rate_limits_ml_h(26.59)
    lo1, hi1 = profile.rate_limits_ml_h(4.699)
    # the NE-1000 manual's extremes: 1699 mL/h with a 60 mL B-D syringe, 0.73 µL/h with 1 mL
    assert hi60 == pytest.approx(1699, rel=1e-3)
    assert lo1 * 1000 == pytest.approx(0.73, rel=1e-3)
    ratio = (26.59 / 4.699) ** 2
    assert hi60 / hi1 == pytest.approx(ratio)
    assert lo60 / lo1 == pytest.approx(ratio)
    assert profile.number_format.max_digits == 4 and profile.number_format.max_decimals == 3
    assert set(profile.rate_units) == {"UM", "MM", "UH", "MH"}


def test_pump_profile_by_path_and_unknown_name() -> None:
    by_path = load_pump_profile(CONFIGS / "pumps" / "newera-ne1000.yaml")
    assert by_path.name == "newera-ne1000"
    with pytest.raises(ConfigError, match="unknown pump profile 'nope'"):
        load_pump_profile("nope")
    with pytest.raises(ConfigError, match="invalid pump profile name"):
        load_pump_profile("../etc/passwd")
    with pytest.raises(ConfigError, match="outside the pump's"):
        by_path.rate_limits_ml_h(math.nan)


def _library_variant(tmp_path: Path, edit: str, value: object) -> Path:
    data = yaml.safe_load((CONFIGS / "drugs.yaml").read_text(encoding="utf-8"))
    node = data
    keys = edit.split(".")
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    path = tmp_path / "drugs.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("edit", "value", "fragment"),
    [
        ("drugs.ketamine.intermittent.dose.soft_maxx", "1 mg/kg", "soft_maxx: unknown key"),
        ("drugs.ketamine.intermittent.dose.soft_max", "2 mg/kg",
         "soft_max 2 mg/kg is above hard_max"),
        ("drugs.ketamine.intermittent.dose.soft_min", "5 mg", "mix units"),
        ("drugs.ketamine.intermittent.duration.hard_min", "10", "has no unit"),
        ("drugs.ketamine.concentrations.default", "-1 mg/mL", "greater than zero"),
        ("drugs.ketamine.course.max_per_week", 0, "course.max_per_week"),
        ("library", None, "library"),
    ],
)
def test_broken_library_is_one_clear_error(
    tmp_path: Path, edit: str, value: object, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_library(_library_variant(tmp_path, edit, value))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)

"""The reference data a plan is checked against: drug library, syringe table, pump profiles.

Each is a YAML file under `configs/` read into a frozen pydantic model. The New Era simulator
loads pump profiles through `load_pump_profile` too, so the range the simulated pump answers
`?OOR` for is the range the compiler plans within.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from pumpctl import files
from pumpctl.plan.errors import ConfigError, Problem
from pumpctl.plan.fields import (
    Concentration,
    Duration,
    Length,
    Rate,
    Speed,
    StrictModel,
    Volume,
    default_configs_dir,
    load_cached,
)
from pumpctl.plan.limits import (
    ConcentrationLimits,
    DoseLimits,
    DoseRateLimits,
    DurationLimits,
    WeightLimits,
)
from pumpctl.units import Measured

# ---------------------------------------------------------------------------------------------
# Syringes


class Syringe(StrictModel):
    """A syringe model: the inner diameter sets the pump's rate range and volume per step."""

    id: str = ""
    name: str
    manufacturer: str
    inner_diameter: Length
    nominal: Volume
    capacity: Volume
    source: str = ""

    @property
    def inner_diameter_mm(self) -> float:
        return self.inner_diameter.f

    @property
    def capacity_ml(self) -> float:
        return self.capacity.f

    @model_validator(mode="after")
    def _capacity_covers_nominal(self) -> Syringe:
        if self.capacity.value < self.nominal.value:
            raise ValueError(f"capacity {self.capacity} is below the nominal volume {self.nominal}")
        return self


class SyringeTable(StrictModel):
    note: str = ""
    syringes: dict[str, Syringe]


def load_syringes(
    path: str | Path | None = None, *, configs_dir: Path | None = None
) -> dict[str, Syringe]:
    """id -> Syringe from `configs/syringes.yaml` (or `path`)."""
    base = configs_dir or default_configs_dir()
    file = Path(path) if path is not None else base / "syringes.yaml"
    table = load_cached(SyringeTable, file, kind=files.SYRINGES)
    return {key: syringe.model_copy(update={"id": key}) for key, syringe in table.syringes.items()}


# ---------------------------------------------------------------------------------------------
# Pump profiles


class NumberFormat(StrictModel):
    """How many digits the pump accepts in one number (New Era: 4 digits, at most 3 decimals)."""

    max_digits: int = Field(ge=1, le=12)
    max_decimals: int = Field(ge=0, le=6)


class PlungerSpeed(StrictModel):
    min: Speed
    max: Speed


class DiameterRange(StrictModel):
    min: Length
    max: Length


class PumpProfile(StrictModel):
    """What a pump model can do, as far as planning needs to know.

    Rate limits are not a fixed table: a syringe pump moves the plunger between a minimum and
    a maximum linear speed, so the volume rate range is that speed range times the syringe's
    cross-section.
    """

    name: str
    model: str
    source: str = ""
    plunger_speed: PlungerSpeed
    diameter: DiameterRange
    number_format: NumberFormat
    # Rate unit code the pump understands -> size of one such unit (e.g. UM: 1 µL/min).
    rate_units: dict[str, Rate]
    # False: the pump refuses a change of rate unit while it runs, so one unit must write
    # every rate of a program (the compiler and the driver's `prepare` both choose one).
    rate_units_change_while_running: bool = False
    volume_resolution: Volume
    # At or below this diameter the pump counts volume in µL, above it in mL (New Era).
    volume_units_switch_diameter: Length | None = None

    @field_validator("rate_units")
    @classmethod
    def _some_units(cls, value: dict[str, Measured]) -> dict[str, Measured]:
        if not value:
            raise ValueError("at least one rate unit is needed")
        return value

    @property
    def volume_resolution_ml(self) -> float:
        return self.volume_resolution.f

    def rate_unit_sizes(self) -> dict[str, Fraction]:
        """Rate unit code -> mL/h per unit, exactly."""
        return {code: size.value for code, size in self.rate_units.items()}

    def check_diameter(self, diameter_mm: float) -> None:
        lo, hi = self.diameter.min.f, self.diameter.max.f
        if not (math.isfinite(diameter_mm) and lo <= diameter_mm <= hi):
            raise ConfigError(
                [Problem("diameter", f"{diameter_mm} mm is outside the pump's {lo}-{hi} mm")],
                self.name,
            )

    def rate_limits_ml_h(self, diameter_mm: float) -> tuple[float, float]:
        """(min, max) volume rate in mL/h for a syringe of this inner diameter."""
        self.check_diameter(diameter_mm)
        area_mm2 = math.pi * diameter_mm**2 / 4
        # mm/min x mm^2 = mm^3/min = µL/min; x 60 / 1000 -> mL/h
        to_ml_h = area_mm2 * 60 / 1000
        return self.plunger_speed.min.f * to_ml_h, self.plunger_speed.max.f * to_ml_h


def load_pump_profile(name_or_path: str | Path, *, configs_dir: Path | None = None) -> PumpProfile:
    """A pump profile by name (`configs/pumps/<name>.yaml`) or by file path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        file = candidate
    else:
        name = str(name_or_path)
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ConfigError([Problem("pump", f"invalid pump profile name {name!r}")])
        pumps = (configs_dir or default_configs_dir()) / "pumps"
        file = pumps / f"{name}.yaml"
        if not file.exists():
            known = ", ".join(sorted(p.stem for p in pumps.glob("*.yaml"))) or "none"
            raise ConfigError([Problem("pump", f"unknown pump profile {name!r} (known: {known})")])
    return load_cached(PumpProfile, file, kind=files.PUMP_PROFILE)


DEFAULT_PUMP_PROFILE = "newera-ne1000"
DEFAULT_SYRINGE = "bd-plastipak-60"

# ---------------------------------------------------------------------------------------------
# Drug library


class Concentrations(StrictModel):
    default: Concentration
    limits: ConcentrationLimits


class IntermittentLimits(StrictModel):
    """A dose given over a duration: limits on the total per infusion and on its duration."""

    dose: DoseLimits
    duration: DurationLimits


class ContinuousLimits(StrictModel):
    """A dose rate held for a time: limits on the rate (and optionally how long)."""

    dose_rate: DoseRateLimits
    duration: DurationLimits | None = None


class CourseLimits(StrictModel):
    """Limits across infusions of one course."""

    min_interval: Duration
    max_per_week: int = Field(ge=1, le=50)
    max_induction: int = Field(ge=1, le=100)


class MonitoringRules(StrictModel):
    """What a plan's monitoring timeline must at least contain for this drug."""

    min_observation: Duration | None = None
    max_vitals_interval: Duration | None = None


class Drug(StrictModel):
    name: str
    diluent: str
    vehicle: bool = False  # placebo/vehicle: no pharmacological dose
    note: str = ""
    concentrations: Concentrations
    intermittent: IntermittentLimits | None = None
    continuous: ContinuousLimits | None = None
    course: CourseLimits | None = None
    monitoring: MonitoringRules | None = None


class LibraryInfo(StrictModel):
    name: str
    version: str
    note: str = ""


class DrugLibrary(StrictModel):
    library: LibraryInfo
    subject_weight: WeightLimits
    drugs: dict[str, Drug]


def load_library(path: str | Path | None = None, *, configs_dir: Path | None = None) -> DrugLibrary:
    """The drug library from `configs/drugs.yaml` (or `path`)."""
    base = configs_dir or default_configs_dir()
    file = Path(path) if path is not None else base / "drugs.yaml"
    return load_cached(DrugLibrary, file, kind=files.LIBRARY)

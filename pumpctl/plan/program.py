"""The validated, compiled result of a plan: what everything downstream consumes.

Nothing after this point knows about drugs beyond the figures carried here: the controller
follows `segments`; the safety monitor re-derives its expectations from `steps` and `limits`
(which come from validation against the library, syringe and pump profile) and does not trust
`segments`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Segment(_Frozen):
    """A constant-rate stretch the pump can express exactly."""

    start_s: float
    duration_s: float
    rate_ml_h: float
    volume_ml: float


class PlannedStep(_Frozen):
    """One step of the plan in delivery terms, straight from dose arithmetic (not compiled)."""

    label: str
    start_s: float
    duration_s: float
    dose_mg: float
    volume_ml: float


class SoftLimitOverride(_Frozen):
    field: str
    value: float
    limit: float
    bound: str  # "soft_min" | "soft_max"
    reason: str


class SyringeInfo(_Frozen):
    id: str
    name: str
    inner_diameter_mm: float
    capacity_ml: float


class ProgramLimits(_Frozen):
    """Hard bounds found at validation; the safety monitor enforces them at run time."""

    max_rate_ml_h: float  # pump profile limit for this syringe diameter
    min_rate_ml_h: float
    max_total_volume_ml: float  # never more than the planned total nor the syringe capacity
    max_total_dose_mg: float  # never more than the planned dose (and below the library hard max)
    hard_max_dose_mg: float | None = None  # the library's hard maximum, for reference
    volume_resolution_ml: float  # pump profile's smallest volume step


class MonitoringEvent(_Frozen):
    """A point on the plan's clinical monitoring timeline, relative to infusion start."""

    at_s: float
    kind: str  # "vitals" | "infusion_end" | "observation_end" | "assessment"
    label: str


class RateProgram(_Frozen):
    plan: str
    drug: str
    library_name: str
    library_version: str
    weight_kg: float | None
    concentration_mg_per_ml: float
    total_dose_mg: float
    total_volume_ml: float
    duration_s: float
    syringe: SyringeInfo
    pump_profile: str
    soft_limit_overrides: list[SoftLimitOverride] = Field(default_factory=list)
    steps: list[PlannedStep]
    segments: list[Segment]
    worst_rate_deviation: float = 0.0  # relative, compiled vs ideal rate
    monitoring: list[MonitoringEvent] = Field(default_factory=list)
    limits: ProgramLimits

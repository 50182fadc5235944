"""The dose-plan file as a researcher writes it (YAML), validated field by field.

A plan names a drug from the library and lists steps. Each step gives exactly one of
- `dose:`      a total over the step ("0.5 mg/kg", "35 mg"),
- `volume:`    a volume over the step ("0.5 mL/kg", "35 mL"; vehicles and placebos),
- `dose_rate:` a rate held for the step ("0.5 mg/kg/h", "30 mg/h"),
plus `over:` (how long the step lasts). Steps run back to back. Weight, concentration,
syringe and pump profile may be given in the plan or on the command line (the option wins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from pumpctl import files
from pumpctl.plan.errors import PlanError
from pumpctl.plan.fields import (
    Concentration,
    Dose,
    DoseRate,
    Duration,
    Offset,
    StrictModel,
    VolumeDose,
    Weight,
    read_yaml,
    validate,
)
from pumpctl.units import Measured

_Name = Annotated[str, Field(min_length=1, max_length=80)]


class Step(StrictModel):
    label: str = Field(default="", max_length=80)
    dose: Dose | None = None
    volume: VolumeDose | None = None
    dose_rate: DoseRate | None = None
    over: Duration

    @model_validator(mode="after")
    def _one_amount(self) -> Step:
        given = [k for k in ("dose", "volume", "dose_rate") if getattr(self, k) is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            raise ValueError(f"give exactly one of dose, volume or dose_rate (got {what})")
        return self

    @property
    def amount_key(self) -> str:
        if self.dose is not None:
            return "dose"
        return "volume" if self.volume is not None else "dose_rate"

    @property
    def amount(self) -> Measured:
        value = self.dose or self.volume or self.dose_rate
        assert value is not None  # guaranteed by _one_amount
        return value

    @property
    def is_rate(self) -> bool:
        return self.dose_rate is not None


class Monitoring(StrictModel):
    """Clinical monitoring around the infusion, relative to the infusion's start and end."""

    vitals_every: Duration
    observe_after_end: Duration
    # Assessment times after the START of the infusion ("4 h", "24 h", "72 h", "7 d").
    assessments: list[Offset] = Field(default_factory=list, max_length=50)


class PlanFile(StrictModel):
    name: _Name | None = None
    title: str = Field(default="", max_length=200)
    note: str = Field(default="", max_length=2000)
    drug: _Name
    concentration: Concentration | None = None
    syringe: _Name | None = None
    pump: _Name | None = None
    weight: Weight | None = None
    steps: list[Step] = Field(min_length=1, max_length=50)
    monitoring: Monitoring | None = None


def load_plan(path: str | Path) -> PlanFile:
    """Read and validate a plan file; the plan's name defaults to the file's stem."""
    file = Path(path)
    plan = validate(PlanFile, read_yaml(file, PlanError, files.PLAN), str(file), PlanError)
    if plan.name is None:
        plan = plan.model_copy(update={"name": file.stem})
    return plan

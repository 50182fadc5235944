"""Soft and hard limits in the style of smart-pump dose-error-reduction libraries.

A value outside a hard limit can never be given. A value outside a soft limit (but inside the
hard ones) can, only with an explicit override and a written reason, which then travels with
the compiled program. Bounds are inclusive: a dose exactly at the soft maximum is fine.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from pydantic import model_validator

from pumpctl.plan.errors import Problem
from pumpctl.plan.fields import AnyDose, Concentration, DoseRate, Duration, StrictModel, Weight
from pumpctl.units import Kind, Measured, describe

Bound = Literal["hard_min", "soft_min", "soft_max", "hard_max"]


@dataclass(frozen=True, slots=True)
class Breach:
    """A value beyond one bound of a limit set."""

    field: str
    label: str
    value: Fraction
    limit: Fraction
    kind: Kind
    bound: Bound

    @property
    def severity(self) -> Literal["hard", "soft"]:
        return "hard" if self.bound.startswith("hard") else "soft"

    def problem(self) -> Problem:
        side = "below the" if self.bound.endswith("min") else "above the"
        word = "minimum" if self.bound.endswith("min") else "maximum"
        value, limit = describe(self.value, self.kind), describe(self.limit, self.kind)
        return Problem(
            field=self.field,
            message=f"{self.label + ' ' if self.label else ''}{value} is {side} {word} {limit}",
            value=value,
            limit=limit,
            severity=self.severity,
        )


class LimitSet(StrictModel):
    """hard_min <= soft_min <= soft_max <= hard_max; any may be absent; one kind throughout."""

    hard_min: Measured | None = None
    soft_min: Measured | None = None
    soft_max: Measured | None = None
    hard_max: Measured | None = None

    def bounds(self) -> list[tuple[Bound, Measured]]:
        out: list[tuple[Bound, Measured]] = []
        for name in ("hard_min", "soft_min", "soft_max", "hard_max"):
            value = getattr(self, name)
            if value is not None:
                out.append((name, value))
        return out

    @property
    def kind(self) -> Kind | None:
        bounds = self.bounds()
        return bounds[0][1].kind if bounds else None

    @model_validator(mode="after")
    def _consistent(self) -> LimitSet:
        bounds = self.bounds()
        kinds = {m.kind for _, m in bounds}
        if len(kinds) > 1:
            units = ", ".join(sorted(k.value for k in kinds))
            raise ValueError(f"limits mix units of different kinds ({units}); use one kind")
        for (name_a, a), (name_b, b) in itertools.pairwise(bounds):
            if a.value > b.value:
                raise ValueError(f"{name_a} {a} is above {name_b} {b}")
        return self

    def check(self, value: Fraction, field: str, label: str = "") -> list[Breach]:
        """Breaches of `value` (in this set's kind). A hard breach hides the soft one."""
        kind = self.kind
        if kind is None:
            return []
        for bound in ("hard_min", "hard_max", "soft_min", "soft_max"):
            limit = getattr(self, bound)
            if limit is None:
                continue
            beyond = value < limit.value if bound.endswith("min") else value > limit.value
            if beyond:
                return [Breach(field, label, value, limit.value, kind, bound)]
        return []


class DoseLimits(LimitSet):
    hard_min: AnyDose | None = None
    soft_min: AnyDose | None = None
    soft_max: AnyDose | None = None
    hard_max: AnyDose | None = None


class DurationLimits(LimitSet):
    hard_min: Duration | None = None
    soft_min: Duration | None = None
    soft_max: Duration | None = None
    hard_max: Duration | None = None


class ConcentrationLimits(LimitSet):
    hard_min: Concentration | None = None
    soft_min: Concentration | None = None
    soft_max: Concentration | None = None
    hard_max: Concentration | None = None


class DoseRateLimits(LimitSet):
    hard_min: DoseRate | None = None
    soft_min: DoseRate | None = None
    soft_max: DoseRate | None = None
    hard_max: DoseRate | None = None


class WeightLimits(LimitSet):
    hard_min: Weight | None = None
    soft_min: Weight | None = None
    soft_max: Weight | None = None
    hard_max: Weight | None = None

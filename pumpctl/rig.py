"""Rig files (`configs/rigs/*.yaml`): which pump and which balance a bench session uses.

A rig names its pump by URL (`sim:newera` = a simulated New Era pump started in this process,
or a real one such as `newera:///dev/ttyUSB0?safe=5`), the syringe loaded, and optionally a
balance (`sim:mtsics`, `mtsics:///dev/ttyUSB1`, `mtsics+tcp://HOST:PORT`) with the density
of the liquid and the evaporation measured from its beaker. Simulated parts take their
physics and balance settings from the file, so a rig can turn on start-up compliance or
thread irregularity without changing any default.
"""

from __future__ import annotations

from dataclasses import fields
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator

from pumpctl.plan.fields import Duration, StrictModel, Volume, load_cached, quantity
from pumpctl.plan.library import Syringe, load_syringes
from pumpctl.units import Kind, Measured

SIM_PUMP = "sim:newera"
SIM_BALANCE = "sim:mtsics"

Density = Annotated[Measured, quantity(Kind.DENSITY)]
MassRate = Annotated[Measured, quantity(Kind.MASS_RATE, positive=False)]
Mass = Annotated[Measured, quantity(Kind.DOSE)]  # a mass; mg is the canonical unit
MassOrZero = Annotated[Measured, quantity(Kind.DOSE, positive=False)]


def _default(kind: Kind, value: str) -> Any:
    return Field(default_factory=lambda: Measured(kind, Fraction(value)))


class SimBalance(StrictModel):
    """How the simulated balance behaves (ignored for a real balance)."""

    resolution: Mass = _default(Kind.DOSE, "0.1")  # mg
    noise: MassOrZero = _default(Kind.DOSE, "0")
    evaporation: MassRate = _default(Kind.MASS_RATE, "0")
    container: MassOrZero = _default(Kind.DOSE, "0")
    seed: int = 0


class BalanceSpec(StrictModel):
    url: str
    density: Density = _default(Kind.DENSITY, "0.998")
    # Evaporation from the beaker measured before the run (pump stopped): added back by the
    # analysis. The simulated balance's own evaporation is `sim.evaporation`.
    evaporation: MassRate = _default(Kind.MASS_RATE, "0")
    sim: SimBalance = Field(default_factory=SimBalance)

    @property
    def simulated(self) -> bool:
        return self.url == SIM_BALANCE


class PumpSpec(StrictModel):
    url: str
    syringe: str
    contents: Volume | None = None  # liquid in the syringe at the start (default: capacity)
    # Simulated pump only: simulators.physics.PhysicsParams fields (start-up compliance…).
    physics: dict[str, float] = Field(default_factory=dict)

    @field_validator("physics")
    @classmethod
    def _known_physics(cls, value: dict[str, float]) -> dict[str, float]:
        from simulators.physics import PhysicsParams

        known = {f.name for f in fields(PhysicsParams)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown physics parameter {unknown[0]!r} (known: "
                             f"{', '.join(sorted(known))})")
        return value

    @property
    def simulated(self) -> bool:
        return self.url == SIM_PUMP


class Rig(StrictModel):
    name: str
    description: str = ""
    pump: PumpSpec
    balance: BalanceSpec | None = None
    poll: Duration = _default(Kind.DURATION, "1")
    source: str = ""

    def syringe(self) -> Syringe:
        from pumpctl.plan.errors import ConfigError, Problem

        table = load_syringes()
        if self.pump.syringe not in table:
            raise ConfigError([Problem("pump.syringe", f"{self.pump.syringe!r} is not in the "
                                       "syringe table (configs/syringes.yaml)")], self.source)
        return table[self.pump.syringe]

    def physics(self) -> Any:
        from simulators.physics import PhysicsParams

        params: dict[str, Any] = dict(self.pump.physics)
        for name in ("seed", "steps_per_rev", "thread_points_per_rev"):
            if name in params:
                params[name] = int(params[name])
        return PhysicsParams(**params)


def load_rig(path: str | Path) -> Rig:
    """A rig file, checked (one-line errors naming the field)."""
    file = Path(path)
    rig = load_cached(Rig, file)
    return rig.model_copy(update={"source": str(file)})

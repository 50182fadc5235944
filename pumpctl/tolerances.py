"""How far a pump may stray from its plan before the safety monitor stops it.

The figures, and why they have the values they do, are in docs/safety.md. They are journaled
in every run's header, so a run can be judged later by the limits it ran under.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PumpClass(StrEnum):
    SYRINGE = "syringe"
    LARGE_VOLUME = "large_volume"


@dataclass(frozen=True)
class SafetyTolerances:
    """How far the pump may stray from the plan before the monitor stops it (see docs/safety.md)."""

    volume_rel: float = 0.02  # accuracy class of a syringe pump (±2 %)
    volume_abs_ml: float = 0.05  # floor early in a run, when 2 % of almost nothing is nothing
    rate_rel: float = 0.02  # a commanded/reported rate may exceed the step rate by this much
    readback_rel: float = 0.002  # the pump's number format (digits) plus unit conversion
    timing_slack_s: float = 2.0  # plan clock vs pump clock: command and poll latency
    under_window_s: float = 15.0  # under-delivery must persist this long to be an occlusion
    no_status_s: float = 5.0  # no valid status for this long → stop
    end_grace_rel: float = 0.02  # the pump may finish this fraction of the duration late
    end_grace_min_s: float = 5.0
    sensor_abs_ml: float = 0.05  # extra allowance for a delivered-volume sensor (balance)
    sensor_window_s: float = 30.0  # sensor vs counter: compared over this sliding window
    sensor_lag_s: float = 2.0  # ... allowing this many seconds of flow held by the line

    @classmethod
    def for_pump_class(cls, pump_class: PumpClass, **overrides: float) -> SafetyTolerances:
        """Defaults per pump class: ±2 % for syringe pumps, ±5 % for large-volume pumps."""
        base = cls() if pump_class is PumpClass.SYRINGE else cls(volume_rel=0.05, rate_rel=0.05)
        return cls(**{**base.__dict__, **overrides})

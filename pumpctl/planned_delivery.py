"""What the plan should have delivered by any moment, re-derived from its steps alone.

The safety monitor does not trust the compiled `segments` (the compiler may have split a step
into two neighbouring rates the pump can express); it works from the plan's `steps`, each a
constant rate: its volume over its duration. A program that is not self-consistent enough to
be checked this way is refused before anything runs.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from pumpctl.errors import PumpctlError
from pumpctl.plan.program import RateProgram


class SafetyConfigError(PumpctlError):
    """The program is not self-consistent enough to be run safely."""

    exit_code = 2


@dataclass(frozen=True)
class _Step:
    start_s: float
    end_s: float
    rate_ml_s: float
    volume_ml: float


class PlannedDelivery:
    """Planned-so-far volume and allowed rate as functions of plan time, from `steps` alone."""

    def __init__(self, program: RateProgram) -> None:
        planned = sorted(program.steps, key=lambda s: s.start_s)
        if not planned:
            raise SafetyConfigError(f"program {program.plan!r} has no steps to check against")
        self.steps: list[_Step] = []  # sorted, validated, with their constant rates
        prev_end = -math.inf
        for i, s in enumerate(planned):
            bad = [f for f in ("start_s", "duration_s", "volume_ml")
                   if not math.isfinite(getattr(s, f)) or getattr(s, f) < 0]
            if bad:
                raise SafetyConfigError(f"steps[{i}].{bad[0]} = {getattr(s, bad[0])}: must be >= 0")
            if s.start_s < prev_end - 1e-9:
                raise SafetyConfigError(f"steps[{i}].start_s = {s.start_s}: overlaps the "
                                        f"previous step ending at {prev_end}")
            if s.duration_s == 0 and s.volume_ml > 0:
                raise SafetyConfigError(f"steps[{i}].duration_s = 0 with volume {s.volume_ml} mL: "
                                        "no pump can deliver that")
            rate = s.volume_ml / s.duration_s if s.duration_s > 0 else 0.0
            self.steps.append(_Step(s.start_s, s.start_s + s.duration_s, rate, s.volume_ml))
            prev_end = s.start_s + s.duration_s
        self._starts = [st.start_s for st in self.steps]
        self._cum: list[float] = [0.0]
        for st in self.steps:
            self._cum.append(self._cum[-1] + st.volume_ml)
        self.total_ml = self._cum[-1]
        self.end_s = self.steps[-1].end_s

    def volume_at(self, t: float) -> float:
        """Volume the plan has delivered by plan time `t` (linear inside each step)."""
        i = bisect.bisect_right(self._starts, t) - 1
        if i < 0:
            return 0.0
        s = self.steps[i]
        if t >= s.end_s:
            return self._cum[i + 1]
        return self._cum[i] + s.rate_ml_s * (t - s.start_s)

    def max_rate_ml_h(self, t0: float, t1: float) -> float:
        """Highest step rate anywhere in plan time [t0, t1] (0 where no step runs)."""
        best = 0.0
        for s in self.steps:
            if s.start_s <= t1 and s.end_s >= t0 and s.end_s > s.start_s:
                best = max(best, s.rate_ml_s * 3600.0)
        return best

    def time_for_volume(self, volume_ml: float) -> float:
        """Earliest plan time by which the plan has delivered `volume_ml` (for resuming)."""
        if volume_ml <= 0:
            return 0.0
        if volume_ml >= self.total_ml:
            return self.end_s
        i = bisect.bisect_left(self._cum, volume_ml) - 1
        i = min(max(i, 0), len(self.steps) - 1)
        s = self.steps[i]
        if s.rate_ml_s <= 0:
            return s.end_s
        return s.start_s + (volume_ml - self._cum[i]) / s.rate_ml_s

    @property
    def last_rate_ml_h(self) -> float:
        moving = [s for s in self.steps if s.rate_ml_s > 0]
        return moving[-1].rate_ml_s * 3600.0 if moving else 0.0

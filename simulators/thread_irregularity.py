"""Lead-screw thread irregularity: the broadband flow error of a real drive.

A pure per-turn ripple averages out over whole turns; a real thread's position error does
not repeat, so it also shows in longer observation windows of the accuracy analysis. It is
drawn (seeded) at a few points per turn and interpolated between them; off by default
(`PhysicsParams.thread_error_um = 0`).
"""

from __future__ import annotations

import math
import random

from simulators.physics_params import PhysicsParams


class ThreadIrregularity:
    """The plunger's position error along its travel, as a volume."""

    def __init__(self, params: PhysicsParams) -> None:
        self._params = params
        self._knots: dict[int, float] = {}  # position errors, µm, by point

    def error_ml(self, plunger_ml: float, ml_per_rev: float, area_mm2: float) -> float:
        """Volume error at `plunger_ml` of travel (zero at the start of travel, so delivery
        starts from nothing)."""
        p = self._params
        if not p.thread_error_um:
            return 0.0
        u = plunger_ml / ml_per_rev * p.thread_points_per_rev
        k = math.floor(u)
        f = u - k
        error_um = (1 - f) * self._knot(k) + f * self._knot(k + 1)
        return (error_um - self._knot(0)) * area_mm2 / 1e6

    def _knot(self, k: int) -> float:
        value = self._knots.get(k)
        if value is None:  # the same thread for the same seed, whatever order it is read in
            p = self._params
            value = random.Random(f"{p.seed}:{k}").gauss(0.0, p.thread_error_um)
            self._knots[k] = value
        return value

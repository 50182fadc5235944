"""Delivery accuracy from balance readings, the way the infusion-pump standard measures it.

A balance under the collecting beaker is read every `interval` minutes. Each pair of
consecutive readings gives one flow sample; the flow samples of an analysis period give the
overall mean error A, and the means over sliding observation windows of 2, 5, 11, 19 and
31 minutes give the extremes Ep(max)/Ep(min) of the trumpet curve. The formulas, in this
project's words, are in docs/accuracy.md; everything here is numpy over whole arrays.

Inputs are plain floats in the analysis' own units (minutes, grams, mL/h, g/mL); parsing
text quantities and files is the caller's job (`pumpctl.analysis.samples`, the CLI).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pumpctl.errors import UsageError

FloatArray = npt.NDArray[np.float64]

STANDARD_WINDOWS_MIN: tuple[float, ...] = (2.0, 5.0, 11.0, 19.0, 31.0)
WATER_DENSITY_G_ML = 0.998  # about 20 °C
DENSITY_RANGE_G_ML = (0.5, 3.0)  # beyond this the "water" in the beaker is not water
# Times and window lengths are read from text ("0.5 min"): a multiple of the interval is
# accepted within this fraction of an interval.
_MULTIPLE_TOLERANCE = 1e-6


class AccuracyError(UsageError):
    """Inputs that cannot be analysed (too short a series, a window longer than the period)."""


@dataclass(frozen=True)
class AccuracyInputs:
    """What the analysis needs besides the masses; every field is reported with the result."""

    rate_ml_h: float  # the set rate r
    interval_min: float = 0.5  # sample interval S
    density_g_ml: float = WATER_DENSITY_G_ML  # d
    start_min: float = 60.0  # the analysis period starts here (time of the first mass = 0)
    period_min: float = 60.0  # analysis period T
    windows_min: tuple[float, ...] = STANDARD_WINDOWS_MIN  # observation windows P
    evaporation_g_min: float = 0.0  # measured loss from the beaker, added back

    def check(self) -> None:
        """Raise AccuracyError naming the first field that makes no sense."""
        positive = {"rate_ml_h": self.rate_ml_h, "interval_min": self.interval_min,
                    "period_min": self.period_min}
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise AccuracyError(f"{name} = {value}: must be a finite number > 0")
        low, high = DENSITY_RANGE_G_ML
        if not (math.isfinite(self.density_g_ml) and low <= self.density_g_ml <= high):
            raise AccuracyError(f"density_g_ml = {self.density_g_ml}: must be {low}-{high} g/mL")
        if not (math.isfinite(self.start_min) and self.start_min >= 0):
            raise AccuracyError(f"start_min = {self.start_min}: must be >= 0")
        if not (math.isfinite(self.evaporation_g_min) and self.evaporation_g_min >= 0):
            raise AccuracyError(f"evaporation_g_min = {self.evaporation_g_min}: must be >= 0")
        if not self.windows_min:
            raise AccuracyError("windows_min: at least one observation window is needed")
        samples_in_period = _multiple(self.period_min, self.interval_min, "period_min")
        _multiple(self.start_min, self.interval_min, "start_min")
        for window in self.windows_min:
            p = _multiple(window, self.interval_min, f"window {window:g} min")
            if p < 1 or p > samples_in_period:
                raise AccuracyError(f"window {window:g} min holds {p} samples; it must hold "
                                    f"1 to {samples_in_period} (the period of "
                                    f"{self.period_min:g} min at {self.interval_min:g} min)")


def _multiple(value: float, interval: float, name: str) -> int:
    """`value` as a whole number of intervals, or AccuracyError naming it."""
    if not math.isfinite(value):
        raise AccuracyError(f"{name} = {value}: not a finite number")
    n = round(value / interval)
    if abs(value / interval - n) > _MULTIPLE_TOLERANCE:
        raise AccuracyError(f"{name} = {value:g} min is not a whole number of sample intervals "
                            f"({interval:g} min)")
    return int(n)


@dataclass(frozen=True)
class TrumpetPoint:
    """Extremes of the windowed mean error for one observation window length."""

    window_min: float
    ep_max_pct: float
    ep_min_pct: float
    positions: int  # m: how many windows fit in the analysis period


@dataclass(frozen=True)
class AccuracyResult:
    inputs: AccuracyInputs
    mean_error_pct: float  # A
    trumpet: list[TrumpetPoint]
    times_min: FloatArray = field(repr=False)  # end of each flow sample's interval
    flows_ml_h: FloatArray = field(repr=False)  # Q_i, every sample of the series
    samples: int = 0  # balance readings used (flows + 1)

    @property
    def period_end_min(self) -> float:
        return self.inputs.start_min + self.inputs.period_min

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of `pumpctl accuracy analyse --json` (and `run --json`)."""
        inputs = asdict(self.inputs)
        inputs["windows_min"] = list(self.inputs.windows_min)
        inputs["samples"] = self.samples
        return {
            "inputs": inputs,
            "mean_error_pct": self.mean_error_pct,
            "trumpet": [{"window_min": p.window_min, "ep_max_pct": p.ep_max_pct,
                         "ep_min_pct": p.ep_min_pct, "positions": p.positions}
                        for p in self.trumpet],
            "startup": [{"t_min": float(t), "flow_ml_h": float(q)}
                        for t, q in zip(self.times_min, self.flows_ml_h, strict=True)],
        }


def flows_ml_h(masses_g: Sequence[float] | FloatArray, *, interval_min: float,
               density_g_ml: float = WATER_DENSITY_G_ML,
               evaporation_g_min: float = 0.0) -> FloatArray:
    """Q_i = 60 (W_i - W_{i-1} + E S) / (S d) for i = 1..n-1: one flow per interval, mL/h.

    E, the beaker's measured evaporation in g/min, is what left the beaker other than into
    the balance reading: adding it back gives what the pump delivered.
    """
    w = np.asarray(masses_g, dtype=np.float64)
    if w.ndim != 1:
        raise AccuracyError(f"masses: expected one series, got an array of shape {w.shape}")
    if not np.all(np.isfinite(w)):
        bad = int(np.flatnonzero(~np.isfinite(w))[0])
        raise AccuracyError(f"mass sample {bad}: {w[bad]} is not a finite number")
    gained = np.diff(w) + evaporation_g_min * interval_min
    return 60.0 * gained / (interval_min * density_g_ml)


def window_means(errors_pct: FloatArray, samples: int) -> FloatArray:
    """Mean of every run of `samples` consecutive values (m = n - p + 1 of them)."""
    windows = np.lib.stride_tricks.sliding_window_view(errors_pct, samples)
    means: FloatArray = windows.mean(axis=1)
    return means


def analyse(masses_g: Sequence[float] | FloatArray, inputs: AccuracyInputs) -> AccuracyResult:
    """The standard's analysis of a mass series read every `inputs.interval_min` from t = 0.

    The analysis period covers the flow samples whose intervals lie in
    [start, start + period]; the series must reach its end.
    """
    inputs.check()
    w = np.asarray(masses_g, dtype=np.float64)
    q = flows_ml_h(w, interval_min=inputs.interval_min, density_g_ml=inputs.density_g_ml,
                   evaporation_g_min=inputs.evaporation_g_min)
    s = inputs.interval_min
    first = _multiple(inputs.start_min, s, "start_min")  # index of the period's first flow
    count = _multiple(inputs.period_min, s, "period_min")
    if first + count > q.size:
        have = (w.size - 1) * s if w.size else 0.0
        raise AccuracyError(
            f"the analysis period ends at {inputs.start_min + inputs.period_min:g} min "
            f"(start {inputs.start_min:g} + period {inputs.period_min:g}) but the series "
            f"({w.size} readings every {s:g} min) ends at {have:g} min")
    r = inputs.rate_ml_h
    errors = 100.0 * (q[first:first + count] - r) / r
    mean_error = float(errors.mean())
    trumpet = []
    for window in inputs.windows_min:
        p = _multiple(window, s, "window")
        means = window_means(errors, p)
        trumpet.append(TrumpetPoint(window_min=float(window), ep_max_pct=float(means.max()),
                                    ep_min_pct=float(means.min()), positions=int(means.size)))
    times = s * np.arange(1, q.size + 1, dtype=np.float64)
    return AccuracyResult(inputs=inputs, mean_error_pct=mean_error, trumpet=trumpet,
                          times_min=times, flows_ml_h=q, samples=int(w.size))

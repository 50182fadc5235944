"""Which rates a pump can actually be told, and how to plan around the ones it cannot.

A New Era pump takes numbers of at most 4 digits with at most 3 decimals, in one of four rate
units. 0.5 mg/kg x 71.3 kg over 40 min is 53.475 mL/h: not expressible in mL/h (53.47 or
53.48), but 891.25 µL/min is not expressible either (891.2 or 891.3). Rounding would change
the dose, so a step whose rate cannot be expressed is split into two segments at the
neighbouring expressible rates, with durations chosen so the volume is exactly the planned one
and the duration the planned one. The unit is chosen once per program (a New Era pump cannot
change rate units while running) to make the worst rate deviation smallest.

Everything here is exact (`Fraction`); the driver can call `format_rate` with a compiled
segment's float rate and gets the exact text back (floats carry the decimal they came from).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from pumpctl.plan.library import NumberFormat, PumpProfile

# Shorter segments than this are not worth a rate change on a serial line: fold them into
# the neighbouring rate instead (changes the step's duration by well under a second).
MIN_SEGMENT_S = Fraction(1)


def _as_fraction(value: Fraction | float | int) -> Fraction:
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return Fraction(repr(value))
    return Fraction(value)


def decimals_allowed(value: Fraction, fmt: NumberFormat) -> int:
    """How many decimals a number of this size may carry (4 digits: 9.999, 99.99, 999.9, 9999)."""
    int_digits = max(1, len(str(math.floor(value)))) if value >= 1 else 1
    return max(0, min(fmt.max_decimals, fmt.max_digits - int_digits))


def max_number(fmt: NumberFormat) -> Fraction:
    return Fraction(10**fmt.max_digits - 1)


def is_representable(value: Fraction | float, fmt: NumberFormat) -> bool:
    v = _as_fraction(value)
    if v < 0 or v > max_number(fmt):
        return False
    scaled = v * 10 ** decimals_allowed(v, fmt)
    return scaled.denominator == 1


def floor_representable(value: Fraction | float, fmt: NumberFormat) -> Fraction:
    """The largest expressible number <= value (0 if value < the smallest step)."""
    v = _as_fraction(value)
    if v <= 0:
        return Fraction(0)
    top = max_number(fmt)
    if v >= top:
        return top
    d = decimals_allowed(v, fmt)
    return Fraction(math.floor(v * 10**d), 10**d)


def ceil_representable(value: Fraction | float, fmt: NumberFormat) -> Fraction | None:
    """The smallest expressible number >= value, or None above the largest one."""
    v = _as_fraction(value)
    if v <= 0:
        return Fraction(0)
    if v > max_number(fmt):
        return None
    d = decimals_allowed(v, fmt)
    return Fraction(math.ceil(v * 10**d), 10**d)


def format_number(value: Fraction | float, fmt: NumberFormat) -> str:
    """The pump's text for an expressible number ("52.50", "0.125", "1500"); else ValueError."""
    v = _as_fraction(value)
    if not is_representable(v, fmt):
        raise ValueError(f"{float(v)} cannot be written in {fmt.max_digits} digits")
    d = decimals_allowed(v, fmt)
    scaled = v * 10**d
    text = str(scaled.numerator)
    if d == 0:
        return text
    text = text.rjust(d + 1, "0")
    return f"{text[:-d]}.{text[-d:]}"


def format_rate(rate_ml_h: Fraction | float, unit: str, profile: PumpProfile) -> str:
    """The number to send for `rate_ml_h` in `unit` (e.g. "891.2" for 53.472 mL/h in UM)."""
    size = profile.rate_unit_sizes()[unit]
    return format_number(_as_fraction(rate_ml_h) / size, profile.number_format)


@dataclass(frozen=True, slots=True)
class Piece:
    """One compiled constant-rate piece of a step (exact)."""

    duration_s: Fraction
    rate_ml_h: Fraction
    volume_ml: Fraction


def split_step(
    volume_ml: Fraction,
    duration_s: Fraction,
    unit: str,
    profile: PumpProfile,
    rate_range: tuple[float, float],
) -> list[Piece] | None:
    """Pieces delivering exactly `volume_ml` in (about) `duration_s` at rates expressible in
    `unit` and inside `rate_range`; None if that unit cannot do it."""
    size = profile.rate_unit_sizes()[unit]
    fmt = profile.number_format
    lo_ok, hi_ok = rate_range
    ideal = volume_ml * 3600 / duration_s  # mL/h
    in_units = ideal / size

    def allowed(rate: Fraction) -> bool:
        return rate > 0 and lo_ok <= rate <= hi_ok

    if is_representable(in_units, fmt):
        return [Piece(duration_s, ideal, volume_ml)] if allowed(ideal) else None
    lo_u, hi_u = floor_representable(in_units, fmt), ceil_representable(in_units, fmt)
    if hi_u is None or lo_u <= 0:
        return None
    lo, hi = lo_u * size, hi_u * size
    if not (allowed(lo) and allowed(hi)):
        return None
    # lo*t_lo + hi*t_hi = 3600*V and t_lo + t_hi = T, solved exactly.
    t_hi = (3600 * volume_ml - lo * duration_s) / (hi - lo)
    t_lo = duration_s - t_hi
    if t_hi < MIN_SEGMENT_S:
        return [Piece(3600 * volume_ml / lo, lo, volume_ml)]
    if t_lo < MIN_SEGMENT_S:
        return [Piece(3600 * volume_ml / hi, hi, volume_ml)]
    v_lo = lo * t_lo / 3600
    return [Piece(t_lo, lo, v_lo), Piece(t_hi, hi, volume_ml - v_lo)]


@dataclass(frozen=True, slots=True)
class Compiled:
    unit: str
    pieces: list[list[Piece]]  # per step
    worst_deviation: Fraction  # relative


def compile_steps(
    steps: Sequence[tuple[Fraction, Fraction]],
    profile: PumpProfile,
    rate_range: tuple[float, float],
) -> Compiled | None:
    """Split every (volume_ml, duration_s) step for the one rate unit with the smallest worst
    relative rate deviation (ties: the profile's unit order); None if no unit works."""
    best: Compiled | None = None
    for unit in profile.rate_units:
        per_step: list[list[Piece]] = []
        worst = Fraction(0)
        for volume, duration in steps:
            pieces = split_step(volume, duration, unit, profile, rate_range)
            if pieces is None:
                break
            ideal = volume * 3600 / duration
            worst = max([worst, *(abs(p.rate_ml_h - ideal) / ideal for p in pieces)])
            per_step.append(pieces)
        else:
            if best is None or worst < best.worst_deviation:
                best = Compiled(unit, per_step, worst)
    return best


def program_rate_unit(rates_ml_h: Sequence[float], profile: PumpProfile) -> str:
    """The first of the profile's rate units that writes every rate exactly.

    For a compiled program this is the unit the compiler chose (or an equally exact one), so a
    driver can call it with `[s.rate_ml_h for s in program.segments]`.
    """
    sizes = profile.rate_unit_sizes()
    for unit, size in sizes.items():
        if all(is_representable(_as_fraction(r) / size, profile.number_format) for r in rates_ml_h):
            return unit
    raise ValueError("no rate unit of the pump profile expresses all these rates exactly")

"""New Era numbers: at most 4 digits, at most 3 after the point, in the pump's own units.

Writing a value exactly or refusing it (`PumpOutOfRange` naming the value and the limit),
never truncating; choosing rate and volume units in which a value can be written; reading
the numbers of rate, volume and dispensed replies. Pure functions, no I/O. The same rule, as
data, is in the pump profile (configs/pumps/newera-ne1000.yaml) for everything above the
driver; tests check the two agree.
"""

from __future__ import annotations

import functools
import math
import re
from enum import StrEnum

from pumpctl.drivers.base import PumpOutOfRange, PumpProtocolError

MAX_DIGITS = 4
MAX_DECIMALS = 3


class RateUnit(StrEnum):
    """Rate units as the pump spells them, each with its size in mL/h."""

    UL_MIN = "UM"
    ML_MIN = "MM"
    UL_H = "UH"
    ML_H = "MH"

    @property
    def ml_h(self) -> float:
        return _RATE_UNIT_ML_H[self]

    @property
    def label(self) -> str:
        return _RATE_UNIT_LABEL[self]


_RATE_UNIT_ML_H = {
    RateUnit.UL_MIN: 0.06,
    RateUnit.ML_MIN: 60.0,
    RateUnit.UL_H: 0.001,
    RateUnit.ML_H: 1.0,
}
_RATE_UNIT_LABEL = {
    RateUnit.UL_MIN: "µL/min",
    RateUnit.ML_MIN: "mL/min",
    RateUnit.UL_H: "µL/h",
    RateUnit.ML_H: "mL/h",
}
# Preference when several units express a rate exactly: the unit people read most easily.
RATE_UNIT_PREFERENCE = (RateUnit.ML_H, RateUnit.UL_H, RateUnit.UL_MIN, RateUnit.ML_MIN)


class VolumeUnit(StrEnum):
    UL = "UL"
    ML = "ML"

    @property
    def ml(self) -> float:
        return 0.001 if self is VolumeUnit.UL else 1.0


def format_number(value: float, *, field: str = "value") -> str:
    """Write `value` as the pump reads it, exactly, or refuse.

    At most 4 digits in all (a leading "0." counts its zero) and at most 3 after the point.
    A value that would need more is refused with the limit in the message, never rounded.
    """
    if not math.isfinite(value) or value < 0:
        raise PumpOutOfRange(f"{field} {value!r} is not a non-negative finite number")
    for decimals in range(MAX_DECIMALS + 1):
        scaled = value * 10**decimals
        whole = round(scaled)
        if abs(scaled - whole) <= 1e-9 * max(1.0, abs(scaled)):
            integer_part, fraction = divmod(whole, 10**decimals)
            digits = len(str(integer_part)) + decimals
            if digits > MAX_DIGITS:
                break
            if decimals == 0:
                return str(integer_part)
            return f"{integer_part}.{fraction:0{decimals}d}"
    raise PumpOutOfRange(
        f"{field} {value:g} cannot be written in {MAX_DIGITS} digits with at most "
        f"{MAX_DECIMALS} decimals (0.001 to 9999)"
    )


def is_expressible(value: float) -> bool:
    try:
        format_number(value)
    except PumpOutOfRange:
        return False
    return True


_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)")


def parse_number(text: str, *, field: str = "number") -> float:
    if not _NUMBER.fullmatch(text):
        raise PumpProtocolError(f"{field}: expected a number, pump sent {text!r}")
    return float(text)


def encode_rate(ml_h: float, *, units: RateUnit | None = None,
                prefer: RateUnit | None = None) -> tuple[str, RateUnit]:
    """Choose units in which `ml_h` can be written exactly; `units` forces one (while pumping
    the pump refuses a change of units). `prefer` is tried first (the units already set)."""
    if not math.isfinite(ml_h) or ml_h <= 0:
        raise PumpOutOfRange(f"rate {ml_h!r} mL/h must be a positive number")
    candidates: tuple[RateUnit, ...]
    if units is not None:
        candidates = (units,)
    elif prefer is not None:
        candidates = (prefer, *(u for u in RATE_UNIT_PREFERENCE if u is not prefer))
    else:
        candidates = RATE_UNIT_PREFERENCE
    for unit in candidates:
        value = ml_h / unit.ml_h
        if is_expressible(value) and value > 0:
            return format_number(value, field="rate"), unit
    where = f"in {units.label} (units cannot change while pumping)" if units else (
        "in any of mL/h, µL/h, µL/min, mL/min")
    raise PumpOutOfRange(
        f"rate {ml_h:g} mL/h cannot be written {where} with at most {MAX_DIGITS} digits")


def encode_volume(ml: float, *, prefer: VolumeUnit | None = None) -> tuple[str, VolumeUnit]:
    if not math.isfinite(ml) or ml < 0:
        raise PumpOutOfRange(f"volume {ml!r} mL must be zero or positive")
    order: tuple[VolumeUnit, ...] = (VolumeUnit.ML, VolumeUnit.UL)
    if prefer is not None:
        order = (prefer, *(u for u in order if u is not prefer))
    for unit in order:
        value = ml / unit.ml
        if is_expressible(value):
            return format_number(value, field="volume"), unit
    raise PumpOutOfRange(
        f"volume {ml:g} mL cannot be written in mL or µL with at most {MAX_DIGITS} digits")


# Replies parsed on every status poll: patterns compiled once, units looked up in plain dicts
# (calling an Enum class to look a member up is several times slower than a dict).
_RATE_REPLY = re.compile(r"([\d.]+)(UM|MM|UH|MH)")
_VOLUME_REPLY = re.compile(r"([\d.]+)(UL|ML)")
_DISPENSED_REPLY = re.compile(r"I([\d.]+)W([\d.]+)(UL|ML)")
# The same shape with both numbers already as parse_number accepts them.
_DISPENSED_NUMBERS = re.compile(r"I(\d+\.?\d*|\.\d+)W(\d+\.?\d*|\.\d+)(UL|ML)")
_RATE_UNITS = {unit.value: (unit, unit.ml_h) for unit in RateUnit}
_VOLUME_UNITS = {unit.value: (unit, unit.ml) for unit in VolumeUnit}
# Replies repeat poll after poll (the same rate, the same status); their parses are immutable
# and kept in bounded caches (least recently used first out, so changing volumes cannot grow
# them). A reply that fails to parse raises and is not cached.
_MEMO_MAX = 128


@functools.lru_cache(maxsize=_MEMO_MAX)
def parse_rate(data: str) -> tuple[float, RateUnit]:
    """`52.50MH` -> (52.5 mL/h, MH)."""
    match = _RATE_REPLY.fullmatch(data)
    if not match:
        raise PumpProtocolError(f"rate reply {data!r} is not <number><UM|MM|UH|MH>")
    unit, ml_h = _RATE_UNITS[match[2]]
    return parse_number(match[1], field="rate") * ml_h, unit


def parse_volume(data: str) -> tuple[float, VolumeUnit]:
    match = _VOLUME_REPLY.fullmatch(data)
    if not match:
        raise PumpProtocolError(f"volume reply {data!r} is not <number><UL|ML>")
    unit, ml = _VOLUME_UNITS[match[2]]
    return parse_number(match[1], field="volume") * ml, unit


def parse_dispensed(data: str) -> tuple[float, float]:
    """`I35.00W0.000ML` -> (infused mL, withdrawn mL)."""
    valid = _DISPENSED_NUMBERS.fullmatch(data)
    if valid is not None:  # the usual case, in one match; anything else is explained below
        _, ml = _VOLUME_UNITS[valid[3]]
        return float(valid[1]) * ml, float(valid[2]) * ml
    match = _DISPENSED_REPLY.fullmatch(data)
    if not match:
        raise PumpProtocolError(f"dispensed reply {data!r} is not I<n>W<n><UL|ML>")
    _, ml = _VOLUME_UNITS[match[3]]
    return (parse_number(match[1], field="infused") * ml,
            parse_number(match[2], field="withdrawn") * ml)

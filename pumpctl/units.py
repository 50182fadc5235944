"""Quantities at the boundary: text such as "0.5 mg/kg" or "40 min" becomes an exact number.

Plans, libraries and command-line options carry quantities as text with units. pint reads
the unit expression and supplies conversion factors; this module turns the result into an
exact `Fraction` in one canonical unit per kind (mg, mg/kg, mL, mL/h, s, kg, ...), so the
compiler can do dose arithmetic exactly and every later stage works in plain numbers.

Two things pint alone does not catch are checked here:
- a number without a unit ("40") is refused: a bare number in a dose plan is ambiguous;
- "mg/kg" and "mg" are different kinds even though pint sees mg/kg as dimensionless: a
  per-weight kind needs a mass in the denominator ("0.5 mg" where mg/kg is needed is refused,
  and so is "0.5 %").

The number is read by `Decimal`, never evaluated by pint, so input such as "9**9**9 mg" is a
format error instead of an expensive computation.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from functools import cache, lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pumpctl.errors import PumpctlError


class UnitsError(PumpctlError):
    """A quantity is missing its unit, has the wrong kind of unit, or is not a number."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class Kind(StrEnum):
    """The kinds of quantity a plan may carry; each value is its canonical unit."""

    DOSE = "mg"
    DOSE_PER_KG = "mg/kg"
    VOLUME = "mL"
    VOLUME_PER_KG = "mL/kg"
    CONCENTRATION = "mg/mL"
    DURATION = "s"
    WEIGHT = "kg"
    DOSE_RATE = "mg/h"
    DOSE_RATE_PER_KG = "mg/kg/h"
    RATE = "mL/h"
    LENGTH = "mm"
    SPEED = "mm/min"
    DENSITY = "g/mL"  # of the liquid on a balance (gravimetric accuracy)
    MASS_RATE = "mg/min"  # evaporation from a balance's beaker


# Per-weight kinds: the quantity is <base kind> divided by a mass.
_PER_KG_BASE: dict[Kind, Kind] = {
    Kind.DOSE_PER_KG: Kind.DOSE,
    Kind.VOLUME_PER_KG: Kind.VOLUME,
    Kind.DOSE_RATE_PER_KG: Kind.DOSE_RATE,
}

# Examples shown in error messages so the user sees what a valid value looks like.
_EXAMPLE: dict[Kind, str] = {
    Kind.DOSE: "35 mg",
    Kind.DOSE_PER_KG: "0.5 mg/kg",
    Kind.VOLUME: "35 mL",
    Kind.VOLUME_PER_KG: "0.5 mL/kg",
    Kind.CONCENTRATION: "1 mg/mL",
    Kind.DURATION: "40 min",
    Kind.WEIGHT: "70 kg",
    Kind.DOSE_RATE: "30 mg/h",
    Kind.DOSE_RATE_PER_KG: "0.5 mg/kg/h",
    Kind.RATE: "52.5 mL/h",
    Kind.LENGTH: "26.59 mm",
    Kind.SPEED: "51 mm/min",
    Kind.DENSITY: "0.998 g/mL",
    Kind.MASS_RATE: "0.05 mg/min",
}

_MASS_KINDS = frozenset(
    {Kind.DOSE, Kind.DOSE_PER_KG, Kind.DOSE_RATE, Kind.DOSE_RATE_PER_KG, Kind.CONCENTRATION}
)

_NUMBER = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf(?:inity)?))"
    r"\s*(?P<unit>.*?)\s*$",
    re.IGNORECASE,
)
# Unit names joined by '/' or '*': no numbers, powers or parentheses are needed in a plan.
_UNIT_EXPR = re.compile(r"^[A-Za-zµμ_%]+(?:\s*[/*·]\s*[A-Za-zµμ_%]+)*$")

_MAX_TEXT = 64


if TYPE_CHECKING:
    import pint


@cache
def registry() -> pint.UnitRegistry:
    """The one pint registry of the process (building one is slow; units must not mix).

    pint is imported here, not at the top, so modules that only name a `Kind` or format a
    number (most CLI commands) do not pay for pint. Parsing pint's definition file is most of
    the cost of a registry, so pint's own disk cache (the user's cache directory) keeps the
    parsed form for the next process; a cache that cannot be created or read (read-only home,
    a file half-written by a concurrent process) only costs that time again.
    """
    pint = _import_pint()
    try:
        return pint.UnitRegistry(cache_folder=":auto:")
    except Exception:  # the cache is an optimisation, never a reason to fail
        return pint.UnitRegistry()


def _import_pint() -> ModuleType:
    """pint, without making it load numpy when nothing else has.

    pint imports numpy if it can, only to accept arrays as magnitudes; this module gives it
    nothing but scalars, and numpy was half of what `pint` cost to import (a fifth of a
    `pumpctl plan check`). numpy is hidden from pint's import only when it is not loaded yet;
    a process that uses numpy itself (the simulators, the accuracy analysis) imports it
    first and pint sees it as usual. Either way the conversions are the same scalars
    (tests/plan/test_units.py compares both).
    """
    if "pint" in sys.modules or "numpy" in sys.modules:
        import pint

        return pint
    sys.modules["numpy"] = None  # type: ignore[assignment]  # "not installed", for pint
    try:
        import pint
    finally:
        del sys.modules["numpy"]
    return pint


@dataclass(frozen=True, slots=True)
class Measured:
    """An exact quantity in its kind's canonical unit (`kind.value`)."""

    kind: Kind
    value: Fraction

    @property
    def f(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return describe(self.value, self.kind)


def format_number(value: Fraction | float, digits: int = 6) -> str:
    """Short human form of a number: no trailing zeros, at most `digits` significant digits."""
    return f"{float(value):.{digits}g}"


def describe(value: Fraction | float, kind: Kind) -> str:
    """A value of `kind` as a person would write it (durations in min, h or d when whole)."""
    if kind is Kind.DURATION:
        seconds = Fraction(value)
        # days only from a week up ("72 h" reads better than "3 d" on a monitoring sheet)
        for unit, size, least in (("d", 86400, 7 * 86400), ("h", 3600, 3600), ("min", 60, 60)):
            if seconds >= least and (seconds / size).denominator == 1:
                return f"{seconds / size} {unit}"
        return f"{format_number(seconds)} s"
    if kind in _MASS_KINDS and 0 < abs(Fraction(value)) < Fraction(1, 10):
        # 0.001 mg/kg reads better as 1 µg/kg (dexmedetomidine-sized doses)
        return f"{format_number(Fraction(value) * 1000)} {kind.value.replace('mg', 'µg', 1)}"
    return f"{format_number(value)} {kind.value}"


@cache
def _factor(source: str, target: str) -> Fraction:
    """Exact conversion factor between two pint unit expressions.

    pint's factors are floats (0.06 comes back as 0.060000000000000005); every factor
    between the units used here is a short decimal, so rounding to 12 significant digits
    recovers it exactly.
    """
    ureg = registry()
    magnitude = ureg.Quantity(1, ureg.parse_units(source)).to(ureg.parse_units(target)).magnitude
    return Fraction(f"{float(magnitude):.12g}")


def _dims(unit: Any) -> Any:
    return registry().Quantity(1, unit).dimensionality


def _split_per_mass(unit: Any) -> tuple[Any, Any] | None:
    """Split a unit into (rest, mass) if it has exactly one mass unit to the power -1."""
    ureg = registry()
    items = list(ureg.Quantity(1, unit).unit_items())
    per_mass = [
        name for name, exp in items if exp == -1 and _dims(ureg.parse_units(name)) == _dims(ureg.kg)
    ]
    if len(per_mass) != 1:
        return None
    rest = ureg.parse_units("dimensionless")
    for name, exp in items:
        if name == per_mass[0] and exp == -1:
            continue
        rest = rest * ureg.parse_units(name) ** exp
    return rest, ureg.parse_units(per_mass[0])


@lru_cache(maxsize=512)
def _unit_factor(unit_text: str, kind: Kind) -> Fraction | None:
    """Factor from `unit_text` to `kind`'s canonical unit, or None if it is another kind.

    Cached: plans use a handful of unit spellings and pint's parsing is the slow part.
    """
    ureg = registry()
    unit = ureg.parse_units(unit_text)
    if kind in _PER_KG_BASE:
        split = _split_per_mass(unit)
        if split is None:
            return None
        rest, mass = split
        base = _PER_KG_BASE[kind]
        if _dims(rest) != _dims(ureg.parse_units(base.value)):
            return None
        return _factor(str(rest), base.value) / _factor(str(mass), "kg")
    if _dims(unit) != _dims(ureg.parse_units(kind.value)):
        return None
    return _factor(str(unit), kind.value)


@lru_cache(maxsize=512)
def _known_unit(unit_text: str) -> bool:
    ureg = registry()
    pint = _import_pint()
    try:
        ureg.parse_units(unit_text)
    except (pint.errors.PintError, AttributeError, TypeError, ValueError, KeyError):
        return False
    return True


def parse_quantity(raw: object, kinds: Kind | Sequence[Kind], field: str = "") -> Measured:
    """Read `raw` (text such as "0.5 mg/kg") as one of `kinds`, exactly.

    Raises UnitsError naming `field` for a bare number, an unknown or wrong unit, NaN or
    infinity. Sign and zero are the caller's business (some fields allow zero).
    """
    wanted = (kinds,) if isinstance(kinds, Kind) else tuple(kinds)
    examples = " or ".join(f"'{_EXAMPLE[k]}'" for k in wanted)
    if isinstance(raw, bool) or raw is None:
        raise UnitsError(field, f"expected a quantity such as {examples}, got {raw!r}")
    if isinstance(raw, int | float):
        raise UnitsError(field, f"{raw!r} has no unit; write it with one, e.g. {examples}")
    if not isinstance(raw, str):
        raise UnitsError(field, f"expected a quantity such as {examples}, got {type(raw).__name__}")
    if len(raw) > _MAX_TEXT:
        raise UnitsError(field, f"quantity text longer than {_MAX_TEXT} characters")
    match = _NUMBER.match(raw)
    if match is None:
        raise UnitsError(field, f"{raw!r} is not a number with a unit, e.g. {examples}")
    try:
        number = Decimal(match["num"])
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise UnitsError(field, f"{raw!r}: bad number") from None
    if not number.is_finite():
        raise UnitsError(field, f"{raw!r} is not a finite number")
    if abs(number.adjusted()) > 12:
        raise UnitsError(field, f"{raw!r}: number out of range")
    unit_text = match["unit"].replace("μ", "µ")
    if not unit_text:
        raise UnitsError(field, f"{raw!r} has no unit; write it with one, e.g. {examples}")
    if not _UNIT_EXPR.match(unit_text):
        raise UnitsError(field, f"{raw!r}: cannot read unit {unit_text!r}, e.g. {examples}")
    if not _known_unit(unit_text):
        raise UnitsError(field, f"{raw!r}: unknown unit {unit_text!r}, e.g. {examples}")
    value = Fraction(number)
    for kind in wanted:
        factor = _unit_factor(unit_text, kind)
        if factor is not None:
            return Measured(kind, value * factor)
    raise UnitsError(field, f"{raw!r} has the wrong unit: expected {examples}")


def exact(value: float) -> Fraction:
    """The decimal a float was written as (71.3 -> 713/10), for exact arithmetic on inputs."""
    return Fraction(repr(float(value)))

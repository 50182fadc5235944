"""Quantity parsing at the boundary: exact values, and one clear error for each bad input."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pumpctl.units import Kind, UnitsError, describe, parse_quantity


@pytest.mark.parametrize(
    ("text", "kinds", "kind", "value"),
    [
        ("0.5 mg/kg", Kind.DOSE_PER_KG, Kind.DOSE_PER_KG, Fraction(1, 2)),
        ("500 µg/kg", Kind.DOSE_PER_KG, Kind.DOSE_PER_KG, Fraction(1, 2)),
        ("500 ug/kg", Kind.DOSE_PER_KG, Kind.DOSE_PER_KG, Fraction(1, 2)),
        ("0.0005 g/kg", Kind.DOSE_PER_KG, Kind.DOSE_PER_KG, Fraction(1, 2)),
        ("40 min", Kind.DURATION, Kind.DURATION, Fraction(2400)),
        ("1.5 h", Kind.DURATION, Kind.DURATION, Fraction(5400)),
        ("7 d", Kind.DURATION, Kind.DURATION, Fraction(7 * 86400)),
        ("1 mg/mL", Kind.CONCENTRATION, Kind.CONCENTRATION, Fraction(1)),
        ("4 µg/mL", Kind.CONCENTRATION, Kind.CONCENTRATION, Fraction(4, 1000)),
        ("70 kg", Kind.WEIGHT, Kind.WEIGHT, Fraction(70)),
        ("71.3 kg", Kind.WEIGHT, Kind.WEIGHT, Fraction(713, 10)),
        ("1 µL/min", Kind.RATE, Kind.RATE, Fraction(6, 100)),
        ("0.5 mg/kg/h", Kind.DOSE_RATE_PER_KG, Kind.DOSE_RATE_PER_KG, Fraction(1, 2)),
        ("0.5 mg/kg/min", Kind.DOSE_RATE_PER_KG, Kind.DOSE_RATE_PER_KG, Fraction(30)),
        ("26.59 mm", Kind.LENGTH, Kind.LENGTH, Fraction(2659, 100)),
        # a choice of kinds: the first that fits wins
        ("35 mg", (Kind.DOSE_PER_KG, Kind.DOSE), Kind.DOSE, Fraction(35)),
        ("0.5 mL/kg", (Kind.VOLUME_PER_KG, Kind.VOLUME), Kind.VOLUME_PER_KG, Fraction(1, 2)),
    ],
)
def test_parses_exactly(
    text: str, kinds: Kind | tuple[Kind, ...], kind: Kind, value: Fraction
) -> None:
    measured = parse_quantity(text, kinds, "field")
    assert measured.kind is kind
    assert measured.value == value


@pytest.mark.parametrize(
    ("raw", "kinds", "fragment"),
    [
        ("40", Kind.DURATION, "has no unit"),
        (40, Kind.DURATION, "has no unit"),
        (0.5, Kind.DOSE_PER_KG, "has no unit"),
        ("0.5 mg", Kind.DOSE_PER_KG, "wrong unit"),
        ("0.5 %", Kind.DOSE_PER_KG, "wrong unit"),
        ("0.5 mg/kg", Kind.DOSE, "wrong unit"),
        ("40 mL", Kind.DURATION, "wrong unit"),
        ("1 mg/kg", Kind.CONCENTRATION, "wrong unit"),
        ("nan mg/kg", Kind.DOSE_PER_KG, "not a finite number"),
        ("inf min", Kind.DURATION, "not a finite number"),
        ("5 furlongs/fortnight", Kind.RATE, "wrong unit"),  # pint knows them: a speed, not a rate
        ("5 blorps/h", Kind.RATE, "unknown unit"),
        ("five mg", Kind.DOSE, "not a number"),
        ("9**9**9 mg", Kind.DOSE, "cannot read unit"),  # never evaluated
        ("1e400 mg", Kind.DOSE, "out of range"),
        ("2 mg(kg)", Kind.DOSE_PER_KG, "cannot read unit"),
        (None, Kind.DOSE, "expected a quantity"),
        (True, Kind.DOSE, "expected a quantity"),
        (["1 mg"], Kind.DOSE, "expected a quantity"),
        ("1" * 100 + " mg", Kind.DOSE, "longer than"),
    ],
)
def test_bad_quantities_are_one_line_errors_naming_the_field(
    raw: object, kinds: Kind, fragment: str
) -> None:
    with pytest.raises(UnitsError) as info:
        parse_quantity(raw, kinds, "steps[0].dose")
    message = str(info.value)
    assert message.startswith("steps[0].dose: ")
    assert fragment in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_describe_reads_like_a_person_wrote_it() -> None:
    assert describe(Fraction(2400), Kind.DURATION) == "40 min"
    assert describe(Fraction(6000), Kind.DURATION) == "100 min"
    assert describe(Fraction(72 * 3600), Kind.DURATION) == "72 h"
    assert describe(Fraction(7 * 86400), Kind.DURATION) == "7 d"
    assert describe(Fraction(1, 1000), Kind.DOSE_PER_KG) == "1 µg/kg"
    assert describe(Fraction(35), Kind.DOSE) == "35 mg"


_CONVERT = """
import sys
if sys.argv[1] == "with-numpy":
    import numpy  # noqa: F401  (loaded first, as in a process that uses it)
from pumpctl.units import Kind, parse_quantity
texts = [("0.5 mg/kg", Kind.DOSE_PER_KG), ("500 ug/kg/h", Kind.DOSE_RATE_PER_KG),
         ("875 uL/min", Kind.RATE), ("1.5 h", Kind.DURATION), ("26.59 mm", Kind.LENGTH),
         ("0.06 g/mL", Kind.CONCENTRATION), ("51 mm/min", Kind.SPEED), ("2 L", Kind.VOLUME)]
values = [str(parse_quantity(t, k).value) for t, k in texts]
import pint.compat  # after the parsing, which imported pint as units.py does
print(pint.compat.HAS_NUMPY, values)
"""


def test_pint_without_numpy_converts_exactly_as_with_it() -> None:
    """units.py keeps numpy out of pint's import in processes that do not load numpy (the
    CLI); the conversions must not depend on it."""
    import subprocess
    import sys

    def convert(mode: str) -> tuple[str, str]:
        out = subprocess.run([sys.executable, "-c", _CONVERT, mode], capture_output=True,
                             text=True, timeout=120, check=True).stdout.split(" ", 1)
        return out[0], out[1]

    (has_np, with_np), (no_np, without) = convert("with-numpy"), convert("without")
    assert (has_np, no_np) == ("True", "False")
    assert with_np == without

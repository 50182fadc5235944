"""The New Era number format and the splitting of inexpressible rates."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pumpctl.plan.library import load_pump_profile
from pumpctl.plan.representable import (
    ceil_representable,
    compile_steps,
    floor_representable,
    format_number,
    format_rate,
    is_representable,
    program_rate_unit,
    split_step,
)

PROFILE = load_pump_profile("newera-ne1000")
FMT = PROFILE.number_format
RANGE_60 = PROFILE.rate_limits_ml_h(26.59)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Fraction(105, 2), "52.50"),
        (Fraction(1, 8), "0.125"),
        (Fraction(1500), "1500"),
        (Fraction(9999, 1000), "9.999"),
        (Fraction(8912, 10), "891.2"),
        (52.5, "52.50"),
        (Fraction(5347, 100), "53.47"),
    ],
)
def test_format_number_writes_the_pumps_text(value: Fraction | float, text: str) -> None:
    assert format_number(value, FMT) == text
    assert len(text.replace(".", "")) <= 4


@pytest.mark.parametrize(
    "value", [Fraction(53475, 1000), Fraction(1, 10000), Fraction(10000), Fraction(-1), 12.3456]
)
def test_inexpressible_numbers_are_refused(value: Fraction | float) -> None:
    assert not is_representable(value, FMT)
    with pytest.raises(ValueError):
        format_number(value, FMT)


def test_neighbours_bracket_the_value() -> None:
    v = Fraction(53475, 1000)
    assert floor_representable(v, FMT) == Fraction(5347, 100)
    assert ceil_representable(v, FMT) == Fraction(5348, 100)
    # crossing a decade: 99.995 rounds up to 100.0, which is expressible
    assert ceil_representable(Fraction(99995, 1000), FMT) == 100
    assert ceil_representable(Fraction(10001), FMT) is None


def test_brief_example_is_split_with_exact_volume_and_duration() -> None:
    # 0.5 mg/kg x 71.3 kg at 1 mg/mL over 40 min = 35.65 mL at 53.475 mL/h
    volume, duration = Fraction(3565, 100), Fraction(2400)
    compiled = compile_steps([(volume, duration)], PROFILE, RANGE_60)
    assert compiled is not None
    pieces = compiled.pieces[0]
    assert len(pieces) == 2
    assert sum(p.volume_ml for p in pieces) == volume
    assert sum(p.duration_s for p in pieces) == duration
    rates = sorted(p.rate_ml_h for p in pieces)
    ideal = volume * 3600 / duration
    assert rates[0] < ideal < rates[1]
    for p in pieces:
        text = format_rate(p.rate_ml_h, compiled.unit, PROFILE)
        assert Fraction(text) * PROFILE.rate_unit_sizes()[compiled.unit] == p.rate_ml_h
    # µL/min (891.2 / 891.3) is finer than mL/h (53.47 / 53.48) here
    assert compiled.unit == "UM"
    worst = max(abs(p.rate_ml_h - ideal) / ideal for p in pieces)
    assert compiled.worst_deviation == worst
    assert worst < Fraction(1, 10000)


def test_expressible_rate_is_one_segment_in_ml_per_hour() -> None:
    compiled = compile_steps([(Fraction(35), Fraction(2400))], PROFILE, RANGE_60)
    assert compiled is not None
    assert compiled.unit == "MH"
    assert compiled.pieces == [[compiled.pieces[0][0]]]
    assert compiled.pieces[0][0].rate_ml_h == Fraction(105, 2)
    assert compiled.worst_deviation == 0


def test_a_sliver_is_folded_into_one_segment_within_a_second() -> None:
    # ideal rate a hair above an expressible one: the high piece would last < 1 s
    ideal = Fraction(52500001, 1000000)  # 52.500001 mL/h: 0.24 s at 52.51 would be needed
    duration = Fraction(2400)
    volume = ideal * duration / 3600
    pieces = split_step(volume, duration, "MH", PROFILE, RANGE_60)
    assert pieces is not None and len(pieces) == 1
    assert pieces[0].volume_ml == volume
    assert abs(pieces[0].duration_s - duration) < 1


def test_rates_outside_the_pump_range_have_no_unit() -> None:
    assert compile_steps([(Fraction(60), Fraction(60))], PROFILE, RANGE_60) is None  # 3600 mL/h


def test_program_rate_unit_finds_a_unit_for_compiled_float_rates() -> None:
    assert program_rate_unit([53.472, 53.478], PROFILE) == "UM"
    assert program_rate_unit([52.5, 21.0], PROFILE) == "MH"
    assert format_rate(53.472, "UM", PROFILE) == "891.2"
    with pytest.raises(ValueError):
        program_rate_unit([53.4751234], PROFILE)

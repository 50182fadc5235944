"""A measurement's outcome and its one-line description (hil_tests/measurements.py)."""

from __future__ import annotations

import json
import math

import pytest

from hil_tests.measurements import Measurement, encode, failure_line


@pytest.mark.parametrize(("value", "low", "high", "outcome"), [
    (35.0, 34.99, 35.01, "pass"),
    (34.99, 34.99, 35.01, "pass"),  # limits are inclusive
    (35.02, 34.99, 35.01, "fail"),
    (34.0, 34.99, None, "fail"),
    (99.0, 34.99, None, "pass"),
    (-1, None, 0, "pass"),
    ("text", None, None, "pass"),  # no limits: recorded, never judged
    ("text", 0, 1, "fail"),
    (True, 0, 1, "fail"),  # a yes/no is not a number inside limits
    (math.nan, 0, 1, "fail"),
    (math.inf, 0, None, "fail"),
])
def test_outcome(value: float | str, low: float | None, high: float | None,
                 outcome: str) -> None:
    assert Measurement.judge(value, low, high) == outcome


def test_one_line_for_one_or_several_failures() -> None:
    a = Measurement("delivered volume", 35.2, "mL", 34.99, 35.01, "fail")
    b = Measurement("sessions", 9, "", 10, 10, "fail")
    assert a.describe() == "delivered volume = 35.2 mL, outside 34.99..35.01 mL"
    assert failure_line([a]) == "measurement failed: " + a.describe()
    assert failure_line([a, b]) == ("2 measurements failed: delivered volume = 35.2 mL, "
                                    "outside 34.99..35.01 mL; sessions = 9, outside 10..10")
    assert Measurement("dose", 35.0, "mg", None, 35.5).describe() == \
        "dose = 35 mg, within <= 35.5 mg"


def test_a_value_that_is_not_a_number_stays_valid_json() -> None:
    m = Measurement("volume", math.nan, "mL", 0, 1, "fail", "t::x")
    assert json.loads(encode(m.as_json()))["value"] == "nan"

"""Measurements in a test station's shape (OpenHTF): name, value, units, limits, outcome.

A test records what it measured with the `measure` fixture; a value outside its limits fails
the test once the test body has finished (every measurement is still recorded, so the evidence
shows all of them, not only the first one out of range), with one line naming each.

Measurements travel from the process that ran the test to the one writing the report as the
test item's `user_properties` (JSON text under the name `hil_measurement`): pytest-xdist sends
those with every report to the controller, and pytest's own junitxml writes them as
`<property>` elements, so `measurements.json` and `junit.xml` tell the same story under `-n`.
Tables of cells (the fault matrix) travel the same way under `hil_cell`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

MEASUREMENT = "hil_measurement"  # the user_properties name of one measurement
CELL = "hil_cell"  # ... of one table cell

Outcome = Literal["pass", "fail"]


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float | int | bool | str
    units: str
    low: float | None = None
    high: float | None = None
    outcome: Outcome = "pass"
    test: str = ""  # the test's node id

    @staticmethod
    def judge(value: float | int | bool | str, low: float | None,
              high: float | None) -> Outcome:
        """Pass when the value lies within [low, high] (a missing limit is open); a value
        that is not a finite number fails any limit it is given."""
        if low is None and high is None:
            return "pass"
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            return "fail"
        if low is not None and value < low:
            return "fail"
        if high is not None and value > high:
            return "fail"
        return "pass"

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def limits_text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g}..{self.high:g} {self.units}".rstrip()
        if self.low is not None:
            return f">= {self.low:g} {self.units}".rstrip()
        if self.high is not None:
            return f"<= {self.high:g} {self.units}".rstrip()
        return "no limits"

    def describe(self) -> str:
        """One line: `delivered volume = 35.2 mL, outside 34.99..35.01 mL`."""
        value = f"{self.value:.6g}" if isinstance(self.value, float) else str(self.value)
        where = "within" if self.passed else "outside"
        return f"{self.name} = {value} {self.units}".rstrip() + f", {where} {self.limits_text()}"

    def as_json(self) -> dict[str, Any]:
        """As a JSON object; a value that is not a finite number as text ("nan"), which
        strict JSON readers accept."""
        out = asdict(self)
        if isinstance(self.value, float) and not math.isfinite(self.value):
            out["value"] = str(self.value)
        return out


def failure_line(failed: Iterable[Measurement]) -> str:
    """The one line a failing test ends with."""
    items = [m.describe() for m in failed]
    head = "measurement failed" if len(items) == 1 else f"{len(items)} measurements failed"
    return f"{head}: " + "; ".join(items)


def encode(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


def from_properties(properties: Iterable[tuple[str, object]], name: str) -> list[dict[str, Any]]:
    """The recorded objects called `name` among a report's user_properties."""
    out = []
    for key, value in properties:
        if key == name and isinstance(value, str):
            out.append(json.loads(value))
    return out

"""Why a run stops: the safety monitor's vocabulary, shared by everything that stops a pump.

A `Breach` is one reason to stop, seen by the safety monitor, the controller or the pump
itself, with the value seen and the limit it broke; it becomes an `alarm` record in the
journal. When a sample gives several reasons at once, the most serious is acted on first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreachKind(StrEnum):
    OVER_INFUSION = "over_infusion"
    UNDER_INFUSION = "under_infusion"
    RATE_EXCEEDED = "rate_exceeded"
    TOTAL_REACHED = "total_reached"
    DOSE_EXCEEDED = "dose_exceeded"
    VOLUME_LIMIT = "volume_limit"  # volume-to-dispense not capped at the remaining plan
    READBACK_MISMATCH = "readback_mismatch"
    UNEXPECTED_STATE = "unexpected_state"
    NO_STATUS = "no_status"
    PUMP_ALARM = "pump_alarm"
    PUMP_ERROR = "pump_error"  # a command that failed on the wire: the outcome is in doubt
    COMMAND_REFUSED = "command_refused"
    SENSOR_ERROR = "sensor_error"  # the delivered-volume sensor failed or read nonsense
    CONTROLLER_ERROR = "controller_error"


@dataclass(frozen=True)
class Breach:
    """One reason to stop: what was seen, against which limit."""

    kind: BreachKind
    message: str
    value: float | str | None = None
    limit: float | str | None = None
    fault: bool = True  # False only when the plan is simply done (total reached)
    source: str = "safety"

    def as_record(self) -> dict[str, object]:
        return {"kind": self.kind.value, "source": self.source, "message": self.message,
                "value": self.value, "limit": self.limit}


# Most serious first: what a sample with several breaches is reported and stopped for.
_ORDER = [BreachKind.OVER_INFUSION, BreachKind.DOSE_EXCEEDED, BreachKind.RATE_EXCEEDED,
          BreachKind.PUMP_ALARM, BreachKind.UNEXPECTED_STATE, BreachKind.READBACK_MISMATCH,
          BreachKind.UNDER_INFUSION, BreachKind.VOLUME_LIMIT, BreachKind.COMMAND_REFUSED,
          BreachKind.NO_STATUS, BreachKind.PUMP_ERROR, BreachKind.SENSOR_ERROR,
          BreachKind.CONTROLLER_ERROR,
          BreachKind.TOTAL_REACHED]


def _severity(b: Breach) -> int:
    return _ORDER.index(b.kind)


def most_serious_first(breaches: list[Breach]) -> None:
    """Sort `breaches` in place, most serious first (stable: equals keep their order)."""
    breaches.sort(key=_severity)

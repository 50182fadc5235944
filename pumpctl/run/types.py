"""What a run is given and hands back, and the small rules shared by everything that runs one.

`RunSettings` is how a run is set up, `RunResult` is the controller's answer (the CLI, the
fleet runner and the HIL tests read it), `ResumePoint` is how `pumpctl.run.resume` tells a new
controller where the old run stopped. `breach_for_error` turns a driver error into the
safety monitor's `Breach` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pumpctl.drivers.base import PumpAlarmError, PumpError, ReadbackMismatch
from pumpctl.errors import UsageError
from pumpctl.safety import Breach, BreachKind, SafetyTolerances

OUTCOMES = ("completed", "aborted", "faulted")
# Senders whose stop request came over the network: their stop is also journaled as an alarm.
REMOTE_PREFIXES = ("mqtt:", "remote:")


@dataclass(frozen=True)
class RunSettings:
    """How one run is set up, apart from what it runs on (driver, program, clock), where it
    reports to (sinks, a sensor) and what it continues (a resume point)."""

    journal_dir: Path | str = "runs"
    channel: str = "pump0"
    poll_s: float = 1.0  # status poll interval
    tolerances: SafetyTolerances | None = None  # None: the syringe-pump defaults
    pump_url: str = ""  # as journaled in the header
    watchdog_s: int | None = None  # arm the pump's own watchdog with this; None: leave it
    run_id: str | None = None  # None: a new id
    operator: str | None = None  # None: the login name
    header_extra: Mapping[str, Any] = field(default_factory=dict)  # more header fields
    stop_timeout_s: float = 3.0  # per attempt of the final stop
    stop_attempts: int = 3

    def __post_init__(self) -> None:
        p = self.poll_s
        if not (isinstance(p, int | float) and math.isfinite(p) and 0 < p <= 60):
            raise UsageError(f"poll interval {p} s: must be > 0 and <= 60 s")

    def safety_tolerances(self) -> SafetyTolerances:
        """The tolerances, with a no-status window of at least 2.5 polls: a single missed
        poll must not look like silence."""
        tol = self.tolerances or SafetyTolerances()
        if tol.no_status_s < 2.5 * self.poll_s:
            tol = SafetyTolerances(**{**tol.__dict__, "no_status_s": 2.5 * self.poll_s})
        return tol


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run picks up (see `resume`): volume already in, plan time reached."""

    resume_of: str
    baseline_ml: float
    plan_offset_s: float
    journal_ml: float
    pump_ml: float


@dataclass
class RunResult:
    run_id: str
    channel: str
    outcome: str
    planned_volume_ml: float
    delivered_volume_ml: float
    planned_dose_mg: float
    delivered_dose_mg: float
    duration_s: float
    journal_path: Path
    stop_confirmed: bool
    alarms: list[dict[str, Any]] = field(default_factory=list)
    poll_lateness_s: list[float] = field(default_factory=list)
    breach_to_stop_s: float | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["journal_path"] = str(self.journal_path)
        d.pop("poll_lateness_s")
        return d


def breach_for_error(exc: PumpError) -> Breach:
    """The alarm a driver error becomes: a read-back mismatch and a pump alarm keep their own
    kinds (the pump said so); anything else is a pump error seen by the controller."""
    if isinstance(exc, ReadbackMismatch):
        return Breach(BreachKind.READBACK_MISMATCH, str(exc), _plain(exc.read), _plain(exc.sent),
                      source="pump")
    if isinstance(exc, PumpAlarmError):
        return Breach(BreachKind.PUMP_ALARM, str(exc), exc.alarm.kind.value, None, source="pump")
    return Breach(BreachKind.PUMP_ERROR, f"{type(exc).__name__}: {exc}", None, None,
                  source="controller")


def _plain(v: object) -> float | str | None:
    if v is None or isinstance(v, float | int | str):
        return v
    return str(v)

"""The fields of the journal records a run writes about itself: header, sample, summary.

The controller decides *when* a record is written; this module decides *what is in it*
(docs/journal.md is the format). Keys and their order are part of the format: readers and
telemetry rely on them, so each record's fields are built in one place.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from pumpctl import __version__
from pumpctl.drivers.base import Alarm, PumpIdentity, PumpStatus
from pumpctl.plan.program import RateProgram
from pumpctl.run.types import ResumePoint
from pumpctl.safety import Breach, SafetyMonitor


def header_fields(program: RateProgram, monitor: SafetyMonitor, identity: PumpIdentity | None, *,
                  pump_url: str, operator: str, poll_s: float, watchdog_s: int | None,
                  alarm_at_open: Alarm | None, resume: ResumePoint | None,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """The first record: what was planned, on which pump (and what it can do), by whom,
    under which limits."""
    p = program
    more: dict[str, Any] = {
        "poll_s": poll_s, "watchdog_s": watchdog_s,
        "tolerances": monitor.tolerances.__dict__,
        "pump_capabilities": monitor.caps.as_record(),
        "pump_alarm_at_open": alarm_at_open.kind.value if alarm_at_open else None,
        "checked_total_ml": monitor.cap_ml,
        "checked_total_dose_mg": monitor.cap_dose_mg,
    }
    if resume is not None:
        r = resume
        more.update({"resume_of": r.resume_of, "baseline_ml": r.baseline_ml,
                     "plan_offset_s": r.plan_offset_s,
                     "reconciled": {"journal_ml": r.journal_ml, "pump_ml": r.pump_ml}})
    more.update(extra)
    # dict(..., **more), not a merge: an extra field that repeats a fixed one is a bug (TypeError).
    return dict(
        plan=p.plan, program=p.model_dump(mode="json"),
        library_name=p.library_name, library_version=p.library_version,
        pump=asdict(identity) if identity else None, pump_url=pump_url,
        overrides=[o.model_dump(mode="json") for o in p.soft_limit_overrides],
        operator=operator, host=socket.gethostname(), software_version=__version__,
        drug=p.drug, concentration_mg_per_ml=p.concentration_mg_per_ml, weight_kg=p.weight_kg,
        total_volume_ml=p.total_volume_ml, total_dose_mg=p.total_dose_mg,
        duration_s=p.duration_s, **more)


# The keys of a `sample` record after the common ones, in the order they are written.
SAMPLE_KEYS = ("state", "rate_ml_h", "infused_ml", "withdrawn_ml", "counter_ml", "measured_ml",
               "planned_ml", "vtbi_ml", "remaining_ml", "remaining_s", "plan_t_s", "dose_mg",
               "dose_mg_per_kg", "dose_rate_mg_h", "segment", "paused", "alarm", "retries")


class SampleFields:
    """The values of the `sample` record each status poll writes, in `SAMPLE_KEYS` order.

    Made once per run with what stays fixed (the program is frozen, the monitor's plan and
    caps are set when it is made), so the per-poll call passes only what changes. A tuple
    instead of a dict: the journal puts it straight into its line template
    (`Journal.write_values`).
    """

    def __init__(self, program: RateProgram, monitor: SafetyMonitor) -> None:
        self._conc = program.concentration_mg_per_ml
        self._weight = program.weight_kg
        self._withdrawn = monitor.caps.counters.withdrawn  # False: the pump has no such counter
        self._volume_at = monitor.plan.volume_at
        self._end_s = monitor.plan.end_s
        self._cap_ml = monitor.cap_ml

    def values(self, st: PumpStatus, delivered: float, plan_t: float, measured: float | None,
               vtbi_ml: float | None, segment: int, paused: bool,
               breaches: list[Breach], retries: int = 0) -> tuple[Any, ...]:
        dose = delivered * self._conc
        weight = self._weight
        state = st.state
        alarm = st.alarm
        return (
            state.value, st.rate_ml_h, round(delivered, 6),
            st.withdrawn_ml if self._withdrawn else None, st.infused_ml,
            None if measured is None else round(measured, 6),
            round(self._volume_at(plan_t), 6), vtbi_ml,
            round(max(0.0, self._cap_ml - delivered), 6),
            round(max(0.0, self._end_s - plan_t), 3), round(plan_t, 3), round(dose, 6),
            round(dose / weight, 6) if weight else None,
            round(st.rate_ml_h * self._conc, 6) if state.is_moving else 0.0,
            segment, paused,
            alarm.kind.value if alarm else (breaches[0].kind.value if breaches else None),
            retries)


def summary_fields(*, outcome: str, planned_volume_ml: float, delivered_ml: float,
                   planned_dose_mg: float, concentration_mg_per_ml: float, duration_s: float,
                   alarms: int, stop_confirmed: bool, reason: str, measured_ml: float | None,
                   baseline_ml: float, retries: int = 0) -> dict[str, Any]:
    """The last record: how the run ended and what it delivered."""
    return dict(
        outcome=outcome, planned_volume_ml=planned_volume_ml,
        delivered_volume_ml=round(delivered_ml, 6), planned_dose_mg=planned_dose_mg,
        delivered_dose_mg=round(delivered_ml * concentration_mg_per_ml, 6),
        duration_s=round(duration_s, 3),
        alarms=alarms, stop_confirmed=stop_confirmed, reason=reason,
        measured_volume_ml=None if measured_ml is None else round(measured_ml, 6),
        baseline_ml=baseline_ml, retries=retries)


def json_result(value: object) -> Any:
    """A driver call's return value as it goes into a `command` record's `result`."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_result(v) for k, v in value.items()}
    if isinstance(value, PumpStatus):
        return {"state": value.state.value, "rate_ml_h": value.rate_ml_h,
                "infused_ml": value.infused_ml, "withdrawn_ml": value.withdrawn_ml,
                "alarm": value.alarm.kind.value if value.alarm else None}
    if hasattr(value, "value"):
        return value.value
    if hasattr(value, "__dataclass_fields__"):
        return {k: json_result(getattr(value, k)) for k in value.__dataclass_fields__}
    return str(value)


def whoami() -> str:
    """The operator recorded in the header when none is given."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"

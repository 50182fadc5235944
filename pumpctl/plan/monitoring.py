"""The clinical monitoring timeline that travels with a compiled program.

Vital signs every `vitals_every` from the start of the infusion until the end of observation
(`observe_after_end` after the infusion ends), the end of infusion and of observation as
their own points, and assessments at fixed times after the infusion's start. The controller
journals each point when it becomes due; `pumpctl plan show` prints them.
"""

from __future__ import annotations

from fractions import Fraction

from pumpctl.plan.errors import Problem
from pumpctl.plan.library import MonitoringRules
from pumpctl.plan.model import Monitoring
from pumpctl.plan.program import MonitoringEvent
from pumpctl.units import Kind, describe

MAX_EVENTS = 2000
_ORDER = {"vitals": 0, "infusion_end": 1, "observation_end": 2, "assessment": 3}


def check_monitoring(spec: Monitoring | None, rules: MonitoringRules | None) -> list[Problem]:
    """The plan's timeline against the drug's minimum monitoring rules (hard limits)."""
    if rules is None:
        return []
    problems = []
    if spec is None:
        if rules.min_observation is not None or rules.max_vitals_interval is not None:
            problems.append(
                Problem("monitoring", "this drug requires a monitoring section in the plan")
            )
        return problems
    observe, minimum = spec.observe_after_end, rules.min_observation
    if minimum is not None and observe.value < minimum.value:
        problems.append(
            Problem(
                "monitoring.observe_after_end",
                f"{observe} is below the library's minimum observation {minimum}",
                str(spec.observe_after_end),
                str(rules.min_observation),
            )
        )
    if (
        rules.max_vitals_interval is not None
        and spec.vitals_every.value > rules.max_vitals_interval.value
    ):
        problems.append(
            Problem(
                "monitoring.vitals_every",
                f"{spec.vitals_every} is longer than the library's maximum interval "
                f"{rules.max_vitals_interval}",
                str(spec.vitals_every),
                str(rules.max_vitals_interval),
            )
        )
    return problems


def count_vitals(spec: Monitoring, infusion_end_s: Fraction) -> int:
    return int((infusion_end_s + spec.observe_after_end.value) // spec.vitals_every.value) + 1


def timeline(spec: Monitoring, infusion_end_s: Fraction) -> list[MonitoringEvent]:
    """All monitoring points, sorted by time (relative to the infusion's start)."""
    end_obs = infusion_end_s + spec.observe_after_end.value
    step = spec.vitals_every.value
    events: list[tuple[Fraction, str, str]] = []
    k = 0
    while k * step <= end_obs and len(events) < MAX_EVENTS:
        at = k * step
        phase = "baseline" if k == 0 else "infusion" if at <= infusion_end_s else "observation"
        events.append((at, "vitals", f"vital signs ({phase})"))
        k += 1
    events.append((infusion_end_s, "infusion_end", "end of infusion"))
    events.append((end_obs, "observation_end", "end of observation"))
    for offset in spec.assessments:
        label = f"assessment at {describe(offset.value, Kind.DURATION)}"
        events.append((offset.value, "assessment", label))
    events.sort(key=lambda e: (e[0], _ORDER[e[1]]))
    return [MonitoringEvent(at_s=float(at), kind=kind, label=label) for at, kind, label in events]

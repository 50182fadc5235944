"""The end of every run: stop the pump until a status read confirms it, then read back.

Whatever ended the run (plan complete, breach, operator, cancellation, bug), the stop is sent
and confirmed the same way. Each attempt is bounded in time, errors are retried rather than
trusted, and a pump that never confirms becomes an alarm and a faulted run: from there the
pump's own volume limit (and its watchdog, where one was armed) are what stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from pumpctl.drivers.base import PumpDriver, PumpStatus, Resolution
from pumpctl.plan.program import RateProgram
from pumpctl.run.commands import RunCommands
from pumpctl.run.records import summary_fields
from pumpctl.run.types import RunResult
from pumpctl.safety import Breach, BreachKind, SafetyMonitor


async def stop_until_confirmed(commands: RunCommands, driver: PumpDriver, *, attempts: int,
                               timeout_s: float) -> PumpStatus | None:
    """Send stop until a status read shows the pump not moving; that status, or None."""
    for _ in range(attempts):
        try:
            async with asyncio.timeout(timeout_s):
                await commands.cmd("stop", {}, driver.stop)
        except Exception:  # whatever went wrong, confirm below and retry
            pass  # (a pump in alarm refuses the command but is already stopped)
        try:
            async with asyncio.timeout(timeout_s):
                st = await commands.cmd("status", {}, driver.status)
        except Exception:
            continue
        if not st.state.is_moving:
            return st
    return None


def unconfirmed_stop(attempts: int, watchdog_s: int | None) -> Breach:
    """The alarm for a pump that never confirmed it stopped. It names only the safety nets
    that are really there: the volume limit always, the watchdog only when it was armed."""
    if watchdog_s:
        nets = f"the pump's own volume limit and its {watchdog_s} s watchdog"
    else:
        nets = "the pump's own volume limit only (no watchdog armed): check the pump"
    return Breach(BreachKind.PUMP_ERROR,
                  f"stop not confirmed after {attempts} attempts; relying on {nets}",
                  source="controller")


def completion_breach(monitor: SafetyMonitor, final_ml: float,
                      measured_ml: float | None) -> Breach | None:
    """The verdict on a run that reached its planned total by the pump's counter: a breach if
    it did not really. With a volume sensor the sensor is asked too, since only it sees what
    the counter cannot (a motor that stopped moving the plunger, a blocked line, free flow)."""
    cap = monitor.cap_ml
    if cap - final_ml > monitor.volume_tolerance(cap):
        return Breach(BreachKind.UNDER_INFUSION, f"run ended with {final_ml:.4g} of {cap:.4g} mL",
                      final_ml, cap)
    if measured_ml is None:
        return None
    extra = monitor.tolerances.sensor_abs_ml
    if cap - measured_ml > monitor.volume_tolerance(cap) + extra:
        return Breach(BreachKind.UNDER_INFUSION,
                      f"the pump counted {final_ml:.4g} mL but the sensor measured "
                      f"{measured_ml:.4g} of {cap:.4g} mL", measured_ml, cap)
    if measured_ml - cap > monitor.quantum(cap) + extra:
        return Breach(BreachKind.OVER_INFUSION,
                      f"the sensor measured {measured_ml:.4g} mL, above the planned "
                      f"{cap:.4g} mL", measured_ml, cap)
    return None


def final_delivered(last: PumpStatus | None, *, baseline_ml: float, delivered_ml: float,
                    resolution: Resolution) -> float:
    """Delivered volume at the end: the pump's counter (of this `resolution`), unless it went
    backwards (reset)."""
    if last is not None:
        counter = baseline_ml + last.infused_ml
        if counter >= delivered_ml - resolution.at(delivered_ml):
            return max(delivered_ml, counter)
    return delivered_ml


async def end_after_bug(exc: Exception, commands: RunCommands, driver: PumpDriver,
                        program: RateProgram, monitor: SafetyMonitor, *, run_id: str,
                        channel: str, delivered_ml: float, measured_ml: float | None,
                        baseline_ml: float, journal_path: Path, attempts: int,
                        timeout_s: float) -> RunResult:
    """The last net when the ordinary end of a run raised: stop and confirm again, journal
    the bug as an alarm and a faulted summary, and report it. Nothing here may raise."""
    c = commands
    breach = Breach(BreachKind.CONTROLLER_ERROR,
                    f"{type(exc).__name__} while ending the run: {exc}", source="controller")
    reason = f"{breach.kind.value}: {breach.message}"
    with contextlib.suppress(Exception):
        c.alarm(breach)
    st: PumpStatus | None = None
    with contextlib.suppress(Exception):
        st = await stop_until_confirmed(c, driver, attempts=attempts, timeout_s=timeout_s)
    conc = program.concentration_mg_per_ml
    with contextlib.suppress(Exception):
        c.write("state", state="faulted", reason=reason, sender="controller")
        c.write_fields("summary", summary_fields(
            outcome="faulted", planned_volume_ml=monitor.cap_ml, delivered_ml=delivered_ml,
            planned_dose_mg=program.total_dose_mg, concentration_mg_per_ml=conc,
            duration_s=0.0, alarms=len(c.alarms), stop_confirmed=st is not None,
            reason=reason, measured_ml=measured_ml, baseline_ml=baseline_ml))
    return RunResult(
        run_id=run_id, channel=channel, outcome="faulted", planned_volume_ml=monitor.cap_ml,
        delivered_volume_ml=delivered_ml, planned_dose_mg=program.total_dose_mg,
        delivered_dose_mg=delivered_ml * conc, duration_s=0.0, journal_path=journal_path,
        stop_confirmed=st is not None, alarms=list(c.alarms), reason=reason)

"""The end of every run: stop the pump until a status read confirms it, then read back.

Whatever ended the run (plan complete, breach, operator, cancellation, bug), the stop is sent
and confirmed the same way. Each attempt is bounded in time, errors are retried rather than
trusted, and a pump that never confirms becomes an alarm: from there the pump's own volume
limit and watchdog are what stop it.
"""

from __future__ import annotations

import asyncio

from pumpctl.drivers.base import PumpDriver, PumpStatus
from pumpctl.run.commands import RunCommands
from pumpctl.safety import Breach, BreachKind, SafetyMonitor, counter_quantum_ml


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


def unconfirmed_stop(attempts: int) -> Breach:
    """The alarm for a pump that never confirmed it stopped."""
    return Breach(BreachKind.PUMP_ERROR,
                  f"stop not confirmed after {attempts} attempts; "
                  "relying on the pump's own volume limit and watchdog",
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


def final_delivered(last: PumpStatus | None, *, baseline_ml: float, delivered_ml: float) -> float:
    """Delivered volume at the end: the pump's counter, unless it went backwards (reset)."""
    if last is not None:
        counter = baseline_ml + last.infused_ml
        if counter >= delivered_ml - counter_quantum_ml(delivered_ml):
            return max(delivered_ml, counter)
    return delivered_ml

"""The end of every run: stop the pump until a status read confirms it, then read back.

Whatever ended the run (plan complete, breach, operator, cancellation, bug), the stop is sent
and confirmed the same way. Each attempt is bounded in time, errors are retried rather than
trusted, and a pump that never confirms becomes an alarm and a faulted run: from there the
pump's own volume limit (and its watchdog, where one was armed) are what stop it.
"""

from __future__ import annotations

import asyncio

from pumpctl.drivers.base import PumpDriver, PumpStatus, Resolution
from pumpctl.run.commands import RunCommands
from pumpctl.safety import Breach, BreachKind


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


def final_delivered(last: PumpStatus | None, *, baseline_ml: float, delivered_ml: float,
                    resolution: Resolution) -> float:
    """Delivered volume at the end: the pump's counter (of this `resolution`), unless it went
    backwards (reset)."""
    if last is not None:
        counter = baseline_ml + last.infused_ml
        if counter >= delivered_ml - resolution.at(delivered_ml):
            return max(delivered_ml, counter)
    return delivered_ml

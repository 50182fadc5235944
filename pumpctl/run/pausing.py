"""The pump's own stop at the planned total, and pausing and resuming whatever the pump can do.

Where a pump has a volume to dispense (`capabilities.volume_cap`) it is set to what remains
of the plan, floored to what the pump can hold, so the hardware stops at the planned total,
never beyond it, even if this process dies.

A pump that can pause (`capabilities.pause`) stops moving and keeps its place: on `run` it
goes on with the same volume to dispense, counting what it delivered before the pause, so its
hardware cap stays at the planned total. A pump that cannot pause is stopped instead: its
volume to dispense starts again from zero on the next `run`, so before it runs again the cap
is set anew to what remains (the plan's total less what the counter says was delivered). In
both cases plan time is frozen meanwhile (`PlanClock`), so the rest of the schedule shifts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pumpctl.drivers.base import PumpDriver
from pumpctl.run.commands import RunCommands


class VolumeCap:
    """Sets a pump's volume to dispense for the rest of a run (nothing on a pump without)."""

    def __init__(self, commands: RunCommands, driver: PumpDriver, target_ml: float) -> None:
        self._commands = commands
        self._driver = driver
        self.target_ml = target_ml  # the run's total, earlier runs included
        self.total_ml: float | None = None  # the total at which the pump will stop itself

    async def set_for(self, delivered_ml: float) -> None:
        """Cap the pump at what remains after `delivered_ml` (since the plan began)."""
        cap = self._driver.capabilities.volume_cap
        if cap is None:
            return
        vtbi = cap.resolution.floor(self.target_ml - delivered_ml)
        read = await self._commands.checked("set_volume_limit", vtbi,
                                            lambda: self._driver.set_volume_limit(vtbi))
        self.total_ml = delivered_ml + read


async def pause_pump(commands: RunCommands, driver: PumpDriver) -> None:
    if driver.capabilities.pause:
        await commands.checked("pause", None, driver.pause)
    else:
        await commands.checked("stop", None, driver.stop)


async def resume_pump(commands: RunCommands, driver: PumpDriver, *,
                      rearm: Callable[[float], Awaitable[None]]) -> None:
    """`rearm(infused_ml)` sets the cap again for a pump that was stopped, from its counter."""
    if not driver.capabilities.pause:
        status = await commands.cmd("status", {}, driver.status)
        await rearm(status.infused_ml)
    await commands.checked("run", None, driver.run)

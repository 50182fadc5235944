"""Pausing and resuming a running pump, whatever it can do.

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

"""Getting a pump ready for a run, before anything can flow.

Order matters: a pump already moving is refused (someone else is using it); a pending alarm
(power-up `R`, or the watchdog `T` that stopped the pump before a resume) is acknowledged;
the watchdog is armed before anything else is set, so a controller that dies from here on
leaves a pump that stops itself; then diameter and direction; then the counters are cleared
and read back as zero, so every later volume is this run's own. Last, the driver is told what
the run will ask of it (`PumpDriver.prepare`: every rate, the volume), so it can choose now
what must hold for the whole run, such as one rate unit, while the pump is still stopped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pumpctl.drivers.base import Direction, PumpDriver, PumpError, PumpIdentity, RunOutline
from pumpctl.drivers.sensors import VolumeSensor
from pumpctl.run.commands import RunCommands
from pumpctl.run.records import json_result
from pumpctl.safety import Breach, BreachKind


async def identify_and_record(commands: RunCommands, driver: PumpDriver,
                              header: Callable[[PumpIdentity | None], dict[str, Any]],
                              ) -> PumpIdentity:
    """Ask the pump who it is and write the run's header with the answer, then the answer
    itself; a pump that cannot say still gets a header (with no identity) before the error."""
    identity: PumpIdentity | None = None
    error: PumpError | None = None
    try:
        identity = await driver.identify()
    except PumpError as exc:
        error = exc
    commands.write_header(header(identity))
    if error is not None:
        commands.write("command", op="identify", args={}, error=str(error),
                       error_type=type(error).__name__)
        raise error
    commands.write("command", op="identify", args={}, result=json_result(identity))
    assert identity is not None
    return identity


async def prepare_pump(commands: RunCommands, driver: PumpDriver, *, watchdog_s: int | None,
                       diameter_mm: float, volume_sensor: VolumeSensor | None,
                       outline: RunOutline,
                       handle_stop: Callable[[], Awaitable[None]]) -> None:
    """Bring an identified pump to stopped, armed, set up and zeroed.

    `handle_stop` acts on an operator stop that arrived meanwhile (raising to end the run)
    before the pump's settings are touched.
    """
    d = driver
    status = await commands.cmd("status", {}, d.status)
    if status.alarm is not None:
        # Power-up `R`, or the watchdog `T` that stopped the pump before a resume.
        await commands.cmd("acknowledge_alarm", {"alarm": status.alarm.kind.value},
                           d.acknowledge_alarm)
    if status.state.is_moving:
        commands.fail(Breach(BreachKind.UNEXPECTED_STATE,
                             f"pump was already {status.state.value} before the run started",
                             status.state.value, "stopped"))
    if status.state.value not in ("stopped", "alarm"):
        await commands.cmd("stop", {}, d.stop)  # reset a paused phase so RUN starts fresh
    await handle_stop()
    if watchdog_s is not None:
        await commands.checked("set_watchdog", watchdog_s,
                               lambda: d.set_watchdog(int(watchdog_s or 0)))
    dia = diameter_mm
    await commands.checked("set_diameter", dia, lambda: d.set_diameter(dia))
    await commands.checked("set_direction", Direction.INFUSE,
                           lambda: d.set_direction(Direction.INFUSE), {"value": "infuse"})
    await commands.checked("clear_counters", None, d.clear_counters,
                           {"infused_before_ml": status.infused_ml,
                            "withdrawn_before_ml": status.withdrawn_ml})
    if volume_sensor is not None:
        await volume_sensor.zero()
    cleared = await commands.cmd("status", {}, d.status)
    if cleared.infused_ml > d.capabilities.counters.resolution.at(0.0):
        commands.fail(Breach(BreachKind.READBACK_MISMATCH,
                             f"infused counter reads {cleared.infused_ml} mL after clearing",
                             cleared.infused_ml, 0.0, source="pump"))
    await commands.checked("prepare", outline, lambda: d.prepare(outline),
                           {"rates_ml_h": list(outline.rates_ml_h),
                            "volume_ml": outline.volume_ml})

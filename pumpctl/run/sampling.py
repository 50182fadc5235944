"""Taking one sample: the pump's status within the no-status window, and the sensor's reading.

A status request that fails or hangs is journaled and counted towards the monitor's silence
window (no single missed poll stops a run, a silence does); an alarm in reply ends the run at
once. A volume sensor the run relies on that fails, or reads nonsense, ends it too: that is
doubt about what was delivered.
"""

from __future__ import annotations

import asyncio
import math

from pumpctl.clock import Clock, SharedDeadline
from pumpctl.drivers.base import PumpAlarmError, PumpDriver, PumpError, PumpStatus
from pumpctl.drivers.sensors import VolumeSensor
from pumpctl.run.commands import RunCommands
from pumpctl.run.types import breach_for_error
from pumpctl.safety import Breach, BreachKind, SafetyMonitor


class Sampler:
    """The status and sensor reads of one run's polls."""

    def __init__(self, commands: RunCommands, monitor: SafetyMonitor, driver: PumpDriver,
                 clock: Clock, *, sensor: VolumeSensor | None, baseline_ml: float) -> None:
        self._commands = commands
        self._monitor = monitor
        self._driver = driver
        self._clock = clock
        self.sensor = sensor
        self._baseline_ml = baseline_ml
        self.measured_ml: float | None = None  # the latest sensor reading, baseline included
        self._deadline = SharedDeadline()  # the no-status window of each poll

    async def status(self, now: float) -> PumpStatus | None:
        """The pump's status, asked at clock time `now`; None if this poll got none."""
        c = self._commands
        retries_before = c.retries()
        try:
            # asyncio.timeout(no_status_s), with the timer shared between polls
            async with asyncio.timeout(None) as scope:
                self._deadline.enter(scope, now + self._monitor.tolerances.no_status_s)
                try:
                    return await self._driver.status()
                finally:
                    self._deadline.leave()
        except PumpAlarmError as exc:
            c.write("command", op="status", args={}, error=str(exc),
                    error_type=type(exc).__name__)
            c.fail(breach_for_error(exc))
        except (PumpError, TimeoutError) as exc:
            c.write("command", op="status", args={}, error=str(exc) or "timed out",
                    error_type=type(exc).__name__, **c.retried_since(retries_before))
            self._monitor.note_status_failure(now)
            silent = self._monitor.check_silence(self._clock.monotonic())
            if silent is not None:
                c.fail(silent)
            return None

    async def measured(self) -> float | None:
        """What the sensor says has been delivered (None without a sensor)."""
        if self.sensor is None:
            return None
        try:
            value = self._baseline_ml + await self.sensor.read_ml()
        except Exception as exc:  # a sensor we rely on has failed: that is doubt, so stop
            self._commands.fail(Breach(BreachKind.SENSOR_ERROR, f"volume sensor failed: {exc}",
                                       source="controller"))
        if not math.isfinite(value):
            self._commands.fail(Breach(BreachKind.SENSOR_ERROR, f"volume sensor read {value}",
                                       source="controller"))
        self.measured_ml = value
        return value

    def close(self) -> None:
        self._deadline.close()

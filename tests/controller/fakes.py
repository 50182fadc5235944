"""A small in-test pump for controller unit tests (the acceptance tests use the real simulator).

It integrates volume on the loop's clock, stops itself at the volume to dispense, pauses on
the first `pause`, and can be told to misbehave in the ways the safety monitor must catch.
"""

from __future__ import annotations

import asyncio
import math

from pumpctl.drivers.base import (
    Alarm,
    AlarmKind,
    Direction,
    PumpIdentity,
    PumpState,
    PumpStatus,
    PumpTimeout,
)
from pumpctl.plan.program import (
    PlannedStep,
    ProgramLimits,
    RateProgram,
    Segment,
    SyringeInfo,
)


class FakePump:
    def __init__(self) -> None:
        self.rate = 0.0
        self.vtbi = 0.0
        self.diameter = 0.0
        self.direction = Direction.INFUSE
        self.state = PumpState.STOPPED
        self.infused = 0.0
        self.phase_ml = 0.0
        self.alarm: Alarm | None = None
        self.watchdog = 0
        self.flow_factor = 1.0  # <1 under-delivers (occlusion), >1 over-delivers (free flow)
        self.silent = False  # status raises PumpTimeout
        self.status_delay_s = 0.0  # status answers this late (math.inf: never: a hung driver)
        self.report_rate: float | None = None  # status shows this rate instead of the real one
        self.ignore_stop = False
        self.log: list[str] = []
        self._t = asyncio.get_running_loop().time()

    def _advance(self) -> None:
        now = asyncio.get_running_loop().time()
        dt = now - self._t
        self._t = now
        if self.state is PumpState.INFUSING and dt > 0:
            dv = self.rate / 3600.0 * dt
            if self.vtbi > 0 and self.phase_ml + dv >= self.vtbi:
                dv = self.vtbi - self.phase_ml
                self.state = PumpState.STOPPED
                self.phase_ml = 0.0
            else:
                self.phase_ml += dv
            self.infused += dv * self.flow_factor

    def raise_alarm(self, kind: AlarmKind) -> None:
        self._advance()
        self.state = PumpState.ALARM
        self.alarm = Alarm(kind, "S")


class FakeDriver:
    """`PumpDriver` over a `FakePump`."""

    def __init__(self, pump: FakePump) -> None:
        self.pump = pump

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def identify(self) -> PumpIdentity:
        return PumpIdentity("NE1000", "3.928", 0)

    async def set_diameter(self, mm: float) -> float:
        self.pump.diameter = mm
        return mm

    async def set_rate(self, ml_h: float) -> float:
        self.pump._advance()
        self.pump.log.append(f"rate {ml_h}")
        self.pump.rate = ml_h
        return ml_h

    async def set_volume_limit(self, ml: float) -> float:
        self.pump.vtbi = ml
        return ml

    async def set_direction(self, direction: Direction) -> Direction:
        self.pump.direction = direction
        return direction

    async def run(self) -> None:
        self.pump._advance()
        self.pump.log.append("run")
        self.pump.state = PumpState.INFUSING

    async def pause(self) -> None:
        self.pump._advance()
        self.pump.log.append("pause")
        self.pump.state = PumpState.PAUSED

    async def stop(self) -> None:
        self.pump._advance()
        self.pump.log.append("stop")
        if self.pump.ignore_stop:
            return
        if self.pump.state is not PumpState.ALARM:
            self.pump.state = PumpState.STOPPED
        self.pump.phase_ml = 0.0

    async def status(self) -> PumpStatus:
        if self.pump.status_delay_s == math.inf:
            await asyncio.Event().wait()  # hangs until cancelled
        if self.pump.status_delay_s:
            await asyncio.sleep(self.pump.status_delay_s)
        self.pump._advance()
        if self.pump.silent:
            raise PumpTimeout("no reply within 0.1 s")
        rate = self.pump.report_rate if self.pump.report_rate is not None else self.pump.rate
        return PumpStatus(self.pump.state, rate, round(self.pump.infused, 3), 0.0,
                          self.pump.alarm, self.pump.direction)

    async def clear_counters(self) -> None:
        self.pump.infused = 0.0

    async def acknowledge_alarm(self) -> None:
        self.pump.alarm = None
        if self.pump.state is PumpState.ALARM:
            self.pump.state = PumpState.STOPPED

    async def set_watchdog(self, seconds: int) -> None:
        self.pump.watchdog = seconds


def make_program(steps: list[tuple[float, float]] | None = None, *, concentration: float = 1.0,
                 weight: float | None = 70.0, max_rate: float = 1000.0) -> RateProgram:
    """A program of constant-rate steps given as (duration_s, rate_ml_h)."""
    steps = steps or [(2400.0, 52.5)]
    planned, segments, t = [], [], 0.0
    for i, (dur, rate) in enumerate(steps):
        vol = rate * dur / 3600.0
        planned.append(PlannedStep(label=f"step{i}", start_s=t, duration_s=dur,
                                   dose_mg=vol * concentration, volume_ml=vol))
        segments.append(Segment(start_s=t, duration_s=dur, rate_ml_h=rate, volume_ml=vol))
        t += dur
    total = sum(s.volume_ml for s in planned)
    return RateProgram(
        plan="test-plan", drug="ketamine", library_name="test", library_version="0",
        weight_kg=weight, concentration_mg_per_ml=concentration,
        total_dose_mg=total * concentration, total_volume_ml=total, duration_s=t,
        syringe=SyringeInfo(id="bd60", name="BD 60 mL", inner_diameter_mm=26.59, capacity_ml=60.0),
        pump_profile="newera-ne1000", steps=planned, segments=segments,
        limits=ProgramLimits(max_rate_ml_h=max_rate, min_rate_ml_h=0.01,
                             max_total_volume_ml=total, max_total_dose_mg=total * concentration,
                             volume_resolution_ml=0.001))

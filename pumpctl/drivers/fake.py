"""A pump in memory, behind a real `PumpDriver`: for controller tests, demos and new front ends.

The byte-level simulators (simulators/) are how the real drivers are tested; this fake is how
the controller is tested without any protocol: a `FakePump` integrates volume on the event
loop's clock (so it runs in virtual time), and a `FakeDriver` speaks the driver contract to it.
Its capabilities are whatever it is given, and it keeps to them the way a real pump would
(a pump without a volume cap runs until stopped, one without a watchdog refuses to arm one, a
rate it cannot write is refused, a unit change while running is refused where the
capabilities say so). Its misbehaviours are plain attributes of the pump, set at any moment:
flow that differs from the count (occlusion, free flow), silence, slow or hung status replies,
a rate reported that is not the one running, a stop that is ignored, an alarm.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from fractions import Fraction

from pumpctl.drivers.base import (
    Alarm,
    AlarmKind,
    Counters,
    Direction,
    NumberFormat,
    PumpCapabilities,
    PumpIdentity,
    PumpNotApplicable,
    PumpOutOfRange,
    PumpState,
    PumpStatus,
    PumpTimeout,
    RateFormat,
    Resolution,
    RunOutline,
    VolumeCap,
    WatchdogRange,
)

FAKE_IDENTITY = PumpIdentity(model="fake", firmware="1", address=0)
# A pump that can do everything and writes any rate: what a controller test starts from.
IDEAL = PumpCapabilities(rates=RateFormat(), counters=Counters(), volume_cap=VolumeCap(),
                         watchdog=WatchdogRange(1, 255), pause=True)


def decimal_display(digits: NumberFormat, *, units: Mapping[str, Fraction],
                    units_change_while_running: bool = False,
                    step_ml: float = 0.001) -> PumpCapabilities:
    """A fake with a decimal display and unit codes (as a profile describes one)."""
    resolution = Resolution(step_ml, digits)
    return PumpCapabilities(
        rates=RateFormat(tuple(units.items()), digits, units_change_while_running),
        counters=Counters(resolution=resolution), volume_cap=VolumeCap(resolution),
        watchdog=WatchdogRange(1, 255), pause=True)


class FakePump:
    """The pump's state; misbehaviours are attributes a test sets."""

    def __init__(self) -> None:
        self.rate = 0.0
        self.rate_unit: str | None = None
        self.vtbi = 0.0  # 0: no volume to dispense
        self.diameter = 0.0
        self.direction = Direction.INFUSE
        self.state = PumpState.STOPPED
        self.infused = 0.0  # what the pump counts (its steps)
        self.phase_ml = 0.0  # counted towards the volume to dispense since the last start
        self.alarm: Alarm | None = None
        self.watchdog = 0
        self.log: list[str] = []  # the commands that moved it: "rate 52.5", "run", "stop", ...
        # Misbehaviours.
        self.flow_factor = 1.0  # <1 under-delivers (occlusion), >1 over-delivers (free flow)
        self.silent = False  # status raises PumpTimeout
        self.status_delay_s = 0.0  # status answers this late (math.inf: never: a hung driver)
        self.report_rate: float | None = None  # status shows this rate instead of the real one
        self.ignore_stop = False
        self.ignore_volume_cap = False  # runs past its volume to dispense
        self._t: float | None = None

    def advance(self) -> None:
        """Integrate delivery up to now on the running loop's clock."""
        now = asyncio.get_running_loop().time()
        dt = 0.0 if self._t is None else now - self._t
        self._t = now
        if self.state is PumpState.INFUSING and dt > 0:
            dv = self.rate / 3600.0 * dt
            if self.vtbi > 0 and not self.ignore_volume_cap and self.phase_ml + dv >= self.vtbi:
                dv = self.vtbi - self.phase_ml
                self.state = PumpState.STOPPED
                self.phase_ml = 0.0
            else:
                self.phase_ml += dv
            self.infused += dv * self.flow_factor

    def raise_alarm(self, kind: AlarmKind, code: str = "S") -> None:
        self.advance()
        self.state = PumpState.ALARM
        self.alarm = Alarm(kind, code)


class FakeDriver:
    """`PumpDriver` over a `FakePump`, keeping to `capabilities`."""

    def __init__(self, pump: FakePump | None = None, *,
                 capabilities: PumpCapabilities = IDEAL,
                 identity: PumpIdentity = FAKE_IDENTITY,
                 alarm_at_open: Alarm | None = None) -> None:
        self.pump = pump if pump is not None else FakePump()
        self._capabilities = capabilities
        self._identity = identity
        self._alarm_at_open = alarm_at_open
        self.outline: RunOutline | None = None  # what `prepare` was told
        self._run_unit: str | None = None  # the unit `prepare` chose for the run

    @property
    def capabilities(self) -> PumpCapabilities:
        return self._capabilities

    @property
    def alarm_at_open(self) -> Alarm | None:
        return self._alarm_at_open

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def identify(self) -> PumpIdentity:
        return self._identity

    async def prepare(self, outline: RunOutline) -> Mapping[str, object]:
        rates = self._capabilities.rates
        problem = rates.problem(outline.rates_ml_h)
        if problem is not None:
            raise PumpOutOfRange(problem)
        self.outline = outline
        self._run_unit = rates.unit_for(outline.rates_ml_h)
        return {"rate_unit": self._run_unit}

    async def set_diameter(self, mm: float) -> float:
        self.pump.diameter = mm
        return mm

    async def set_rate(self, ml_h: float) -> float:
        pump = self.pump
        pump.advance()
        unit = self._unit_for(ml_h)
        pump.log.append(f"rate {ml_h}")
        pump.rate, pump.rate_unit = ml_h, unit
        return ml_h

    def _unit_for(self, ml_h: float) -> str:
        """The unit the pump is told `ml_h` in: the run's unit if `prepare` chose one, else
        the current one if it can, else the first that can (a unit change while running is
        refused where the capabilities say so, as a real pump refuses it)."""
        rates = self._capabilities.rates
        current = self.pump.rate_unit
        order = [u for u, _ in rates.units]
        if self._run_unit is not None:
            order = [self._run_unit]
        elif current is not None:
            order = [current, *(u for u in order if u != current)]
        unit = next((u for u in order if rates.expresses(ml_h, u)), None)
        if unit is None:
            raise PumpOutOfRange(f"rate {ml_h:g} mL/h cannot be written in {', '.join(order)}")
        running = self.pump.state.is_moving or self.pump.state is PumpState.PAUSED
        if running and current is not None and unit != current \
                and not rates.units_change_while_running:
            raise PumpNotApplicable(f"rate {ml_h:g} mL/h needs unit {unit}, the pump runs in "
                                    f"{current} and cannot change units while running")
        return unit

    async def set_volume_limit(self, ml: float) -> float:
        cap = self._capabilities.volume_cap
        if cap is None:
            raise PumpNotApplicable("this pump has no volume to dispense")
        if not math.isfinite(ml) or ml < 0 or abs(cap.resolution.floor(ml) - ml) > 1e-9:
            raise PumpOutOfRange(f"volume {ml!r} mL cannot be written "
                                 f"(resolution {cap.resolution.at(ml):g} mL)")
        self.pump.vtbi = ml
        return ml

    async def set_direction(self, direction: Direction) -> Direction:
        self.pump.direction = direction
        return direction

    async def run(self) -> None:
        self.pump.advance()
        self.pump.log.append("run")
        self.pump.state = PumpState.INFUSING

    async def pause(self) -> None:
        if not self._capabilities.pause:
            raise PumpNotApplicable("this pump cannot pause")
        self.pump.advance()
        self.pump.log.append("pause")
        self.pump.state = PumpState.PAUSED

    async def stop(self) -> None:
        pump = self.pump
        pump.advance()
        pump.log.append("stop")
        if pump.ignore_stop:
            return
        if pump.state is not PumpState.ALARM:
            pump.state = PumpState.STOPPED
        pump.phase_ml = 0.0

    async def status(self) -> PumpStatus:
        pump = self.pump
        if pump.status_delay_s == math.inf:
            await asyncio.Event().wait()  # hangs until cancelled
        if pump.status_delay_s:
            await asyncio.sleep(pump.status_delay_s)
        pump.advance()
        if pump.silent:
            raise PumpTimeout("no reply within 0.1 s")
        rate = pump.report_rate if pump.report_rate is not None else pump.rate
        counters = self._capabilities.counters
        return PumpStatus(pump.state, rate, _shown(pump.infused, counters.resolution), 0.0,
                          pump.alarm, pump.direction)

    async def clear_counters(self) -> None:
        self.pump.infused = 0.0

    async def acknowledge_alarm(self) -> None:
        self.pump.alarm = None
        self._alarm_at_open = None
        if self.pump.state is PumpState.ALARM:
            self.pump.state = PumpState.STOPPED

    async def set_watchdog(self, seconds: int) -> None:
        watchdog = self._capabilities.watchdog
        if watchdog is None:
            if seconds:
                raise PumpNotApplicable("this pump has no watchdog of its own")
            return
        if seconds and not watchdog.min_s <= seconds <= watchdog.max_s:
            raise PumpOutOfRange(f"watchdog {seconds} s is outside "
                                 f"{watchdog.min_s}-{watchdog.max_s} s")
        self.pump.watchdog = seconds


def _shown(volume_ml: float, resolution: Resolution) -> float:
    """A counter as the pump shows it: rounded to its resolution there."""
    step = resolution.at(volume_ml)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return round(volume_ml, decimals)

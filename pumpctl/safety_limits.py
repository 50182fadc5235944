"""The figures a run is held to: caps, tolerances and allowed rates for one program and pump.

Worked out once when a run's `SafetyMonitor` is made, from the validated program (its steps,
not its compiled segments: see `planned_delivery`) and the pump's capabilities (the
resolution of its counters is the step every volume comparison is made in): the volume and
dose caps, the tolerance around any planned volume, the highest rate allowed around any
moment of the plan, and when the planned total counts as delivered.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from pumpctl.drivers.base import Counters, NumberFormat, PumpCapabilities, RateFormat, Resolution
from pumpctl.errors import PumpctlError
from pumpctl.plan.program import RateProgram
from pumpctl.planned_delivery import PlannedDelivery, SafetyConfigError
from pumpctl.tolerances import SafetyTolerances


@dataclass
class RunLimits:
    """The figures one run is held to, worked out once from the program and the pump.

    `capabilities` are the pump's (its driver's); without them, a pump with every capability
    whose counters step by the program's volume resolution.
    """

    program: RateProgram
    tolerances: SafetyTolerances = field(default_factory=SafetyTolerances)
    capabilities: PumpCapabilities | None = None

    def __post_init__(self) -> None:
        p = self.program
        if self.capabilities is None:
            step = Resolution(p.limits.volume_resolution_ml)
            self.capabilities = PumpCapabilities(counters=Counters(resolution=step))
        self.caps: PumpCapabilities = self.capabilities
        self._counter_resolution = self.caps.counters.resolution
        self.plan = PlannedDelivery(p)
        lim = p.limits
        self.diameter_mm = p.syringe.inner_diameter_mm
        self.cap_ml = min(self.plan.total_ml, lim.max_total_volume_ml, p.syringe.capacity_ml)
        step_dose = sum(s.dose_mg for s in p.steps)
        dose_caps = [step_dose, lim.max_total_dose_mg]
        if lim.hard_max_dose_mg is not None:
            dose_caps.append(lim.hard_max_dose_mg)
        self.cap_dose_mg = min(dose_caps)
        self.concentration = p.concentration_mg_per_ml
        if self.concentration <= 0 or not math.isfinite(self.concentration):
            raise SafetyConfigError(f"concentration_mg_per_ml = {self.concentration}: must be > 0")
        if p.total_volume_ml > self.cap_ml + self.quantum(self.cap_ml):
            raise SafetyConfigError(
                f"total_volume_ml = {p.total_volume_ml}: exceeds the checked cap "
                f"{self.cap_ml:.4g} mL (sum of steps, hard volume limit, syringe capacity)")
        tol = self.tolerances
        self.end_grace_s = max(tol.end_grace_min_s, tol.end_grace_rel * self.plan.end_s)
        # The display step at the planned total is needed several times per sample; the
        # program is frozen and the cap fixed here, so work it out once.
        self._cap_quantum = self.quantum(self.cap_ml)
        # A rate the pump profile the program was compiled for cannot write is compiled as
        # its writable neighbours, the upper one up to a digit step above the plan (2.8 % at
        # 0.035 mL/h in mL/h): allowed, in the unit one run uses (as a driver's prepare
        # chooses it), for the pump's own number format and for the compiled profile's (a
        # FLOAT32 Modbus pump writes any rate, but runs the program compiled for a profile).
        rates = [s.rate_ml_h for s in p.segments]
        self._rate_formats = [(fmt, unit) for fmt in (self.caps.rates, _profile_rates(p))
                              if fmt is not None and (unit := fmt.unit_for(rates)) is not None]
        # Complete once the counter shows what the pump can be told to stop at: its volume
        # cap holds the total floored to its own step (5.05998 -> 5.059 mL), the motor stops
        # at its last whole step below that, and the counter shows it to within a quantum.
        stop_at = self.cap_ml
        if self.caps.volume_cap is not None:
            stop_at = self.caps.volume_cap.resolution.floor(self.cap_ml)
        self._complete_at = min(self.cap_ml - self._cap_quantum,
                                stop_at - self.quantum(stop_at))
        if self._complete_at <= 0:  # a total within a step of zero: something must be counted
            self._complete_at = min(self.cap_ml, stop_at) / 2

    # -- figures -----------------------------------------------------------------------

    def quantum(self, volume_ml: float) -> float:
        """The smallest volume step that can be told apart near `volume_ml`: the pump's
        counter resolution there, or the program's volume resolution if coarser."""
        return max(self._counter_resolution.at(volume_ml),
                   self.program.limits.volume_resolution_ml)

    def volume_tolerance(self, planned_ml: float) -> float:
        t = self.tolerances
        return max(t.volume_abs_ml, t.volume_rel * planned_ml, 2 * self.quantum(planned_ml))

    def allowed_rate_ml_h(self, plan_t: float) -> float:
        """Highest rate the pump may run at around plan time `plan_t` (incl. tolerance)."""
        slack = self.tolerances.timing_slack_s
        rate = self.plan.max_rate_ml_h(plan_t - slack, plan_t + slack)
        if plan_t >= self.plan.end_s - slack and plan_t <= self.plan.end_s + self.end_grace_s:
            rate = max(rate, self.plan.last_rate_ml_h)  # finishing the last few drops late
        step = max((fmt.step_at(rate, unit) for fmt, unit in self._rate_formats), default=0.0)
        rate = max(rate * (1.0 + self.tolerances.rate_rel), rate + step)
        return min(rate, self.program.limits.max_rate_ml_h * (1.0 + self.tolerances.readback_rel))

    def is_complete(self, delivered_ml: float) -> bool:
        return delivered_ml >= self._complete_at

    def pump_stops_at(self, total_ml: float) -> None:
        """The pump was given a volume cap at which it stops itself: `total_ml` since the plan
        began (what it had delivered when the cap was set, plus the cap as it read back; the
        monitor learns it from every `set_volume_limit` it is told of).

        On a fresh run the cap is the planned total floored to the cap's own step. Set on top
        of a volume that is off that grid (a resumed run's baseline, or the counter of a pump
        that cannot pause and is capped again after a pause), the floor of what remains stops
        the pump up to one cap step lower (10.1234567 + 24.876 = 34.9994567 of 35 mL): the run
        is complete from there, never from more than one step below the planned total."""
        cap = self.caps.volume_cap
        if cap is None:
            return
        lowest = self.cap_ml - cap.resolution.at(self.cap_ml)
        stop_at = max(min(total_ml, self.cap_ml), lowest)
        complete_at = stop_at - self.quantum(stop_at)
        if complete_at > 0:
            self._complete_at = min(self._complete_at, complete_at)

    def _band(self, t: float) -> tuple[float, float]:
        """Planned-so-far volume at plan time `t` and the tolerance around it."""
        planned = self.plan.volume_at(t)
        return planned, self.volume_tolerance(planned)


@functools.cache
def _profile_rates_by_name(name: str) -> RateFormat | None:
    from pumpctl.plan.library import load_pump_profile

    try:
        loaded = load_pump_profile(name)
    except PumpctlError:  # a program from elsewhere, its profile not here: the pump's own rule
        return None
    fmt = loaded.number_format
    return RateFormat(tuple(loaded.rate_unit_sizes().items()),
                      NumberFormat(fmt.max_digits, fmt.max_decimals))


def _profile_rates(program: RateProgram) -> RateFormat | None:
    """The rates the pump profile `program` was compiled for can write."""
    return _profile_rates_by_name(program.pump_profile)

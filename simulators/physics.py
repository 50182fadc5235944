"""A syringe pump's mechanics, independent of any wire protocol.

The model is what the New Era simulator (and later the Modbus one) drives: a stepper turns a
lead screw that pushes a plunger; the pump *counts* displacement from its steps, while what
actually leaves the line lags behind (mechanical slack, then the compliance of syringe and
tubing charging against the line resistance) and can differ (a stuck motor delivers nothing,
an unsecured syringe free-flows more). An occluded line lets pressure build until the motor
stalls; a plunger at the end of its travel stalls too.

Time is read from a `Clock` and the state is integrated lazily, piece by piece in closed
form, whenever it is looked at; `next_event_at()` tells a driver loop when something discrete
(target volume reached, stall) will happen so it can wake exactly then. Nothing here sleeps or
polls, so a 40-minute infusion in virtual time costs a handful of calculations.

Internal units: mL, seconds, kPa; rates at the interface in mL/h.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from pumpctl.clock import Clock
from simulators.physics_params import (
    EventKind,
    ModelEvent,
    Motion,
    PhysicsParams,
    RateLimits,
    StallReason,
)
from simulators.thread_irregularity import ThreadIrregularity

__all__ = ["EventKind", "ModelEvent", "Motion", "PhysicsParams", "RateLimits", "StallReason",
           "SyringePumpModel"]

_EPS = 1e-12
# Events this close are due: float timers must not chase an event an ulp away forever.
_DUE_TOLERANCE_S = 1e-7


class SyringePumpModel:
    """One syringe on one pump. Rates in mL/h at the interface, volumes in mL."""

    def __init__(self, clock: Clock, *, diameter_mm: float = 26.59, capacity_ml: float = 60.0,
                 contents_ml: float = 60.0, params: PhysicsParams | None = None,
                 rate_limits: RateLimits | None = None) -> None:
        self.clock = clock
        self.params = params or PhysicsParams()
        self.capacity_ml = capacity_ml
        self._rate_limits = rate_limits
        self._rng = random.Random(self.params.seed)
        self._t = clock.monotonic()
        self._diameter_mm = diameter_mm
        # commanded state
        self._rate_ml_h = 0.0
        self._motion = Motion.INFUSE
        self._running = False
        self._target_ml = 0.0
        # counters (what the pump believes, from its steps)
        self._infused_ml = 0.0
        self._withdrawn_ml = 0.0
        self._phase_ml = 0.0
        # physical state
        self._contents_ml = contents_ml
        self._plunger_ml = 0.0  # physical plunger travel, signed (infuse positive)
        self._slack_left_ml = self.params.slack_ml
        self._slack_motion: Motion | None = None
        self._pressure_kpa = 0.0
        self._delivered_ml = 0.0  # net volume out of the line, physical
        self._stopper_ml = 0.0  # volume taken up by the compressed stopper (start-up compliance)
        self._thread = ThreadIrregularity(self.params)
        # faults
        self._occluded = False
        self._stuck = False
        self._free_flow_factor = 1.0
        self._stall: StallReason | None = None
        self.events: list[ModelEvent] = []
        self._listeners: list[Callable[[ModelEvent], None]] = []
        self._syncing = False  # listeners may read the model while an event is being handled
        # Clock reading at which the state was last brought fully up to date, None after any
        # change. A packet reads the model several times at one instant; the state cannot
        # move on until the clock or a setting does, so those reads need no integration.
        self._clean_at: float | None = None
        self._geometry_for = math.nan  # the diameter _geometry_cache was worked out for
        self._geometry_cache = (0.0, 0.0)

    # ---- settings -------------------------------------------------------------------------

    @property
    def diameter_mm(self) -> float:
        return self._diameter_mm

    def set_diameter(self, mm: float) -> None:
        self._change()
        self._diameter_mm = mm

    @property
    def area_mm2(self) -> float:
        return math.pi * self._diameter_mm**2 / 4.0

    @property
    def ml_per_step(self) -> float:
        """Stepper resolution: the smallest volume the pump can count."""
        return self._geometry()[0]

    @property
    def ml_per_rev(self) -> float:
        return self._geometry()[1]

    def _geometry(self) -> tuple[float, float]:
        """(mL per step, mL per lead-screw turn), needed for every counter and sensor reading:
        worked out again only when the diameter changes (the params are frozen)."""
        if self._geometry_for != self._diameter_mm:
            area, p = self.area_mm2, self.params
            self._geometry_cache = (area * p.lead_pitch_mm / p.steps_per_rev / 1000.0,
                                    area * p.lead_pitch_mm / 1000.0)
            self._geometry_for = self._diameter_mm
        return self._geometry_cache

    def rate_limits_ml_h(self) -> tuple[float, float]:
        if self._rate_limits is not None:
            return self._rate_limits(self._diameter_mm)
        # Without a profile: a plausible motor speed range, 0.0001 to 60 mm/min.
        ml_per_mm = self.area_mm2 / 1000.0
        return (0.0001 * 60 * ml_per_mm, 60.0 * 60 * ml_per_mm)

    @property
    def rate_ml_h(self) -> float:
        """Commanded rate (magnitude); the motor turns at it only while running."""
        return self._rate_ml_h

    def set_rate(self, ml_h: float) -> None:
        self._change()
        self._rate_ml_h = ml_h

    @property
    def motion(self) -> Motion:
        return self._motion

    def set_motion(self, motion: Motion) -> None:
        self._change()
        self._motion = motion

    @property
    def target_ml(self) -> float:
        return self._target_ml

    def set_target(self, ml: float) -> None:
        """Volume to dispense in this phase before stopping by itself (0 = no limit)."""
        self._change()
        self._target_ml = ml

    # ---- actions --------------------------------------------------------------------------

    def start(self) -> None:
        self._change()
        self._stall = None
        self._running = True
        if self._slack_motion is not self._motion:
            # Reversing (or the first start) means the backlash has to be taken up again.
            self._slack_left_ml = self.params.slack_ml
            self._slack_motion = self._motion

    def stop(self, *, reset_phase: bool = True) -> None:
        self._change()
        self._running = False
        if reset_phase:
            self._phase_ml = 0.0

    def clear_infused(self) -> None:
        self._change()
        self._infused_ml = 0.0

    def clear_withdrawn(self) -> None:
        self._change()
        self._withdrawn_ml = 0.0

    def load_syringe(self, contents_ml: float, capacity_ml: float | None = None) -> None:
        self._change()
        if capacity_ml is not None:
            self.capacity_ml = capacity_ml
        self._contents_ml = contents_ml

    # ---- faults ---------------------------------------------------------------------------

    def set_occluded(self, occluded: bool) -> None:
        self._change()
        self._occluded = occluded

    def set_stuck(self, stuck: bool) -> None:
        self._change()
        self._stuck = stuck

    def set_free_flow(self, factor: float) -> None:
        """Delivered flow becomes `factor` times the plunger flow (syringe not held back)."""
        self._change()
        self._free_flow_factor = factor

    def empty_syringe(self) -> None:
        self._change()
        self._contents_ml = 0.0

    # ---- readings -------------------------------------------------------------------------

    @property
    def stall(self) -> StallReason | None:
        """Why the motor last stalled (cleared by the next start)."""
        self._sync()
        return self._stall

    @property
    def running(self) -> bool:
        self._sync()
        return self._running

    @property
    def infused_ml(self) -> float:
        """The pump's own counter (step count), not what left the line."""
        self._sync()
        return self._quantise(self._infused_ml)

    @property
    def withdrawn_ml(self) -> float:
        self._sync()
        return self._quantise(self._withdrawn_ml)

    @property
    def phase_ml(self) -> float:
        self._sync()
        return self._phase_ml

    @property
    def contents_ml(self) -> float:
        self._sync()
        return self._contents_ml

    @property
    def pressure_kpa(self) -> float:
        self._sync()
        return self._pressure_kpa

    @property
    def delivered_ml(self) -> float:
        """Net volume that physically left the line, with the lead-screw ripple."""
        self._sync()
        per_rev = self._geometry()[1]
        ripple = self.params.ripple_fraction * per_rev / (2 * math.pi)
        wobble = ripple * math.sin(2 * math.pi * self._plunger_ml / per_rev)
        if not self._plunger_ml:
            return self._delivered_ml
        return self._delivered_ml + wobble + self._thread.error_ml(self._plunger_ml, per_rev,
                                                                  self.area_mm2)

    def sample_delivered_ml(self) -> float:
        """`delivered_ml` as a noisy sensor (a balance) would read it."""
        noise = self._rng.gauss(0.0, self.params.noise_ml) if self.params.noise_ml else 0.0
        return self.delivered_ml + noise

    def counters_ml(self) -> tuple[float, float]:
        """(`infused_ml`, `withdrawn_ml`) after one sync: what every `DIS` reply reads."""
        self._sync()
        return self._quantise(self._infused_ml), self._quantise(self._withdrawn_ml)

    def _quantise(self, ml: float) -> float:
        step = self._geometry()[0]
        return math.floor(ml / step + 1e-9) * step

    def add_listener(self, listener: Callable[[ModelEvent], None]) -> None:
        self._listeners.append(listener)

    # ---- integration ----------------------------------------------------------------------

    def sync(self) -> None:
        """Bring the state up to the clock's present (events fire from here)."""
        self._sync()

    def next_event_at(self) -> float | None:
        """Clock time at which the model next changes course if nobody intervenes (an event,
        or an internal breakpoint such as the slack being taken up), or None."""
        self._sync()
        dt, _ = self._next_event_dt()
        return None if dt is None else self._t + dt

    def _sign(self) -> float:
        return 1.0 if self._motion is Motion.INFUSE else -1.0

    def _motor_q(self) -> float:
        """Counted motor flow, signed, mL/s."""
        return self._sign() * self._rate_ml_h / 3600.0 if self._running else 0.0

    def _plunger_q(self) -> float:
        """Physical plunger flow once the slack is taken up, signed, mL/s."""
        if self._stuck or not self._running or self._slack_left_ml > _EPS:
            return 0.0
        return self._motor_q()

    def _tau(self) -> float:
        p = self.params
        return p.resistance_kpa_per_ml_h * 3600.0 * p.compliance_ml_per_kpa

    def _next_event_dt(self) -> tuple[float | None, str | None]:
        if not self._running:
            return None, None
        q = abs(self._motor_q())
        if q <= 0:
            return None, None
        candidates: list[tuple[float, str]] = []
        if self._target_ml > 0:
            candidates.append((max(0.0, (self._target_ml - self._phase_ml) / q), "target"))
        if not self._stuck and self._slack_left_ml > _EPS:
            candidates.append((self._slack_left_ml / q, "slack"))
        qp = self._plunger_q()
        if qp > 0:
            candidates.append((max(0.0, self._contents_ml / qp), "empty"))
        elif qp < 0:
            candidates.append((max(0.0, (self.capacity_ml - self._contents_ml) / -qp), "full"))
        if qp != 0:
            dt = self._time_to_stall_pressure(qp)
            if dt is not None:
                candidates.append((dt, "pressure"))
        if not candidates:
            return None, None
        dt, what = min(candidates)
        return dt, what

    def _time_to_stall_pressure(self, qp: float) -> float | None:
        p = self.params
        sign = 1.0 if qp > 0 else -1.0
        limit = p.stall_pressure_kpa
        p0 = sign * self._pressure_kpa
        if p0 >= limit:
            return 0.0
        aq = abs(qp)
        if self._occluded:
            return (limit - p0) * p.compliance_ml_per_kpa / aq
        p_inf = aq * p.resistance_kpa_per_ml_h * 3600.0
        if p_inf <= limit:
            return None
        return self._tau() * math.log((p_inf - p0) / (p_inf - limit))

    def _sync(self) -> None:
        if self._syncing:
            return
        now = self.clock.monotonic()
        if now == self._clean_at:
            return
        self._syncing = True
        try:
            settled = self._sync_to(now)
        finally:
            self._syncing = False
        self._clean_at = now if settled else None

    def _change(self) -> None:
        """Bring the state up to now before a setting or fault changes it (mutators call this
        first), and forget that it was up to date."""
        self._sync()
        self._clean_at = None

    def _sync_to(self, now: float) -> bool:
        """Integrate up to `now`; True when nothing more is due at `now`."""
        # Each pass handles one piece with constant inputs; events due now (dt 0) are handled
        # even when no time has passed. Bounded, so a modelling slip cannot hang the loop.
        for _ in range(64):
            dt_event, what = self._next_event_dt()
            if dt_event is not None and self._t + dt_event <= now + _DUE_TOLERANCE_S:
                self._integrate(dt_event)
                self._t += dt_event
                self._handle(what)
                continue
            if now > self._t:
                self._integrate(now - self._t)
                self._t = now
            return True
        return False

    def _integrate(self, dt: float) -> None:
        if dt <= 0:
            return
        p = self.params
        q = self._motor_q()
        aq = abs(q)
        if aq:
            if q > 0:
                self._infused_ml += aq * dt
            else:
                self._withdrawn_ml += aq * dt
            self._phase_ml += aq * dt
        if self._running and not self._stuck and self._slack_left_ml > _EPS and aq:
            taken = min(self._slack_left_ml, aq * dt)
            self._slack_left_ml -= taken
        qp = self._plunger_q()
        moved = qp * dt
        self._plunger_ml += moved
        self._contents_ml = min(self.capacity_ml, max(0.0, self._contents_ml - moved))
        c = p.compliance_ml_per_kpa
        p0 = self._pressure_kpa
        if self._occluded:
            self._pressure_kpa = p0 + moved / c
            out = 0.0
        else:
            p_inf = qp * p.resistance_kpa_per_ml_h * 3600.0
            self._pressure_kpa = p_inf + (p0 - p_inf) * math.exp(-dt / self._tau())
            out = moved - c * (self._pressure_kpa - p0)
            if p.startup_ml > 0 and moved:
                # The stopper's compression follows the plunger's travel, charging towards
                # +startup_ml when infusing (-startup_ml when withdrawing).
                target = math.copysign(p.startup_ml, moved)
                before = self._stopper_ml
                self._stopper_ml = target + (before - target) * math.exp(-abs(moved)
                                                                         / p.startup_ml)
                out -= self._stopper_ml - before
        if qp > 0 and self._free_flow_factor != 1.0:
            out += (self._free_flow_factor - 1.0) * moved
        self._delivered_ml += out

    def _handle(self, what: str | None) -> None:
        if what == "target":
            self._running = False
            self._phase_ml = 0.0
            self._emit(ModelEvent(EventKind.TARGET_REACHED, self._t))
        elif what == "empty":
            self._stall_now(StallReason.SYRINGE_EMPTY)
        elif what == "full":
            self._stall_now(StallReason.SYRINGE_FULL)
        elif what == "pressure":
            self._stall_now(StallReason.OCCLUSION)
        # "slack" needs nothing: the next piece simply starts moving the plunger.

    def _stall_now(self, reason: StallReason) -> None:
        self._running = False
        self._phase_ml = 0.0
        self._stall = reason
        self._emit(ModelEvent(EventKind.STALLED, self._t, reason))

    def _emit(self, event: ModelEvent) -> None:
        self.events.append(event)
        for listener in list(self._listeners):
            listener(event)

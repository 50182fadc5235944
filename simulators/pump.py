"""A simulated syringe pump with no wire protocol: what a pump does, for any engine to speak.

A protocol engine (`simulators.newera` today, Modbus next) turns bytes into calls on a
`SimulatedPump` and its answers back into bytes; everything a pump does whatever it is asked
in lives here, once: its state (stopped, infusing, withdrawing, paused, alarm), the rate in
mL/h, the volume to dispense in mL, the direction, the counters in mL (from the physics
model), alarms, power cut and power-up, a host watchdog, the fault injections of
`simulators.faults`, and the faults and deadlines scheduled on the clock.

What an engine must do with it:
- call `service(now)` before handling a request (due faults, watchdog, power-up, physics
  events happen first), and answer nothing while `powered` is False;
- call `feed_watchdog(now)` for every valid request its protocol says feeds the watchdog;
- map `Refusal` values to its own error replies and `PumpAlarm` values to its own alarm codes;
- ask `take_ignored_command()`, `wire.take_inbound_corruption()` and
  `wire.take_reply_fault()` where its wire would suffer those faults (the pump counts them
  down; the engine damages the bytes);
- listen with `add_alarm_listener` (e.g. to send an alarm unasked) and
  `add_power_up_listener` (e.g. to restore protocol settings kept with the rate).
The line an engine runs (`simulators.line.SimLine`) wakes a service task at
`next_deadline()`, so time-driven things happen without a request.

Units: mL, mL/h, seconds on the pump's clock. Choices a protocol's facts leave open are in
docs/simulators.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from pumpctl.clock import Clock
from simulators.faults import Fault, FaultKind
from simulators.physics import (
    EventKind,
    ModelEvent,
    Motion,
    PhysicsParams,
    RateLimits,
    StallReason,
    SyringePumpModel,
)
from simulators.wire_faults import ReplyFault, WireFaults

__all__ = ["DIAMETER_RANGE_MM", "Motion", "PumpAlarm", "PumpSetup", "Refusal", "ReplyFault",
           "SimPumpState", "SimulatedPump"]

DIAMETER_RANGE_MM = (0.1, 80.0)


class SimPumpState(StrEnum):
    STOPPED = "stopped"
    INFUSING = "infusing"
    WITHDRAWING = "withdrawing"
    PAUSED = "paused"  # stopped mid-phase: `run()` resumes the phase
    ALARM = "alarm"  # an alarm is pending (the motor is stopped)


class PumpAlarm(StrEnum):
    """Why the pump raised an alarm. The values match the product's `AlarmKind` names."""

    POWER_RESET = "power_reset"
    STALL = "stall"  # motor stalled: an occlusion (or withdrawing past the barrel)
    SYRINGE_EMPTY = "syringe_empty"  # the plunger reached the end of its travel
    WATCHDOG = "watchdog"  # no valid request from the host within the watchdog time
    VOLUME_LIMIT_OUT_OF_RANGE = "volume_limit_out_of_range"
    PROGRAM_ERROR = "program_error"  # raised only through the API (no programs simulated)
    PHASE_OUT_OF_RANGE = "phase_out_of_range"  # likewise


class Refusal(StrEnum):
    """Why a setting or action was refused (the engine words it in its protocol)."""

    OUT_OF_RANGE = "out_of_range"
    BUSY = "busy"  # not while the motor runs (or, for some settings, while paused)
    ALARM_PENDING = "alarm_pending"  # acknowledge the alarm first


@dataclass
class PumpSetup:
    """A pump as it comes out of the box: the loaded syringe and the settings kept in
    non-volatile memory."""

    diameter_mm: float = 26.59
    capacity_ml: float = 60.0
    syringe_volume_ml: float = 60.0  # what the loaded syringe holds at the start
    watchdog_s: int = 0  # 0: off
    physics: PhysicsParams = field(default_factory=PhysicsParams)


def _nothing() -> None:
    pass


class SimulatedPump:
    """One pump over one `SyringePumpModel`.

    `wake` is called whenever something may have brought `next_deadline()` closer (the line's
    service task then looks again); `time_base` gives the clock reading fault times count
    from (default: when the pump was made). Both are set by the line the pump is on.
    """

    def __init__(self, clock: Clock, setup: PumpSetup | None = None, *,
                 rate_limits: RateLimits | None = None, wake: Callable[[], None] | None = None,
                 time_base: Callable[[], float] | None = None) -> None:
        setup = setup or PumpSetup()
        self.clock = clock
        created = clock.monotonic()
        self._time_base = time_base or (lambda: created)
        self._wake = wake or _nothing
        self.setup = setup
        self.model = SyringePumpModel(
            clock, diameter_mm=setup.diameter_mm, capacity_ml=setup.capacity_ml,
            contents_ml=setup.syringe_volume_ml, params=setup.physics, rate_limits=rate_limits)
        self.model.add_listener(self._on_model_event)
        self._alarm_listeners: list[Callable[[PumpAlarm], None]] = []
        self._power_up_listeners: list[Callable[[], None]] = []
        # Settings in non-volatile memory.
        self.watchdog_s = setup.watchdog_s
        self.stored_rate_ml_h = 0.0  # a rate set while stopped; a running change is not stored
        self.volume_target_ml = 0.0  # volume to dispense per phase; 0 = no limit
        # Volatile state.
        self.rate_ml_h = 0.0  # the rate setting (what the pump reports; the motor may differ)
        self.paused = False
        self.alarm: PumpAlarm | None = None
        self.powered = True
        self._power_up_at: float | None = None
        self._fed_at: float | None = None  # the watchdog runs from here once set
        self.ignore_first_quirk = False
        self._ignore_next = False
        # Faults on the bytes: counted down here, carried out by the engine, which asks
        # `wire.take_inbound_corruption()` and `wire.take_reply_fault()`.
        self.wire = WireFaults()
        self._scheduled: list[tuple[float, Fault]] = []
        self._occlusion_clear_at: float | None = None
        self.alarm_log: list[tuple[float, PumpAlarm]] = []  # every alarm raised (tests, HIL)
        self.alarm = PumpAlarm.POWER_RESET  # a pump just switched on reports the interruption
        self.alarm_log.append((clock.monotonic(), PumpAlarm.POWER_RESET))

    def attach(self, *, wake: Callable[[], None], time_base: Callable[[], float]) -> None:
        """Put the pump on a line: its service task and its start time."""
        self._wake = wake
        self._time_base = time_base

    def poke(self) -> None:
        """Something changed that may bring `next_deadline()` closer: have the line look."""
        self._wake()

    def add_alarm_listener(self, listener: Callable[[PumpAlarm], None]) -> None:
        """Called with each alarm as it is raised (the alarm is already pending)."""
        self._alarm_listeners.append(listener)

    def add_power_up_listener(self, listener: Callable[[], None]) -> None:
        """Called when power comes back, before the power-reset alarm is raised."""
        self._power_up_listeners.append(listener)

    # ---- state ----------------------------------------------------------------------------

    @property
    def moving(self) -> bool:
        return self.model.running

    @property
    def motion_state(self) -> SimPumpState:
        """What the motor is doing, whether or not an alarm is pending."""
        if self.model.running:
            return (SimPumpState.INFUSING if self.model.motion is Motion.INFUSE
                    else SimPumpState.WITHDRAWING)
        return SimPumpState.PAUSED if self.paused else SimPumpState.STOPPED

    @property
    def state(self) -> SimPumpState:
        return SimPumpState.ALARM if self.alarm is not None else self.motion_state

    @property
    def direction(self) -> Motion:
        return self.model.motion

    @property
    def diameter_mm(self) -> float:
        return self.model.diameter_mm

    def rate_limits_ml_h(self) -> tuple[float, float]:
        """(lowest, highest) rate in mL/h for the syringe loaded now."""
        return self.model.rate_limits_ml_h()

    def counters_ml(self) -> tuple[float, float]:
        """(infused, withdrawn) as the pump counts them from its steps."""
        return self.model.counters_ml()

    # ---- settings and actions (None: done) -------------------------------------------------

    def set_diameter(self, mm: float) -> Refusal | None:
        if not DIAMETER_RANGE_MM[0] <= mm <= DIAMETER_RANGE_MM[1]:
            return Refusal.OUT_OF_RANGE
        if self.moving or self.paused:
            return Refusal.BUSY
        self.model.set_diameter(mm)
        self._wake()
        return None

    def set_rate(self, ml_h: float) -> Refusal | None:
        """Accepted while pumping too (the motor follows at once), but only a rate set while
        stopped is kept over a power cut."""
        low, high = self.model.rate_limits_ml_h()
        if not low <= ml_h <= high:
            return Refusal.OUT_OF_RANGE
        self.rate_ml_h = ml_h
        if not self.moving:
            self.stored_rate_ml_h = ml_h
        self.model.set_rate(ml_h)
        self._wake()
        return None

    def set_volume_target(self, ml: float) -> Refusal | None:
        if not ml >= 0.0:
            return Refusal.OUT_OF_RANGE
        if self.moving:
            return Refusal.BUSY
        self.volume_target_ml = ml
        return None

    def set_direction(self, motion: Motion) -> Refusal | None:
        if self.moving or self.paused:
            return Refusal.BUSY
        self.model.set_motion(motion)
        self._wake()
        return None

    def run(self) -> Refusal | None:
        """Start a phase (volume target from now), or resume a paused one. Running: no-op."""
        if self.alarm is not None:
            return Refusal.ALARM_PENDING
        if self.moving:
            return None
        low, high = self.model.rate_limits_ml_h()
        if not low <= self.rate_ml_h <= high:
            return Refusal.OUT_OF_RANGE
        if not self.paused:
            self.model.set_target(self.volume_target_ml)
        self.paused = False
        self.model.set_rate(self.rate_ml_h)
        self.model.start()
        self._wake()
        return None

    def pause(self) -> None:
        """Stop the motor but keep the phase (what is left of the volume target)."""
        if self.moving:
            self.model.stop(reset_phase=False)
            self.paused = True
            self._wake()

    def stop(self) -> None:
        """Stop the motor and end the phase."""
        self.model.stop(reset_phase=True)
        self.paused = False
        self._wake()

    def clear_counters(self, *, infused: bool = False, withdrawn: bool = False) -> Refusal | None:
        if self.moving:
            return Refusal.BUSY
        if infused:
            self.model.clear_infused()
        if withdrawn:
            self.model.clear_withdrawn()
        return None

    def acknowledge_alarm(self) -> PumpAlarm | None:
        """Clear the pending alarm; returns it (None if there was none)."""
        alarm, self.alarm = self.alarm, None
        return alarm

    def raise_alarm(self, alarm: PumpAlarm) -> None:
        """Make `alarm` pending (the motor is not touched: callers stop it when it should)."""
        self.alarm = alarm
        self.alarm_log.append((self.clock.monotonic(), alarm))
        for listener in self._alarm_listeners:
            listener(alarm)

    # ---- the host watchdog ------------------------------------------------------------------

    def set_watchdog(self, seconds: int) -> None:
        """0 turns it off; otherwise it runs from now."""
        self.watchdog_s = seconds
        self._fed_at = self.clock.monotonic() if seconds else None
        self._wake()

    def feed_watchdog(self, now: float) -> None:
        """A valid request arrived at `now`. The watchdog starts with the first one after
        power-up and fires `watchdog_s` after the last one."""
        if self._fed_at is None and self.watchdog_s:
            self._wake()  # the watchdog starts now: the service task must know
        self._fed_at = now

    def watchdog_deadline(self) -> float | None:
        if not self.powered or not self.watchdog_s or self._fed_at is None:
            return None
        return self._fed_at + self.watchdog_s

    # ---- time-driven behaviour --------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Schedule `fault` at `fault.at_s` seconds after the line started (at once if that
        time has passed)."""
        self.schedule(self._time_base() + fault.at_s, fault)

    def schedule(self, at: float, fault: Fault) -> None:
        """Apply `fault` at clock time `at`."""
        self._scheduled.append((at, fault))
        self._scheduled.sort(key=lambda item: item[0])
        self._wake()

    def next_deadline(self) -> float | None:
        """When `service` next has something to do without a request, or None."""
        times = [t for t, _ in self._scheduled[:1]]
        if self._power_up_at is not None:
            times.append(self._power_up_at)
        if self._occlusion_clear_at is not None:
            times.append(self._occlusion_clear_at)
        deadline = self.watchdog_deadline()
        if deadline is not None:
            times.append(deadline)
        if self.powered:
            event = self.model.next_event_at()
            if event is not None:
                times.append(event)
        return min(times) if times else None

    def service(self, now: float) -> None:
        """Apply whatever became due by `now`: faults, power-up, watchdog, physics events."""
        while self._scheduled and self._scheduled[0][0] <= now:
            _, fault = self._scheduled.pop(0)
            self.apply(fault)
        if self._power_up_at is not None and now >= self._power_up_at:
            self._power_up()
        if self._occlusion_clear_at is not None and now >= self._occlusion_clear_at:
            self._occlusion_clear_at = None
            self.model.set_occluded(False)
        self.model.sync()
        deadline = self.watchdog_deadline()
        if deadline is not None and now >= deadline:
            self._fed_at = None  # re-armed by the next valid request
            self._halt()
            self.raise_alarm(PumpAlarm.WATCHDOG)

    def _on_model_event(self, event: ModelEvent) -> None:
        self.paused = False
        if event.kind is EventKind.STALLED:
            self.raise_alarm(PumpAlarm.SYRINGE_EMPTY if event.stall is StallReason.SYRINGE_EMPTY
                             else PumpAlarm.STALL)

    def _halt(self) -> None:
        self.model.stop(reset_phase=True)
        self.paused = False

    # ---- faults ---------------------------------------------------------------------------

    def apply(self, fault: Fault) -> None:
        """Apply `fault` now, whatever its time."""
        if not self.wire.apply(fault):
            self._apply_to_pump(fault)
        self._wake()

    def _apply_to_pump(self, fault: Fault) -> None:
        kind = fault.kind
        if kind is FaultKind.OCCLUSION:
            self.model.set_occluded(True)
            clear_after = fault.param("clear_after")
            self._occlusion_clear_at = (self.clock.monotonic() + clear_after if clear_after > 0
                                        else None)
        elif kind is FaultKind.SYRINGE_EMPTY:
            self.model.empty_syringe()
        elif kind is FaultKind.STUCK_MOTOR:
            self.model.set_stuck(True)
        elif kind is FaultKind.FREE_FLOW:
            self.model.set_free_flow(fault.param("factor"))
        elif kind is FaultKind.POWER_RESET:
            self.power_cut(fault.param("off"))
        elif kind is FaultKind.IGNORE_FIRST:
            self.ignore_first_quirk = True
            self._ignore_next = True

    def power_cut(self, off_s: float = 0.0) -> None:
        """Lose power now; it comes back after `off_s` (0: at once). Settings survive; the
        motor, the phase, the counters and a pending alarm do not."""
        self._halt()
        self.model.clear_infused()
        self.model.clear_withdrawn()
        self.powered = False
        self.alarm = None
        self._fed_at = None
        self._power_up_at = self.clock.monotonic() + max(0.0, off_s)
        if off_s <= 0:
            self._power_up()

    def _power_up(self) -> None:
        self._power_up_at = None
        self.powered = True
        self.rate_ml_h = self.stored_rate_ml_h  # a rate changed while running was never stored
        self.model.set_rate(self.rate_ml_h)
        self._ignore_next = self.ignore_first_quirk
        for listener in self._power_up_listeners:
            listener()
        self.raise_alarm(PumpAlarm.POWER_RESET)

    def take_ignored_command(self) -> bool:
        """True once after each power-up while the ignore-first-command quirk is on: the
        engine drops that request without a reply."""
        if self._ignore_next:
            self._ignore_next = False
            return True
        return False


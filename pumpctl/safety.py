"""The safety monitor: an independent re-check of every command and every status sample.

The monitor never trusts the compiled `segments`. It re-derives what the pump *should* have
delivered by any moment from the plan's `steps` (each step is a constant rate: its volume over
its duration) and caps everything at the program's hard `limits`. The controller asks it
before sending each command and hands it each status sample; whatever it returns as a
`Breach` makes the controller stop the pump and journal an alarm.

The tolerances and windows, and why they have the values they do, are in docs/safety.md.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from enum import StrEnum

from pumpctl.drivers.base import Direction, PumpState, PumpStatus
from pumpctl.errors import PumpctlError
from pumpctl.plan.program import RateProgram
from pumpctl.sensor_divergence import SensorDivergence


class BreachKind(StrEnum):
    OVER_INFUSION = "over_infusion"
    UNDER_INFUSION = "under_infusion"
    RATE_EXCEEDED = "rate_exceeded"
    TOTAL_REACHED = "total_reached"
    DOSE_EXCEEDED = "dose_exceeded"
    VOLUME_LIMIT = "volume_limit"  # volume-to-dispense not capped at the remaining plan
    READBACK_MISMATCH = "readback_mismatch"
    UNEXPECTED_STATE = "unexpected_state"
    NO_STATUS = "no_status"
    PUMP_ALARM = "pump_alarm"
    PUMP_ERROR = "pump_error"  # a command that failed on the wire: the outcome is in doubt
    COMMAND_REFUSED = "command_refused"
    SENSOR_ERROR = "sensor_error"  # the delivered-volume sensor failed or read nonsense
    CONTROLLER_ERROR = "controller_error"


@dataclass(frozen=True)
class Breach:
    """One reason to stop: what was seen, against which limit."""

    kind: BreachKind
    message: str
    value: float | str | None = None
    limit: float | str | None = None
    fault: bool = True  # False only when the plan is simply done (total reached)
    source: str = "safety"

    def as_record(self) -> dict[str, object]:
        return {"kind": self.kind.value, "source": self.source, "message": self.message,
                "value": self.value, "limit": self.limit}


class SafetyConfigError(PumpctlError):
    """The program is not self-consistent enough to be run safely."""

    exit_code = 2


class PumpClass(StrEnum):
    SYRINGE = "syringe"
    LARGE_VOLUME = "large_volume"


@dataclass(frozen=True)
class SafetyTolerances:
    """How far the pump may stray from the plan before the monitor stops it (see docs/safety.md)."""

    volume_rel: float = 0.02  # accuracy class of a syringe pump (±2 %)
    volume_abs_ml: float = 0.05  # floor early in a run, when 2 % of almost nothing is nothing
    rate_rel: float = 0.02  # a commanded/reported rate may exceed the step rate by this much
    readback_rel: float = 0.002  # 4-significant-digit number format plus unit conversion
    timing_slack_s: float = 2.0  # plan clock vs pump clock: command and poll latency
    under_window_s: float = 15.0  # under-delivery must persist this long to be an occlusion
    no_status_s: float = 5.0  # no valid status for this long → stop
    end_grace_rel: float = 0.02  # the pump may finish this fraction of the duration late
    end_grace_min_s: float = 5.0
    sensor_abs_ml: float = 0.05  # extra allowance for a delivered-volume sensor (balance)
    sensor_window_s: float = 30.0  # sensor vs counter: compared over this sliding window
    sensor_lag_s: float = 2.0  # ... allowing this many seconds of flow held by the line

    @classmethod
    def for_pump_class(cls, pump_class: PumpClass, **overrides: float) -> SafetyTolerances:
        """Defaults per pump class: ±2 % for syringe pumps, ±5 % for large-volume pumps."""
        base = cls() if pump_class is PumpClass.SYRINGE else cls(volume_rel=0.05, rate_rel=0.05)
        return cls(**{**base.__dict__, **overrides})


def counter_quantum_ml(value_ml: float) -> float:
    """Smallest step a 4-significant-digit, ≤ 3-decimal pump display can show near `value_ml`."""
    v = abs(value_ml)
    if v < 1.0:
        return 0.001
    return max(0.001, 10.0 ** (math.floor(math.log10(v)) - 3))


@dataclass(frozen=True)
class _Step:
    start_s: float
    end_s: float
    rate_ml_s: float
    volume_ml: float


class PlannedDelivery:
    """Planned-so-far volume and allowed rate as functions of plan time, from `steps` alone."""

    def __init__(self, program: RateProgram) -> None:
        planned = sorted(program.steps, key=lambda s: s.start_s)
        if not planned:
            raise SafetyConfigError(f"program {program.plan!r} has no steps to check against")
        self.steps: list[_Step] = []  # sorted, validated, with their constant rates
        prev_end = -math.inf
        for i, s in enumerate(planned):
            bad = [f for f in ("start_s", "duration_s", "volume_ml")
                   if not math.isfinite(getattr(s, f)) or getattr(s, f) < 0]
            if bad:
                raise SafetyConfigError(f"steps[{i}].{bad[0]} = {getattr(s, bad[0])}: must be >= 0")
            if s.start_s < prev_end - 1e-9:
                raise SafetyConfigError(f"steps[{i}].start_s = {s.start_s}: overlaps the "
                                        f"previous step ending at {prev_end}")
            if s.duration_s == 0 and s.volume_ml > 0:
                raise SafetyConfigError(f"steps[{i}].duration_s = 0 with volume {s.volume_ml} mL: "
                                        "no pump can deliver that")
            rate = s.volume_ml / s.duration_s if s.duration_s > 0 else 0.0
            self.steps.append(_Step(s.start_s, s.start_s + s.duration_s, rate, s.volume_ml))
            prev_end = s.start_s + s.duration_s
        self._starts = [st.start_s for st in self.steps]
        self._cum: list[float] = [0.0]
        for st in self.steps:
            self._cum.append(self._cum[-1] + st.volume_ml)
        self.total_ml = self._cum[-1]
        self.end_s = self.steps[-1].end_s

    def volume_at(self, t: float) -> float:
        """Volume the plan has delivered by plan time `t` (linear inside each step)."""
        i = bisect.bisect_right(self._starts, t) - 1
        if i < 0:
            return 0.0
        s = self.steps[i]
        if t >= s.end_s:
            return self._cum[i + 1]
        return self._cum[i] + s.rate_ml_s * (t - s.start_s)

    def max_rate_ml_h(self, t0: float, t1: float) -> float:
        """Highest step rate anywhere in plan time [t0, t1] (0 where no step runs)."""
        best = 0.0
        for s in self.steps:
            if s.start_s <= t1 and s.end_s >= t0 and s.end_s > s.start_s:
                best = max(best, s.rate_ml_s * 3600.0)
        return best

    def time_for_volume(self, volume_ml: float) -> float:
        """Earliest plan time by which the plan has delivered `volume_ml` (for resuming)."""
        if volume_ml <= 0:
            return 0.0
        if volume_ml >= self.total_ml:
            return self.end_s
        i = bisect.bisect_left(self._cum, volume_ml) - 1
        i = min(max(i, 0), len(self.steps) - 1)
        s = self.steps[i]
        if s.rate_ml_s <= 0:
            return s.end_s
        return s.start_s + (volume_ml - self._cum[i]) / s.rate_ml_s

    @property
    def last_rate_ml_h(self) -> float:
        moving = [s for s in self.steps if s.rate_ml_s > 0]
        return moving[-1].rate_ml_s * 3600.0 if moving else 0.0


@dataclass
class _Expectation:
    """What the monitor believes the pump was told to do, from the commands it has approved."""

    rate_ml_h: float | None = None
    vtbi_ml: float | None = None
    moving: bool = False
    started: bool = False


@dataclass
class SafetyMonitor:
    """Checks commands before they are sent and status samples as they arrive.

    Volumes handed to the monitor are *delivered since the original start of the plan*
    (for a resumed run: the reconciled volume of earlier runs plus the pump's counter).
    """

    program: RateProgram
    tolerances: SafetyTolerances = field(default_factory=SafetyTolerances)

    def __post_init__(self) -> None:
        p = self.program
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
        self.expect = _Expectation()
        self._under_since: dict[str, float] = {}
        self._last_valid_at: float | None = None
        self._last_delivered: float | None = None
        self._divergence = SensorDivergence(window_s=tol.sensor_window_s,
                                            abs_ml=tol.sensor_abs_ml, rel=tol.volume_rel,
                                            lag_s=tol.sensor_lag_s)

    # -- figures -----------------------------------------------------------------------

    def quantum(self, volume_ml: float) -> float:
        return max(counter_quantum_ml(volume_ml), self.program.limits.volume_resolution_ml)

    def volume_tolerance(self, planned_ml: float) -> float:
        t = self.tolerances
        return max(t.volume_abs_ml, t.volume_rel * planned_ml, 2 * self.quantum(planned_ml))

    def allowed_rate_ml_h(self, plan_t: float) -> float:
        """Highest rate the pump may run at around plan time `plan_t` (incl. tolerance)."""
        slack = self.tolerances.timing_slack_s
        rate = self.plan.max_rate_ml_h(plan_t - slack, plan_t + slack)
        if plan_t >= self.plan.end_s - slack and plan_t <= self.plan.end_s + self.end_grace_s:
            rate = max(rate, self.plan.last_rate_ml_h)  # finishing the last few drops late
        rate *= 1.0 + self.tolerances.rate_rel
        return min(rate, self.program.limits.max_rate_ml_h * (1.0 + self.tolerances.readback_rel))

    def is_complete(self, delivered_ml: float) -> bool:
        return delivered_ml >= self.cap_ml - self._cap_quantum

    # -- commands ----------------------------------------------------------------------

    def check_command(self, op: str, value: object, *, plan_t: float,
                      delivered_ml: float) -> Breach | None:
        """Approve (None) or refuse an outgoing command before it is sent."""
        if op in ("stop", "pause", "status", "identify", "acknowledge_alarm", "set_watchdog"):
            return None
        if op == "set_rate":
            return self._check_rate("commanded rate", _as_float(value), plan_t)
        if op == "set_volume_limit":
            return self._check_vtbi(_as_float(value), delivered_ml)
        if op == "set_diameter":
            d = _as_float(value)
            if abs(d - self.diameter_mm) > 0.005:
                return Breach(BreachKind.COMMAND_REFUSED, f"syringe diameter {d} mm differs "
                              f"from the program's {self.diameter_mm} mm", d, self.diameter_mm)
            return None
        if op == "set_direction":
            if value != Direction.INFUSE:
                return Breach(BreachKind.COMMAND_REFUSED,
                              f"direction {value}: only infuse is planned",
                              str(value), Direction.INFUSE.value)
            return None
        if op == "clear_counters":
            if self.expect.moving:
                return Breach(BreachKind.COMMAND_REFUSED,
                              "clearing the counters while running would hide delivered volume")
            return None
        if op == "run":
            if self.is_complete(delivered_ml):
                return Breach(BreachKind.TOTAL_REACHED,
                              f"delivered {delivered_ml:.4g} mL: the planned total is reached",
                              delivered_ml, self.cap_ml, fault=False)
            if self.expect.vtbi_ml is None or self.expect.vtbi_ml <= 0:
                return Breach(BreachKind.VOLUME_LIMIT,
                              "refusing to run without a volume to dispense (the pump's own stop)")
            if self.expect.rate_ml_h is None:
                return Breach(BreachKind.COMMAND_REFUSED, "refusing to run before a rate is set")
            return self._check_rate("rate at start", self.expect.rate_ml_h, plan_t)
        return Breach(BreachKind.COMMAND_REFUSED, f"command {op!r} is not part of any plan", op)

    def note_command(self, op: str, readback: object = None, *, sent: object = None,
                     plan_t: float = 0.0, delivered_ml: float = 0.0) -> Breach | None:
        """Record a command the pump accepted; check the value it read back."""
        if op == "set_rate":
            read = _as_float(readback)
            self.expect.rate_ml_h = read
            return (self._readback_mismatch("rate", "mL/h", read, sent)
                    or self._check_rate("read-back rate", read, plan_t))
        if op == "set_volume_limit":
            read = _as_float(readback)
            self.expect.vtbi_ml = read
            return (self._readback_mismatch("volume to dispense", "mL", read, sent)
                    or self._check_vtbi(read, delivered_ml))
        if op in ("set_diameter", "set_direction"):  # the read-back must be what was planned
            return self.check_command(op, readback, plan_t=plan_t, delivered_ml=delivered_ml)
        if op == "run":
            self.expect.moving = True
            self.expect.started = True
            self._under_since.clear()
        elif op in ("pause", "stop"):
            self.expect.moving = False
        return None

    def _readback_mismatch(self, what: str, unit: str, read: float,
                           sent: object) -> Breach | None:
        """A setting the pump reports differently from what was sent (within tolerance)."""
        if sent is None or self._close(read, _as_float(sent)):
            return None
        return Breach(BreachKind.READBACK_MISMATCH,
                      f"{what} read back {read} {unit}, sent {sent} {unit}",
                      read, _as_float(sent))

    # -- status samples ----------------------------------------------------------------

    def note_status_failure(self, now: float) -> None:
        if self._last_valid_at is None:
            self._last_valid_at = now

    def check_silence(self, now: float) -> Breach | None:
        """No valid status for `no_status_s` → stop."""
        if self._last_valid_at is None:
            return None
        quiet = now - self._last_valid_at
        if quiet >= self.tolerances.no_status_s:
            return Breach(BreachKind.NO_STATUS, f"no valid status from the pump for {quiet:.1f} s",
                          round(quiet, 3), self.tolerances.no_status_s)
        return None

    def check_sample(self, status: PumpStatus, *, delivered_ml: float, plan_t: float,
                     now: float, measured_ml: float | None = None) -> list[Breach]:
        """Every reason this sample gives to stop, most serious first (empty: carry on).

        `delivered_ml` is the pump's own counter (its step count); `measured_ml`, when a
        sensor such as a balance is fitted, is what actually left the line. Only the sensor
        can see a motor that counts steps without moving, or flow the motor did not push.
        """
        self._last_valid_at = now
        out: list[Breach] = []
        moving = status.state.is_moving
        if status.alarm is not None or status.state is PumpState.ALARM:
            kind = status.alarm.kind.value if status.alarm else "unknown"
            code = status.alarm.code if status.alarm else "?"
            out.append(Breach(BreachKind.PUMP_ALARM, f"pump alarm {kind} ({code})", kind, None,
                              source="pump"))
        dose = delivered_ml * self.concentration
        # The counter and the sensor are held to the same planned-so-far figures.
        slack = self.tolerances.timing_slack_s
        band_hi = self._band(plan_t + slack)
        over = self._check_over(delivered_ml, dose, plan_t, band=band_hi)
        if over is not None:
            out.append(over)
        if measured_ml is not None:
            extra = self.tolerances.sensor_abs_ml
            m_over = self._check_over(measured_ml, measured_ml * self.concentration, plan_t,
                                      what="measured", extra=extra, band=band_hi)
            if m_over is not None and (over is None or over.kind is not m_over.kind):
                out.append(m_over)
        if moving:
            r = self._check_rate("pump rate", status.rate_ml_h, plan_t)
            if r is not None:
                out.append(r)
            if self.expect.rate_ml_h is not None and not self._close(status.rate_ml_h,
                                                                     self.expect.rate_ml_h):
                out.append(Breach(BreachKind.READBACK_MISMATCH,
                                  f"pump runs at {status.rate_ml_h} mL/h, controller set "
                                  f"{self.expect.rate_ml_h} mL/h", status.rate_ml_h,
                                  self.expect.rate_ml_h))
            if status.direction is Direction.WITHDRAW or status.state is PumpState.WITHDRAWING:
                out.append(Breach(BreachKind.UNEXPECTED_STATE, "pump is withdrawing", "withdrawing",
                                  "infusing"))
            if not self.expect.moving:
                out.append(Breach(BreachKind.UNEXPECTED_STATE,
                                  f"pump is {status.state.value} but should not be moving",
                                  status.state.value, "stopped"))
        if self._last_delivered is not None and \
                delivered_ml < self._last_delivered - self.quantum(self._last_delivered):
            out.append(Breach(BreachKind.READBACK_MISMATCH,
                              f"infused counter went back from {self._last_delivered:.4g} mL to "
                              f"{delivered_ml:.4g} mL", delivered_ml, self._last_delivered))
        self._last_delivered = delivered_ml if self._last_delivered is None else \
            max(self._last_delivered, delivered_ml)
        # The pump's own stop should act at the total. Half a display step of margin: a
        # counter shown rounded to 4 digits can read the total a moment before it is there.
        half_q = self._cap_quantum / 2
        if moving and (delivered_ml >= self.cap_ml + half_q
                       or dose >= self.cap_dose_mg + half_q * self.concentration):
            out.append(Breach(BreachKind.TOTAL_REACHED,
                              f"planned total {self.cap_ml:.4g} mL / {self.cap_dose_mg:.4g} mg "
                              "reached, pump still running", delivered_ml, self.cap_ml,
                              fault=False))
        if self.expect.moving and not moving and not out and not self.is_complete(delivered_ml):
            out.append(Breach(BreachKind.UNEXPECTED_STATE,
                              f"pump {status.state.value} before the planned total "
                              f"({delivered_ml:.4g} of {self.cap_ml:.4g} mL)",
                              status.state.value, "infusing"))
        band_lo = self._band(plan_t - slack) if self.expect.started else None
        under = self._check_under(delivered_ml, plan_t, now, band=band_lo)
        if under is not None:
            out.append(under)
        if measured_ml is not None:
            m_under = self._check_under(measured_ml, plan_t, now, what="measured",
                                        extra=self.tolerances.sensor_abs_ml, band=band_lo)
            if m_under is not None and under is None:
                out.append(m_under)
            if self.expect.started and status.alarm is None:
                # Faults late in a run hide inside the plan bands; the sensor parting from
                # the counter does not (pumpctl/sensor_divergence.py).
                div = self._divergence.check(now, delivered_ml, measured_ml, status.rate_ml_h)
                kind = BreachKind.UNDER_INFUSION if div and div.short else BreachKind.OVER_INFUSION
                if div is not None and all(b.kind is not kind for b in out):
                    out.append(Breach(kind, div.message(), div.arrived_ml, div.limit_ml))
        out.sort(key=_severity)
        return out

    # -- internals ---------------------------------------------------------------------

    def _close(self, a: float, b: float) -> bool:
        scale = max(abs(a), abs(b))
        return abs(a - b) <= max(self.tolerances.readback_rel * scale, 1e-9)

    def _check_rate(self, what: str, rate: float, plan_t: float) -> Breach | None:
        if not math.isfinite(rate) or rate < 0:
            return Breach(BreachKind.COMMAND_REFUSED, f"{what} {rate} mL/h is not a rate", rate)
        hard = self.program.limits.max_rate_ml_h
        if rate > hard * (1.0 + self.tolerances.readback_rel):
            return Breach(BreachKind.RATE_EXCEEDED,
                          f"{what} {rate:.4g} mL/h above the pump limit {hard:.4g} mL/h",
                          rate, hard)
        allowed = self.allowed_rate_ml_h(plan_t)
        if rate > allowed:
            return Breach(BreachKind.RATE_EXCEEDED,
                          f"{what} {rate:.4g} mL/h above the planned {allowed:.4g} mL/h "
                          f"(incl. {self.tolerances.rate_rel:.0%}) at t={plan_t:.1f} s",
                          rate, round(allowed, 6))
        return None

    def _check_vtbi(self, vtbi: float, delivered_ml: float) -> Breach | None:
        remaining = max(0.0, self.cap_ml - delivered_ml)
        if not math.isfinite(vtbi) or vtbi <= 0:
            return Breach(BreachKind.VOLUME_LIMIT,
                          f"volume to dispense {vtbi} mL would disable the pump's own stop",
                          vtbi, remaining)
        limit = remaining + self.quantum(remaining)
        if vtbi > limit:
            return Breach(BreachKind.VOLUME_LIMIT,
                          f"volume to dispense {vtbi:.4g} mL above the remaining plan "
                          f"{remaining:.4g} mL",
                          vtbi, round(remaining, 6))
        return None

    def _band(self, t: float) -> tuple[float, float]:
        """Planned-so-far volume at plan time `t` and the tolerance around it."""
        planned = self.plan.volume_at(t)
        return planned, self.volume_tolerance(planned)

    def _check_over(self, delivered: float, dose: float, plan_t: float, *,
                    what: str = "delivered", extra: float = 0.0,
                    band: tuple[float, float] | None = None) -> Breach | None:
        """`band`: `_band(plan_t + timing slack)` if the caller has it already."""
        q = self._cap_quantum + extra
        if delivered > self.cap_ml + q:
            return Breach(BreachKind.OVER_INFUSION,
                          f"{what} {delivered:.4g} mL above the planned total "
                          f"{self.cap_ml:.4g} mL", delivered, self.cap_ml)
        if dose > self.cap_dose_mg + q * self.concentration:
            return Breach(BreachKind.DOSE_EXCEEDED,
                          f"{what} dose {dose:.4g} mg above the planned "
                          f"{self.cap_dose_mg:.4g} mg", dose, self.cap_dose_mg)
        planned, tolerance = band or self._band(plan_t + self.tolerances.timing_slack_s)
        limit = planned + tolerance + extra
        if delivered > limit:
            return Breach(BreachKind.OVER_INFUSION,
                          f"{what} {delivered:.4g} mL above planned-so-far {planned:.4g} mL "
                          f"+ tolerance at t={plan_t:.1f} s", delivered, round(limit, 6))
        return None

    def _check_under(self, delivered: float, plan_t: float, now: float, *,
                     what: str = "delivered", extra: float = 0.0,
                     band: tuple[float, float] | None = None) -> Breach | None:
        """`band`: `_band(plan_t - timing slack)` if the caller has it already."""
        if not self.expect.started:
            return None
        planned, tolerance = band or self._band(plan_t - self.tolerances.timing_slack_s)
        limit = planned - tolerance - extra
        if delivered >= limit:
            self._under_since.pop(what, None)
            return None
        since = self._under_since.setdefault(what, now)
        lasted = now - since
        if lasted >= self.tolerances.under_window_s:
            return Breach(BreachKind.UNDER_INFUSION,
                          f"{what} {delivered:.4g} mL below planned-so-far {planned:.4g} mL "
                          f"- tolerance for {lasted:.0f} s (occlusion or stuck motor?)",
                          delivered, round(limit, 6))
        return None


_ORDER = [BreachKind.OVER_INFUSION, BreachKind.DOSE_EXCEEDED, BreachKind.RATE_EXCEEDED,
          BreachKind.PUMP_ALARM, BreachKind.UNEXPECTED_STATE, BreachKind.READBACK_MISMATCH,
          BreachKind.UNDER_INFUSION, BreachKind.VOLUME_LIMIT, BreachKind.COMMAND_REFUSED,
          BreachKind.NO_STATUS, BreachKind.PUMP_ERROR, BreachKind.SENSOR_ERROR,
          BreachKind.CONTROLLER_ERROR,
          BreachKind.TOTAL_REACHED]


def _severity(b: Breach) -> int:
    return _ORDER.index(b.kind)


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)

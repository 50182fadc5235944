"""The safety monitor: an independent re-check of every command and every status sample.

The monitor never trusts the compiled `segments`. It re-derives what the pump *should* have
delivered by any moment from the plan's `steps` (each step is a constant rate: its volume over
its duration) and caps everything at the program's hard `limits`. The controller asks it
before sending each command and hands it each status sample; whatever it returns as a
`Breach` makes the controller stop the pump and journal an alarm.

What the pump can do is read from the capabilities its driver declares, never assumed: the
resolution of its counters (the tolerance of every volume comparison), whether it has a
volume-to-dispense (without one the monitor does not ask for it before `run`), a watchdog
(arming one it lacks is refused) and pause.

The tolerances and windows, and why they have the values they do, are in docs/safety.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pumpctl.breach import Breach, BreachKind, most_serious_first
from pumpctl.drivers.base import (
    Direction,
    PumpState,
    PumpStatus,
    RunOutline,
)
from pumpctl.planned_delivery import PlannedDelivery, SafetyConfigError
from pumpctl.safety_limits import RunLimits
from pumpctl.sensor_divergence import SensorDivergence
from pumpctl.tolerances import PumpClass, SafetyTolerances

# The vocabulary lives beside the monitor; importing it from here keeps working.
__all__ = ["Breach", "BreachKind", "PlannedDelivery", "PumpClass", "RunLimits",
           "SafetyConfigError", "SafetyMonitor", "SafetyTolerances"]


@dataclass
class _Expectation:
    """What the monitor believes the pump was told to do, from the commands it has approved."""

    rate_ml_h: float | None = None
    vtbi_ml: float | None = None
    moving: bool = False
    started: bool = False


@dataclass
class SafetyMonitor(RunLimits):
    """Checks commands before they are sent and status samples as they arrive, against the
    run's limits (`RunLimits`: program, tolerances, the pump's capabilities).

    Volumes handed to the monitor are *delivered since the original start of the plan*
    (for a resumed run: the reconciled volume of earlier runs plus the pump's counter).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.expect = _Expectation()
        self._under_since: dict[str, float] = {}
        self._last_valid_at: float | None = None
        self._last_delivered: float | None = None
        tol = self.tolerances
        self._divergence = SensorDivergence(window_s=tol.sensor_window_s,
                                            abs_ml=tol.sensor_abs_ml, rel=tol.volume_rel,
                                            lag_s=tol.sensor_lag_s)

    # -- commands ----------------------------------------------------------------------

    def check_command(self, op: str, value: object, *, plan_t: float,
                      delivered_ml: float) -> Breach | None:
        """Approve (None) or refuse an outgoing command before it is sent."""
        if op in ("stop", "status", "identify", "acknowledge_alarm"):
            return None
        if op == "set_rate":
            return self._check_rate("commanded rate", _as_float(value), plan_t)
        if op == "set_volume_limit":
            if self.caps.volume_cap is None:
                return Breach(BreachKind.COMMAND_REFUSED, "this pump has no volume to dispense")
            return self._check_vtbi(_as_float(value), delivered_ml)
        if op == "prepare":
            return self._check_outline(value)
        if op == "set_watchdog":
            return self._check_watchdog(value)
        if op == "pause":
            if not self.caps.pause:
                return Breach(BreachKind.COMMAND_REFUSED, "this pump cannot pause")
            return None
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
            if self.caps.volume_cap is not None and (self.expect.vtbi_ml is None
                                                     or self.expect.vtbi_ml <= 0):
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
            self.pump_stops_at(delivered_ml + read)
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

    def _check_outline(self, outline: object) -> Breach | None:
        """The rates a run will set: each within the pump limit, all writable on this pump."""
        if not isinstance(outline, RunOutline):
            return Breach(BreachKind.COMMAND_REFUSED, f"prepare needs a run outline, got "
                          f"{type(outline).__name__}")
        hard = self.program.limits.max_rate_ml_h * (1.0 + self.tolerances.readback_rel)
        for rate in outline.rates_ml_h:
            if not math.isfinite(rate) or not 0 < rate <= hard:
                return Breach(BreachKind.RATE_EXCEEDED, f"program rate {rate:g} mL/h outside "
                              f"0-{self.program.limits.max_rate_ml_h:g} mL/h", rate,
                              self.program.limits.max_rate_ml_h)
        problem = self.caps.rates.problem(outline.rates_ml_h)
        if problem is not None:
            return Breach(BreachKind.COMMAND_REFUSED, problem)
        return None

    def _check_watchdog(self, value: object) -> Breach | None:
        """Disarming is always allowed; arming needs a watchdog, within its range."""
        seconds = _as_float(value)
        if seconds == 0:
            return None
        watchdog = self.caps.watchdog
        if watchdog is None:
            return Breach(BreachKind.COMMAND_REFUSED,
                          f"watchdog {value} s asked, but this pump has no watchdog of its own",
                          seconds, None)
        if not (seconds.is_integer() and watchdog.min_s <= seconds <= watchdog.max_s):
            return Breach(BreachKind.COMMAND_REFUSED, f"watchdog {value} s outside the pump's "
                          f"{watchdog.min_s}-{watchdog.max_s} s", seconds, watchdog.max_s)
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
        alarm = _pump_alarm(status)
        if alarm is not None:
            out.append(alarm)
        dose = delivered_ml * self.concentration
        self._check_ahead(out, delivered_ml, dose, plan_t, measured_ml)
        if moving:
            self._check_motion(out, status, plan_t)
        went_back = self._check_counter(delivered_ml)
        if went_back is not None:
            out.append(went_back)
        if moving:
            total = self._check_total(delivered_ml, dose)
            if total is not None:
                out.append(total)
        if self.expect.moving and not moving and not out and not self.is_complete(delivered_ml):
            out.append(Breach(BreachKind.UNEXPECTED_STATE,
                              f"pump {status.state.value} before the planned total "
                              f"({delivered_ml:.4g} of {self.cap_ml:.4g} mL)",
                              status.state.value, "infusing"))
        self._check_behind(out, delivered_ml, plan_t, now, measured_ml)
        if measured_ml is not None:
            self._check_divergence(out, status, delivered_ml, now, measured_ml)
        most_serious_first(out)
        return out

    # -- the parts of a sample check ----------------------------------------------------

    def _check_ahead(self, out: list[Breach], delivered_ml: float, dose: float, plan_t: float,
                     measured_ml: float | None) -> None:
        """Over-infusion or over-dose, by the counter and by the sensor, against the plan
        so far (timing slack ahead) and the planned totals."""
        # The counter and the sensor are held to the same planned-so-far figures.
        band_hi = self._band(plan_t + self.tolerances.timing_slack_s)
        over = self._check_over(delivered_ml, dose, plan_t, band=band_hi)
        if over is not None:
            out.append(over)
        if measured_ml is not None:
            extra = self.tolerances.sensor_abs_ml
            m_over = self._check_over(measured_ml, measured_ml * self.concentration, plan_t,
                                      what="measured", extra=extra, band=band_hi)
            if m_over is not None and (over is None or over.kind is not m_over.kind):
                out.append(m_over)

    def _check_motion(self, out: list[Breach], status: PumpStatus, plan_t: float) -> None:
        """A moving pump: its rate against the plan and what was set, its direction, and
        whether it should be moving at all."""
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

    def _check_counter(self, delivered_ml: float) -> Breach | None:
        """A counter that went back (power reset, cleared behind our back); remembers the
        highest reading."""
        last = self._last_delivered
        breach = None
        if last is not None and delivered_ml < last - self.quantum(last):
            breach = Breach(BreachKind.READBACK_MISMATCH,
                            f"infused counter went back from {last:.4g} mL to "
                            f"{delivered_ml:.4g} mL", delivered_ml, last)
        self._last_delivered = delivered_ml if last is None else max(last, delivered_ml)
        return breach

    def _check_total(self, delivered_ml: float, dose: float) -> Breach | None:
        """A pump still running at the planned total (not a fault: the plan is done)."""
        # The pump's own stop should act at the total. Half a display step of margin: a
        # counter shown rounded to its resolution can read the total a moment before it is.
        half_q = self._cap_quantum / 2
        if (delivered_ml >= self.cap_ml + half_q
                or dose >= self.cap_dose_mg + half_q * self.concentration):
            return Breach(BreachKind.TOTAL_REACHED,
                          f"planned total {self.cap_ml:.4g} mL / {self.cap_dose_mg:.4g} mg "
                          "reached, pump still running", delivered_ml, self.cap_ml,
                          fault=False)
        return None

    def _check_behind(self, out: list[Breach], delivered_ml: float, plan_t: float, now: float,
                      measured_ml: float | None) -> None:
        """Under-infusion that has lasted the under window, by the counter and the sensor."""
        slack = self.tolerances.timing_slack_s
        band_lo = self._band(plan_t - slack) if self.expect.started else None
        under = self._check_under(delivered_ml, plan_t, now, band=band_lo)
        if under is not None:
            out.append(under)
        if measured_ml is not None:
            m_under = self._check_under(measured_ml, plan_t, now, what="measured",
                                        extra=self.tolerances.sensor_abs_ml, band=band_lo)
            if m_under is not None and under is None:
                out.append(m_under)

    def _check_divergence(self, out: list[Breach], status: PumpStatus, delivered_ml: float,
                          now: float, measured_ml: float) -> None:
        """The sensor parting from the counter. Faults late in a run hide inside the plan
        bands; this does not (pumpctl/sensor_divergence.py)."""
        if not self.expect.started or status.alarm is not None:
            return
        div = self._divergence.check(now, delivered_ml, measured_ml, status.rate_ml_h)
        if div is None:
            return
        kind = BreachKind.UNDER_INFUSION if div.short else BreachKind.OVER_INFUSION
        if all(b.kind is not kind for b in out):
            out.append(Breach(kind, div.message(), div.arrived_ml, div.limit_ml))

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


def _pump_alarm(status: PumpStatus) -> Breach | None:
    """The alarm the pump itself reports, if any."""
    if status.alarm is None and status.state is not PumpState.ALARM:
        return None
    kind = status.alarm.kind.value if status.alarm else "unknown"
    code = status.alarm.code if status.alarm else "?"
    return Breach(BreachKind.PUMP_ALARM, f"pump alarm {kind} ({code})", kind, None,
                  source="pump")


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)

"""The delivered-volume sensor held against the pump's own counter, over a short window.

The safety monitor's volume bands compare both the counter and the sensor with the plan, with
a tolerance of 2 % of the planned volume (the pump's accuracy class). Late in a run that
tolerance is large (0.7 mL at the end of a 35 mL plan), so a motor that stops moving the
plunger, a blocked line or a syringe that free-flows in the last minute stays inside the band
until the plan is over. What gives such a fault away at once is the sensor parting from the
counter: both are zeroed together, and whatever the pump counts should arrive at the sensor
after the line's compliance lag. This check compares how much each moved over the last
`window_s` seconds:

    |Δmeasured − Δcounter| > abs_ml + rel × Δcounter + (highest rate in the window) × lag_s

`abs_ml` is the sensor's own allowance (resolution, noise, lead-screw ripple), `rel` the
pump's accuracy class (a pump that is 2 % off keeps the two parting at 2 %, which is allowed),
and the lag term the volume the line's compliance holds back at the rate (it changes when the
rate does; the highest rate counts from the poll interval before the window's start, whose
rate filled the line that the window sees drain). At 52.5 mL/h a stuck motor or an occlusion
is seen about 5 s after it happens and a 1.5x free flow about 11 s after (docs/safety.md).
Below the rate at which a fault can exceed the allowance within the window, the plan bands and
the end-of-run check remain.

One sample per status poll; cost O(1) amortised (a monotonic queue keeps the window's
highest rate).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Divergence:
    """The sensor and the counter parted: `arrived` mL measured while `counted` mL were
    counted over `span_s`, beyond `allowance_ml`."""

    arrived_ml: float
    counted_ml: float
    allowance_ml: float
    span_s: float

    @property
    def short(self) -> bool:
        """Less arrived than was counted (stuck motor, occlusion, leak); else more (free flow)."""
        return self.arrived_ml < self.counted_ml

    @property
    def limit_ml(self) -> float:
        """The bound `arrived_ml` crossed."""
        sign = -1.0 if self.short else 1.0
        return round(self.counted_ml + sign * self.allowance_ml, 6)

    def message(self) -> str:
        gap = abs(self.counted_ml - self.arrived_ml)
        what = (f"{gap:.3f} mL did not arrive (stuck motor, occlusion or leak?)" if self.short
                else f"{gap:.3f} mL more than the pump pushed (free flow?)")
        return (f"sensor measured {self.arrived_ml:.3f} mL while the pump counted "
                f"{self.counted_ml:.3f} mL in the last {self.span_s:.0f} s: {what}")


@dataclass
class SensorDivergence:
    window_s: float = 30.0
    abs_ml: float = 0.05
    rel: float = 0.02
    lag_s: float = 2.0
    _samples: deque[tuple[float, float, float]] = field(default_factory=deque)
    _rates: deque[tuple[float, float]] = field(default_factory=deque)  # decreasing rates
    _filled_from: float = float("-inf")  # the sample before the reference: see `check`

    def reset(self) -> None:
        """Start over (the counter was reset or the run was resumed on a new baseline)."""
        self._samples.clear()
        self._rates.clear()
        self._filled_from = float("-inf")

    def check(self, now: float, counter_ml: float, measured_ml: float,
              rate_ml_h: float) -> Divergence | None:
        """Add one sample; a `Divergence` if the sensor and the counter have parted."""
        samples, rates = self._samples, self._rates
        samples.append((now, counter_ml, measured_ml))
        while rates and rates[-1][1] <= rate_ml_h:
            rates.pop()
        rates.append((now, rate_ml_h))
        horizon = now - self.window_s
        # Keep as the reference the newest sample that is at least `window_s` old, and the
        # time of the one before it: the rate of that interval filled the line's compliance
        # that it still gives back after the reference (a step from 1000 down to 1 mL/h just
        # before the reference sample releases ~0.15 mL over the next minute).
        while len(samples) > 1 and samples[1][0] <= horizon:
            self._filled_from = samples.popleft()[0]
        t0, c0, m0 = samples[0]
        while len(rates) > 1 and rates[0][0] < self._filled_from:
            rates.popleft()
        counted = counter_ml - c0
        arrived = measured_ml - m0
        if counted < 0:  # the counter went back (power reset): not this check's to judge
            self.reset()
            return None
        allowance = self.abs_ml + self.rel * counted + rates[0][1] / 3600.0 * self.lag_s
        if abs(counted - arrived) > allowance:
            return Divergence(round(arrived, 6), round(counted, 6), allowance, now - t0)
        return None

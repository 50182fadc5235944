"""Plan time: the clock a run's schedule is written in.

Plan time runs only while the pump is meant to infuse: it starts when `run` is sent and is
frozen while paused, so a pause shifts the rest of the schedule instead of skipping it. A
resumed run starts at the plan time the earlier run had reached (`offset_s`).
"""

from __future__ import annotations

from pumpctl.clock import Clock


class PlanClock:
    """Converts between the controller's clock (monotonic seconds) and plan time."""

    def __init__(self, clock: Clock, offset_s: float = 0.0) -> None:
        self.clock = clock
        self.offset_s = offset_s
        self.started_at: float | None = None  # clock time `run` was sent
        self.paused_at: float | None = None
        self.paused_total = 0.0

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def start(self, now: float) -> None:
        self.started_at = now

    def pause(self, now: float) -> None:
        self.paused_at = now

    def resume(self, now: float) -> None:
        if self.paused_at is not None:
            self.paused_total += now - self.paused_at
            self.paused_at = None

    def at(self, now: float | None = None) -> float:
        """Plan time at clock time `now` (default: now); the offset before the start."""
        if self.started_at is None:
            return self.offset_s
        now = self.clock.monotonic() if now is None else now
        paused = self.paused_total
        if self.paused_at is not None:
            paused += now - self.paused_at
        return self.offset_s + (now - self.started_at - paused)

    def clock_time_of(self, plan_t: float) -> float:
        """Clock time at which plan time `plan_t` comes, if nothing pauses before then."""
        assert self.started_at is not None
        return self.started_at + self.paused_total + (plan_t - self.offset_s)

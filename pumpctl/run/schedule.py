"""A program's timeline in plan time: which segment (rate) is due, which monitoring events.

The controller asks, at each step, what has become due since the last one; this module only
keeps the places in the two sorted lists. A resumed run starts at its offset: the segment
running then, and no monitoring event the earlier run has already announced.
"""

from __future__ import annotations

from collections.abc import Iterator

from pumpctl.plan.program import MonitoringEvent, RateProgram, Segment


class Schedule:
    """Where a run is in its program's segments and monitoring events."""

    def __init__(self, program: RateProgram, offset_s: float = 0.0) -> None:
        self.segments = program.segments
        self.offset_s = offset_s
        self.index = 0  # the segment running now
        self._monitoring = sorted(program.monitoring, key=lambda m: m.at_s)
        self._monitoring_i = 0

    def start(self) -> Segment:
        """The segment running at the offset (the first one when not resuming)."""
        index = 0
        for i, s in enumerate(self.segments):
            if s.start_s <= self.offset_s + 1e-9:
                index = i
        self.index = index
        return self.segments[index]

    @property
    def end_s(self) -> float:
        """Plan time the last segment ends: the program's total is in by then."""
        last = self.segments[-1]
        return last.start_s + last.duration_s

    def next_start(self) -> float | None:
        """Plan time of the next rate change, or None after the last segment began."""
        i = self.index + 1
        return self.segments[i].start_s if i < len(self.segments) else None

    def due_segments(self, plan_t: float, *, early_s: float) -> Iterator[Segment]:
        """Each segment that has begun by `plan_t` (or begins within `early_s`), in order;
        `index` moves on as each is taken."""
        segs = self.segments
        while self.index + 1 < len(segs) and plan_t >= segs[self.index + 1].start_s - early_s:
            self.index += 1
            yield segs[self.index]

    def due_monitoring(self, plan_t: float) -> Iterator[MonitoringEvent]:
        """Monitoring events due by `plan_t` not yet announced (those before a resumed run's
        offset were announced by the run it resumes)."""
        events = self._monitoring
        while self._monitoring_i < len(events) and events[self._monitoring_i].at_s <= plan_t:
            m = events[self._monitoring_i]
            self._monitoring_i += 1
            if m.at_s >= self.offset_s:
                yield m

"""Journal row: the cost of one status sample record, old path vs fast path, side by side.

The old path is what every poll did before: build the sample's fields as a dict (13 `round`
calls, 17 keys; a copy of that code is below as the reference) and `Journal.write_fields`
(a second dict with the common fields, `json` encoding). The new path is
`SampleFields.values` (a tuple) and `Journal.write_values` (a precompiled line template).
Both write real files with one `os.write` per record and the same fsync rule, and the bench
checks the two files are the same bytes (but for the `t` stamps, which come from the clock).
Figures are microseconds per sample, median of the runs taken in alternation.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.table import STANDARD_PLAN as STANDARD
from bench.table import Bench, Figure, at_most, row
from pumpctl.clock import ManualClock
from pumpctl.drivers.base import Alarm, AlarmKind, PumpState, PumpStatus
from pumpctl.journal import Journal
from pumpctl.plan.compile import compile_plan_file
from pumpctl.plan.program import RateProgram
from pumpctl.run.records import SAMPLE_KEYS, SampleFields
from pumpctl.safety import SafetyMonitor

# The oracle of the sample test: the fields as the controller built them before the fast path.
from tests.controller.test_journal_fast import reference


class NullSink:
    def __init__(self) -> None:
        self.n = 0

    def emit(self, record: dict[str, Any]) -> None:
        self.n += 1

    async def aclose(self) -> None: ...


def statuses(n: int) -> list[tuple[PumpStatus, float, float]]:
    """A run's worth of (status, plan time, measured volume), varied like a real one."""
    out = []
    for i in range(n):
        plan_t = 0.999 + i * 1.0003
        counter = round(plan_t * 52.5 / 3600.0, 3)
        alarm = Alarm(AlarmKind.STALL, "S") if i % 997 == 0 else None
        state = PumpState.ALARM if alarm else PumpState.INFUSING
        out.append((PumpStatus(state, 52.5, counter, 0.0, alarm), plan_t, counter * 1.0007))
    return out


Writer = Callable[[Journal, ManualClock, list[tuple[PumpStatus, float, float]]], None]


def old_path(program: RateProgram, monitor: SafetyMonitor) -> Writer:
    def write(j: Journal, clock: ManualClock, polls: list[tuple[PumpStatus, float, float]]) -> None:
        for st, plan_t, measured in polls:
            clock.now += 1.0
            j.write_fields("sample", reference(program, monitor, st, st.infused_ml,
                                                      plan_t, measured, 35.0, 0, False, []))
    return write


def new_path(program: RateProgram, monitor: SafetyMonitor) -> Writer:
    fields = SampleFields(program, monitor)

    def write(j: Journal, clock: ManualClock, polls: list[tuple[PumpStatus, float, float]]) -> None:
        layout = j.layout("sample", SAMPLE_KEYS)
        for st, plan_t, measured in polls:
            clock.now += 1.0
            j.write_values(layout, fields.values(st, st.infused_ml, plan_t, measured, 35.0, 0,
                                                 False, []))
    return write


def timed(writer: Writer, tmp: Path, name: str, polls: list[tuple[PumpStatus, float, float]],
          sinks: bool) -> tuple[float, Path]:
    clock = ManualClock(1000.0)
    j = Journal(tmp / f"{name}.jsonl", run_id="bench", channel="pump0", clock=clock,
                sinks=[NullSink()] if sinks else [])
    t0 = time.perf_counter()
    writer(j, clock, polls)
    wall = time.perf_counter() - t0
    j.close()
    return wall / len(polls) * 1e6, j.path


def strip_t(path: Path) -> list[bytes]:
    return [re.sub(rb'"t":[^,]*,', b"", line) for line in path.read_bytes().splitlines()]


@row("journal", about="one status sample record (fields, journal line, os.write)")
def journal(bench: Bench) -> list[Figure]:
    samples, repeat = (5_000, 3) if bench.quick else (20_000, 9)
    program = compile_plan_file(STANDARD, weight_kg=70)
    monitor = SafetyMonitor(program)
    polls = statuses(samples)
    writers = {"old": old_path(program, monitor), "new": new_path(program, monitor)}
    tmp = bench.scratch("journal")
    figures = []
    for sinks in (False, True):
        times: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(repeat):
            for name, writer in writers.items():  # alternate, so noise hits both alike
                us, _ = timed(writer, tmp, f"{name}-{sinks}-{i}", polls, sinks)
                times[name].append(us)
        same = strip_t(tmp / f"old-{sinks}-0.jsonl") == strip_t(tmp / f"new-{sinks}-0.jsonl")
        assert same, "the fast path wrote other bytes than the reference"
        old, new = statistics.median(times["old"]), statistics.median(times["new"])
        figures.append(Figure(f"journal sample record, {'one sink' if sinks else 'no sinks'}",
                              new, "us", at_most(7.0),
                              note=f"{old / new:.2f}x faster than the dict path ({old:.2f} us);"
                                   " same bytes"))
    return figures

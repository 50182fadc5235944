"""A whole induction course on the rig (issue 12): six sessions three a week, then weekly
maintenance (configs/courses/ketamine-induction-maintenance.yaml), each session a full run of
the standard plan in virtual time, with the course limits enforced between sessions.

The calendar was checked when the course was planned (`load_course`); here the ledger of the
sessions actually given decides whether the next one may start (pumpctl/plan/course_ledger.py).
Between sessions the scenario also tries what a busy ward might: a session the next day, a
fourth in one week, a seventh induction. Each is refused before anything reaches the pump:
no journal, the pump still. The time between sessions is skipped rather than waited for
(course time = the course's start + the rig clock + the gaps skipped), so the same scenario
would run on a bench in real time; it needs a fresh syringe for each session, which only a
simulator can give itself, hence `sim` (and `sim_only`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pumpctl.clock import Clock
from pumpctl.journal import read_records
from pumpctl.plan.course import load_course
from pumpctl.plan.course_ledger import CourseLedger, CourseRefused, Phase
from pumpctl.rig import Rig

from .conftest import REPO
from .plugin import ControllerFactory, Measure
from .rig_parts import RigParts, SimHandle
from .test_rig_protocols import compile_for_rig, volume_resolution

COURSE = REPO / "configs" / "courses" / "ketamine-induction-maintenance.yaml"
HOUR = dt.timedelta(hours=1)
# After session N: (how long after its start, phase, what the refusal must say).
ATTEMPTS: dict[int, tuple[dt.timedelta, Phase, str]] = {
    1: (24 * HOUR, "induction", "less than the minimum interval 48 h"),
    3: (48 * HOUR, "induction", "4 infusions in the 7 days"),  # Mon, Wed, Fri and Sun
    6: (48 * HOUR, "induction", "induction infusion 7, more than the library's maximum 6"),
    7: (24 * HOUR, "maintenance", "less than the minimum interval 48 h"),
}


class CourseCalendar:
    """Course time on the rig's clock; the weeks between sessions are skipped, not waited."""

    def __init__(self, start: dt.datetime, clock: Clock) -> None:
        self.start = start
        self.clock = clock
        self.t0 = clock.monotonic()
        self.skipped_s = 0.0

    def now(self) -> dt.datetime:
        elapsed = self.clock.monotonic() - self.t0 + self.skipped_s
        return self.start + dt.timedelta(seconds=elapsed)

    def advance_to(self, at: dt.datetime) -> None:
        gap = (at - self.now()).total_seconds()
        assert gap >= 0, f"course time cannot go back to {at}"
        self.skipped_s += gap


@pytest.mark.slow
async def test_induction_course_keeps_its_limits_between_sessions(
        rig: Rig, sim: SimHandle, rig_parts: RigParts, controller_factory: ControllerFactory,
        journal_dir: Path, measure: Measure) -> None:
    course = load_course(COURSE)
    program = compile_for_rig(course.plan_path, rig)
    ledger = CourseLedger(course.limits, course.plan.drug, course.name)
    calendar = CourseCalendar(course.sessions[0].at, rig_parts.clock)
    refused = 0
    for session in course.sessions:
        calendar.advance_to(session.at)
        at = calendar.now()
        ledger.admit(at, session.phase)  # the planned calendar keeps the limits
        if session.number > 1:
            sim.load_syringe()  # a fresh syringe for each session
        ctl = controller_factory(program, header_extra={
            "course": {"name": course.name, "session": session.number,
                       "phase": session.phase, "at": at.isoformat(timespec="minutes")}})
        result = await ctl.run()
        ledger.record(at, session.phase, result.run_id)
        assert result.outcome == "completed", (session.number, result.reason)
        q = volume_resolution(program, read_records(result.journal_path))
        total = program.total_volume_ml
        measure(f"session {session.number} delivered volume", result.delivered_volume_ml,
                "mL", low=total - q, high=total + q)

        attempt = ATTEMPTS.get(session.number)
        if attempt is not None:
            after, phase, says = attempt
            journals = sorted(journal_dir.glob("*.jsonl"))
            calendar.advance_to(session.at + after)
            with pytest.raises(CourseRefused, match=says):
                ledger.admit(calendar.now(), phase)
            refused += 1
            assert sorted(journal_dir.glob("*.jsonl")) == journals  # nothing was started
            assert not sim.pump().moving

    sessions = len(course.sessions)
    measure("sessions given", len(ledger.given), "", low=sessions, high=sessions)
    measure("sessions refused", refused, "", low=len(ATTEMPTS), high=len(ATTEMPTS))
    # Each session's journal is kept, and says which session of which course it was.
    headers = [read_records(p)[0] for p in sorted(journal_dir.glob("*.jsonl"))]
    numbers = sorted(h["course"]["session"] for h in headers)
    assert numbers == list(range(1, sessions + 1))
    assert {h["course"]["name"] for h in headers} == {course.name}
    assert [g.phase for g in ledger.given].count("induction") == course.limits.max_induction

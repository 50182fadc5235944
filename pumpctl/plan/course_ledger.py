"""The course limits enforced between sessions: what was actually given decides the next one.

`load_course` checks a course's calendar when it is planned. A calendar is an intention: a
session moved, an extra one squeezed in, a maintenance session brought forward are not in it.
So before each session starts, the ledger of the sessions actually given so far is checked
against the drug's course limits (minimum interval between two starts, most infusions in any
7 days, most induction infusions), and a session that would break one is refused before any
pump is touched, with one line per broken limit naming the value and the limit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pumpctl.plan.errors import PlanError, Problem
from pumpctl.plan.library import CourseLimits
from pumpctl.units import Kind, describe

WEEK = dt.timedelta(days=7)
Phase = str  # "induction" | "maintenance", as `Session.phase`


class CourseRefused(PlanError):
    """A session that would break the course limits: nothing was started."""


@dataclass(frozen=True)
class Given:
    at: dt.datetime
    phase: Phase
    run_id: str


@dataclass
class CourseLedger:
    """The sessions of one course given so far, and the limits the next one must keep."""

    limits: CourseLimits
    drug: str
    course: str = ""
    given: list[Given] = field(default_factory=list)

    def problems(self, at: dt.datetime, phase: Phase) -> list[Problem]:
        """What a session starting at `at` would break (empty: it may start)."""
        out: list[Problem] = []
        lim = self.limits
        if self.given:
            last = self.given[-1].at
            gap = at - last
            minimum = dt.timedelta(seconds=float(lim.min_interval.value))
            if gap <= dt.timedelta(0):
                out.append(Problem("at", f"{at:%a %Y-%m-%d %H:%M} is not after the last "
                                   f"session ({last:%a %Y-%m-%d %H:%M})"))
            elif gap < minimum:
                out.append(Problem("at", f"{at:%a %Y-%m-%d %H:%M} is {_span(gap)} after the "
                                   f"last session, less than the minimum interval "
                                   f"{lim.min_interval} for {self.drug}",
                                   _span(gap), str(lim.min_interval)))
        # Any 7 days holding this session hold it and those given less than 7 days before.
        in_week = 1 + sum(1 for g in self.given if dt.timedelta(0) <= at - g.at < WEEK)
        if in_week > lim.max_per_week:
            out.append(Problem("at", f"{in_week} infusions in the 7 days up to "
                               f"{at:%a %Y-%m-%d}, more than the maximum {lim.max_per_week} "
                               f"per week for {self.drug}", str(in_week), str(lim.max_per_week)))
        if phase == "induction":
            induction = 1 + sum(1 for g in self.given if g.phase == "induction")
            if induction > lim.max_induction:
                out.append(Problem("phase", f"induction infusion {induction}, more than the "
                                   f"library's maximum {lim.max_induction} for {self.drug}",
                                   str(induction), str(lim.max_induction)))
        return out

    def admit(self, at: dt.datetime, phase: Phase) -> None:
        """Raise CourseRefused (one line per broken limit) unless the session may start."""
        problems = self.problems(at, phase)
        if problems:
            raise CourseRefused(problems, f"course {self.course}" if self.course else "")

    def record(self, at: dt.datetime, phase: Phase, run_id: str) -> None:
        """A session that was given (whatever its outcome: the drug may have flowed)."""
        self.given.append(Given(at, phase, run_id))


def _span(delta: dt.timedelta) -> str:
    return describe(round(delta.total_seconds()), Kind.DURATION)

"""Courses: a series of infusions of one plan (an induction phase, then maintenance).

A course file names the plan, the first infusion's date and time, and how the rest follow:
induction either on fixed weekdays (`weekdays: [mon, wed, fri]`, `sessions: 6`) or on
explicit `dates`, then optionally maintenance `every: 7 d` for `sessions: n`. The calendar is
checked against the drug's course limits in the library: the minimum interval between two
infusion starts, the most infusions in any 7 days, the most induction infusions.

Times are local wall-clock times without a time zone; intervals are computed on them (a
daylight-saving change shifts a real interval by an hour, which the 48 h style limits here
tolerate; keep that in mind for limits near a whole number of days).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from pumpctl import files
from pumpctl.plan.errors import PlanError, Problem
from pumpctl.plan.fields import Duration, StrictModel, default_configs_dir, read_yaml, validate
from pumpctl.plan.library import CourseLimits, load_library
from pumpctl.plan.model import PlanFile, load_plan
from pumpctl.units import Kind, Measured, describe

WEEK = dt.timedelta(days=7)


class Weekday(StrEnum):
    mon = "mon"
    tue = "tue"
    wed = "wed"
    thu = "thu"
    fri = "fri"
    sat = "sat"
    sun = "sun"

    @property
    def number(self) -> int:
        return list(Weekday).index(self)


class Induction(StrictModel):
    weekdays: list[Weekday] | None = Field(default=None, min_length=1, max_length=7)
    sessions: int | None = Field(default=None, ge=1, le=100)
    dates: list[dt.datetime] | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_way(self) -> Induction:
        by_weekday = self.weekdays is not None or self.sessions is not None
        if by_weekday == (self.dates is not None):
            raise ValueError("give either weekdays and sessions, or dates")
        if by_weekday and (self.weekdays is None or self.sessions is None):
            raise ValueError("weekdays and sessions go together")
        return self


MAX_GAP = dt.timedelta(days=366)  # a course with a longer gap is two courses


class Maintenance(StrictModel):
    every: Duration
    sessions: int = Field(ge=1, le=200)
    # Time from the last induction infusion to the first maintenance one (default: `every`).
    first_after: Duration | None = None

    @field_validator("every", "first_after")
    @classmethod
    def _at_most_a_year(cls, value: Measured | None) -> Measured | None:
        if value is not None and not float(value.value) <= MAX_GAP.total_seconds():
            raise ValueError(f"{value} is longer than {MAX_GAP.days} days")
        return value


class CourseFile(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=80)
    title: str = Field(default="", max_length=200)
    note: str = Field(default="", max_length=2000)
    plan: str = Field(min_length=1, max_length=300)
    start: dt.datetime
    induction: Induction
    maintenance: Maintenance | None = None


@dataclass(frozen=True, slots=True)
class Session:
    number: int  # 1-based, over the whole course
    phase: str  # "induction" | "maintenance"
    at: dt.datetime
    since_previous: dt.timedelta | None
    field: str  # where in the course file this session comes from


@dataclass(frozen=True, slots=True)
class Course:
    name: str
    title: str
    plan_path: Path
    plan: PlanFile
    limits: CourseLimits
    sessions: list[Session]


def _induction_times(course: CourseFile) -> list[tuple[dt.datetime, str]]:
    ind = course.induction
    if ind.dates is not None:
        return [(d, f"induction.dates[{i}]") for i, d in enumerate(ind.dates)]
    assert ind.weekdays is not None and ind.sessions is not None
    wanted = {w.number for w in ind.weekdays}
    out: list[tuple[dt.datetime, str]] = []
    day = course.start
    if day.weekday() not in wanted:
        raise PlanError(
            [Problem("start", f"{course.start:%a %Y-%m-%d} is not one of the induction weekdays")]
        )
    while len(out) < ind.sessions:
        if day.weekday() in wanted:
            out.append((day, f"induction.weekdays (session {len(out) + 1})"))
        day += dt.timedelta(days=1)
    return out


def schedule(course: CourseFile) -> list[tuple[str, dt.datetime, str]]:
    """(phase, time, field) of every infusion, in the order the file gives them."""
    try:
        return _schedule(course)
    except OverflowError:  # a start in the year 9999: the calendar has no room for it
        raise PlanError([Problem("start", f"{course.start:%Y-%m-%d %H:%M}: the course would "
                                          "run past the end of the calendar (year 9999)")]
                        ) from None


def _schedule(course: CourseFile) -> list[tuple[str, dt.datetime, str]]:
    times = [("induction", at, field) for at, field in _induction_times(course)]
    if course.maintenance is not None and times:
        m = course.maintenance
        step = dt.timedelta(seconds=float(m.every.value))
        first = dt.timedelta(seconds=float((m.first_after or m.every).value))
        at = times[-1][1] + first
        for i in range(m.sessions):
            times.append(("maintenance", at, f"maintenance.every (session {i + 1})"))
            at += step
    return times


def check_course(course: CourseFile, limits: CourseLimits, drug: str) -> list[Problem]:
    """The calendar against the library's course limits (all hard)."""
    problems: list[Problem] = []
    times = schedule(course)
    induction = [t for t in times if t[0] == "induction"]
    if course.induction.dates is not None and induction and induction[0][1] != course.start:
        problems.append(Problem("start", "must equal the first induction date"))
    if len(induction) > limits.max_induction:
        problems.append(
            Problem("induction", f"{len(induction)} induction infusions, more than the "
                    f"library's maximum {limits.max_induction} for {drug}",
                    str(len(induction)), str(limits.max_induction))
        )
    minimum = dt.timedelta(seconds=float(limits.min_interval.value))
    for (_, before, _), (_, after, field) in itertools.pairwise(times):
        gap = after - before
        if gap <= dt.timedelta(0):
            problems.append(
                Problem(field, f"{after:%a %Y-%m-%d %H:%M} is not after the previous infusion "
                        f"({before:%a %Y-%m-%d %H:%M}); list infusions in order")
            )
        elif gap < minimum:
            problems.append(
                Problem(field, f"{after:%a %Y-%m-%d %H:%M} is {_span(gap)} after the previous "
                        f"infusion, less than the minimum interval {limits.min_interval} "
                        f"for {drug}",
                        _span(gap), str(limits.min_interval))
            )
    ordered = sorted(t[1] for t in times)
    for i, first in enumerate(ordered):
        in_week = [t for t in ordered[i:] if t - first < WEEK]
        if len(in_week) > limits.max_per_week:
            problems.append(
                Problem("course", f"{len(in_week)} infusions in the 7 days from "
                        f"{first:%a %Y-%m-%d}, more than the maximum {limits.max_per_week} "
                        f"per week for {drug}", str(len(in_week)), str(limits.max_per_week))
            )
            break
    return problems


def _span(delta: dt.timedelta) -> str:
    seconds = Fraction(round(delta.total_seconds()))
    return describe(seconds, Kind.DURATION) if seconds >= 0 else f"{seconds} s"


def _plan_path(course_file: Path, plan: str, configs_dir: Path | None) -> Path:
    """The plan file: as given, next to the course file, or in configs/plans/."""
    given = Path(plan)
    for candidate in (
        given,
        course_file.parent / given,
        (configs_dir or default_configs_dir()) / "plans" / given,
    ):
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a name too long for the filesystem, a loop of links...
            continue
    raise PlanError([Problem("plan", f"plan file {plan!r} not found")], str(course_file))


def load_course(path: str | Path, *, configs_dir: Path | None = None) -> Course:
    """Read a course, build its calendar and check it; PlanError lists every problem."""
    file = Path(path)
    data = validate(CourseFile, read_yaml(file, PlanError, files.COURSE), str(file), PlanError)
    plan_path = _plan_path(file, data.plan, configs_dir)
    plan = load_plan(plan_path)
    library = load_library(configs_dir=configs_dir)
    drug = library.drugs.get(plan.drug)
    if drug is None:
        problem = Problem("plan", f"the plan's drug {plan.drug!r} is not in the library")
        raise PlanError([problem], str(file))
    if drug.course is None:
        raise PlanError(
            [Problem("plan", f"the library has no course limits for {plan.drug}")], str(file)
        )
    try:
        problems = check_course(data, drug.course, plan.drug)
    except PlanError as exc:
        raise PlanError(exc.problems, str(file)) from None
    if problems:
        raise PlanError(problems, str(file))
    sessions = []
    previous: dt.datetime | None = None
    for number, (phase, at, field) in enumerate(schedule(data), start=1):
        sessions.append(
            Session(number, phase, at, at - previous if previous else None, field)
        )
        previous = at
    return Course(
        name=data.name or file.stem,
        title=data.title,
        plan_path=plan_path,
        plan=plan,
        limits=drug.course,
        sessions=sessions,
    )

"""`pumpctl course show COURSE`: the calendar of a course, checked against the library.

A course with two infusions closer than the drug's minimum interval, more infusions in a
week or more induction infusions than the library allows is refused (exit 2, one line per
problem) instead of printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # imported where used, so `pumpctl --help` does not load pint and rich
    from rich.console import Console

    from pumpctl.plan.course import Course

course_app = typer.Typer(help="Courses: series of infusions of one plan.", no_args_is_help=True)


def _span(seconds: float) -> str:
    from pumpctl.units import Kind, describe

    return describe(round(seconds), Kind.DURATION)


def render(course: Course, console: Console) -> None:
    from rich.table import Table

    console.print(f"course  {course.name}" + (f" - {course.title}" if course.title else ""))
    console.print(f"plan    {course.plan.name} ({course.plan_path})")
    limits = course.limits
    console.print(
        f"limits  {course.plan.drug}: at least {limits.min_interval} between infusions, "
        f"at most {limits.max_per_week} in any 7 days, at most {limits.max_induction} in induction"
    )
    table = Table(title="Calendar", title_justify="left")
    for col, justify in (("#", "right"), ("phase", "left"), ("day", "left"),
                         ("date", "left"), ("time", "left"), ("since previous", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in course.sessions:
        since = _span(s.since_previous.total_seconds()) if s.since_previous else "-"
        table.add_row(str(s.number), s.phase, f"{s.at:%a}", f"{s.at:%Y-%m-%d}",
                      f"{s.at:%H:%M}", since)
    console.print(table)
    induction = sum(1 for s in course.sessions if s.phase == "induction")
    console.print(f"{induction} induction + {len(course.sessions) - induction} maintenance "
                  f"infusions; within the library's course limits")


@course_app.command("show")
def show(
    course: Annotated[Path, typer.Argument(help="Course file (YAML), e.g. configs/courses/...")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the calendar as JSON.")] = False,
    configs: Annotated[
        Path | None, typer.Option("--configs", help="Configuration directory (default: configs/).")
    ] = None,
) -> None:
    """Print COURSE's calendar; refuse it if it breaks the library's course limits."""
    from rich.console import Console

    from pumpctl.plan.course import load_course

    loaded = load_course(course, configs_dir=configs)
    if as_json:
        out = {
            "course": loaded.name,
            "plan": loaded.plan.name,
            "drug": loaded.plan.drug,
            "sessions": [
                {"number": s.number, "phase": s.phase, "at": s.at.isoformat(),
                 "since_previous_s": s.since_previous.total_seconds() if s.since_previous else None}
                for s in loaded.sessions
            ],
        }
        typer.echo(json.dumps(out, indent=2))
        return
    render(loaded, Console(highlight=False, markup=False))


def register(app: typer.Typer) -> None:
    """Add `pumpctl course ...` to the root app."""
    app.add_typer(course_app, name="course")

"""The course limits enforced between sessions, on what was actually given."""

from __future__ import annotations

import datetime as dt

import pytest

from pumpctl.plan.course_ledger import CourseLedger, CourseRefused
from pumpctl.plan.library import load_library

MON = dt.datetime(2025, 3, 3, 9, 0)
DAY = dt.timedelta(days=1)


def ledger(*given: tuple[dt.timedelta, str]) -> CourseLedger:
    drug = load_library().drugs["ketamine"]
    assert drug.course is not None  # 48 h apart, 3 a week, 6 in induction
    book = CourseLedger(drug.course, "ketamine", "test-course")
    for i, (offset, phase) in enumerate(given):
        book.record(MON + offset, phase, f"run-{i}")
    return book


def test_the_planned_rhythm_is_admitted() -> None:
    book = ledger((0 * DAY, "induction"), (2 * DAY, "induction"))
    assert book.problems(MON + 4 * DAY, "induction") == []
    book.admit(MON + 4 * DAY, "induction")


def test_a_session_too_soon_is_refused_naming_the_gap_and_the_limit() -> None:
    book = ledger((0 * DAY, "induction"))
    with pytest.raises(CourseRefused) as err:
        book.admit(MON + dt.timedelta(hours=47), "induction")
    assert str(err.value).count("\n") == 0
    assert "course test-course: at: Wed 2025-03-05 08:00 is 47 h after the last session, " \
           "less than the minimum interval 48 h for ketamine" in str(err.value)
    # exactly the minimum is allowed
    assert book.problems(MON + 2 * DAY, "induction") == []


def test_a_session_not_after_the_last_is_refused() -> None:
    book = ledger((2 * DAY, "induction"))
    assert "is not after the last session" in str(book.problems(MON, "induction")[0])


def test_a_fourth_in_seven_days_is_refused_and_the_eighth_day_is_free() -> None:
    book = ledger((0 * DAY, "induction"), (2 * DAY, "induction"), (4 * DAY, "induction"))
    problems = book.problems(MON + 6 * DAY, "induction")
    assert [p.value for p in problems] == ["4"] and problems[0].limit == "3"
    assert book.problems(MON + 7 * DAY, "induction") == []  # Monday's has left the window


def test_a_seventh_induction_is_refused_but_maintenance_is_not() -> None:
    book = ledger(*[(2 * i * DAY + (i // 3) * DAY, "induction") for i in range(6)])
    at = book.given[-1].at + 7 * DAY
    problems = book.problems(at, "induction")
    assert [p.field for p in problems] == ["phase"]
    assert "induction infusion 7, more than the library's maximum 6" in str(problems[0])
    assert book.problems(at, "maintenance") == []

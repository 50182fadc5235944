"""Course calendars and the library's course limits."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from pumpctl.plan.course import load_course
from pumpctl.plan.errors import PlanError

from .conftest import CONFIGS

COURSES = CONFIGS / "courses"


def _course(tmp_path: Path, **changes: Any) -> Path:
    data = yaml.safe_load((COURSES / "ketamine-induction-maintenance.yaml").read_text("utf-8"))
    data["plan"] = str(CONFIGS / "plans" / "ketamine-0.5mgkg-40min.yaml")
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_induction_three_a_week_then_weekly() -> None:
    course = load_course(COURSES / "ketamine-induction-maintenance.yaml")
    days = [s.at.strftime("%a %d") for s in course.sessions]
    assert days == ["Mon 03", "Wed 05", "Fri 07", "Mon 10", "Wed 12", "Fri 14",
                    "Fri 21", "Fri 28", "Fri 04", "Fri 11"]
    assert [s.phase for s in course.sessions].count("induction") == 6
    assert all(s.at.time() == dt.time(9, 0) for s in course.sessions)
    gaps = [s.since_previous for s in course.sessions[1:]]
    assert min(g for g in gaps if g is not None) >= dt.timedelta(hours=48)
    assert course.plan.drug == "ketamine"


def test_explicit_dates_course() -> None:
    course = load_course(COURSES / "ketamine-twice-weekly.yaml")
    assert len(course.sessions) == 8
    assert course.sessions[-1].at == dt.datetime(2025, 3, 27, 10) + dt.timedelta(days=7)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"induction": {"weekdays": ["mon", "tue", "thu"], "sessions": 6}},
         "is 24 h after the previous infusion, less than the minimum interval 48 h"),
        ({"induction": {"weekdays": ["mon", "wed", "fri"], "sessions": 7}},
         "7 induction infusions, more than the library's maximum 6"),
        ({"induction": {"weekdays": ["mon", "wed", "fri", "sun"], "sessions": 6}},
         "more than the maximum 3 per week"),
        ({"induction": {"dates": ["2025-03-03 09:00", "2025-03-02 09:00"]}},
         "induction.dates[1]: Sun 2025-03-02 09:00 is not after the previous infusion"),
        ({"maintenance": {"every": "36 h", "sessions": 2}},
         "maintenance.every (session 2)"),
        ({"start": "2025-03-04 09:00"},
         "start: Tue 2025-03-04 is not one of the induction weekdays"),
        ({"induction": {"weekdays": ["mon"], "sessions": 2, "dates": ["2025-03-03 09:00"]}},
         "give either weekdays and sessions, or dates"),
        ({"induction": {"weekdays": ["someday"], "sessions": 2}}, "induction.weekdays[0]"),
        ({"plan": "nowhere.yaml"}, "plan: plan file 'nowhere.yaml' not found"),
        ({"start": "next tuesday"}, "start:"),
        ({"cadence": "weekly"}, "cadence: unknown key"),
        # what the calendar or the filesystem cannot hold: one line, never a traceback
        ({"maintenance": {"every": "1e9 d", "sessions": 2}},
         "maintenance.every: 1000000000 d is longer than 366 days"),
        ({"maintenance": {"every": "7 d", "first_after": "400 d", "sessions": 2}},
         "maintenance.first_after: 400 d is longer than 366 days"),
        ({"start": "9999-12-27 09:00"}, "the course would run past the end of the calendar"),
        ({"plan": "p" * 300}, "plan: plan file 'ppp"),
    ],
)
def test_bad_courses_are_refused(tmp_path: Path, changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PlanError) as info:
        load_course(_course(tmp_path, **changes))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2

"""`pumpctl plan` and `pumpctl course` via the real entry point: exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pumpctl.cli import main

from .conftest import CONFIGS, PLANS, STANDARD, WritePlan, standard_plan

COURSES = CONFIGS / "courses"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_show_prints_the_rate_program_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "show", str(STANDARD), "--weight", "70")
    assert code == 0, err
    assert "52.5" in out and "35 mg" in out and "2400 s" in out
    assert "BD Plastipak 60 mL" in out
    assert "end of observation" in out and "assessment at 72 h" in out


def test_show_json_has_the_stable_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "show", str(STANDARD), "--weight", "70", "--json")
    assert code == 0
    data = json.loads(out)
    expected = {
        "plan": "ketamine-0.5mgkg-40min", "drug": "ketamine", "weight_kg": 70.0,
        "concentration_mg_per_ml": 1.0, "total_dose_mg": 35.0, "total_volume_ml": 35.0,
        "duration_s": 2400.0, "soft_limit_overrides": [],
        "segments": [{"start_s": 0.0, "duration_s": 2400.0, "rate_ml_h": 52.5, "volume_ml": 35.0}],
    }
    assert {k: data[k] for k in expected} == expected
    assert data["library_version"] == "2025.1-example"
    assert data["syringe"]["id"] == "bd-plastipak-60"


def test_show_options_override_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "show", str(STANDARD), "--weight", "60",
                       "--concentration", "0.5 mg/mL", "--syringe", "terumo-60", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total_volume_ml"] == 60.0 and data["syringe"]["inner_diameter_mm"] == 29.0


def test_show_with_override_records_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    high = str(PLANS / "ketamine-1.0mgkg-40min.yaml")
    code, _, err = run(capsys, "plan", "show", high, "--weight", "70")
    assert code == 3
    assert err.count("\n") == 1 and "override" in err
    code, out, _ = run(capsys, "plan", "show", high, "--weight", "70",
                       "--override-soft-limits", "arm C of the approved protocol", "--json")
    assert code == 0
    reasons = {o["reason"] for o in json.loads(out)["soft_limit_overrides"]}
    assert reasons == {"arm C of the approved protocol"}


@pytest.mark.parametrize(
    ("argv", "code", "lines"),
    [
        (["--weight", "70"], 0, 0),
        (["--weight", "70", "--concentration", "5 mg/mL"], 2, 1),
        (["--weight", "70", "--concentration", "1.5 mg/mL"], 3, 1),
        (["--weight", "500", "--concentration", "5 mg/mL"], 2, 2),
    ],
)
def test_check_exit_codes(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, lines: int
) -> None:
    got, out, err = run(capsys, "plan", "check", str(STANDARD), *argv)
    assert got == code
    problems = [line for line in err.splitlines() if line.startswith(("hard:", "soft:"))]
    assert len(problems) == lines
    if code == 0:
        assert "valid" in out
    if code == 2:
        assert all(line.startswith("hard:") for line in problems)
        assert "limit" in problems[0]


def test_check_high_dose_is_3_with_or_without_override(capsys: pytest.CaptureFixture[str]) -> None:
    high = str(PLANS / "ketamine-1.0mgkg-40min.yaml")
    assert run(capsys, "plan", "check", high, "--weight", "70")[0] == 3
    code, out, err = run(capsys, "plan", "check", high, "--weight", "70",
                         "--override-soft-limits", "dose-finding arm")
    assert code == 3 and "valid with soft-limit overrides" in out and "dose-finding arm" in err


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.update(drug="unobtainium"), "unknown drug"),
        (lambda d: d["steps"][0].update(dose="0.5 mg"), "dosing unit"),
        (lambda d: d["steps"][0].update(over="40"), "has no unit"),
        (lambda d: d.update(surprise=1), "unknown key"),
    ],
)
def test_show_errors_are_one_line_without_traceback(
    capsys: pytest.CaptureFixture[str], write_plan: WritePlan, mutate: object, fragment: str
) -> None:
    data = standard_plan()
    mutate(data)  # type: ignore[operator]
    code, out, err = run(capsys, "plan", "show", str(write_plan(data)), "--weight", "70")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and fragment in err
    assert "Traceback" not in err


def test_malformed_yaml_and_missing_file(capsys: pytest.CaptureFixture[str], write_plan: WritePlan,
                                         tmp_path: Path) -> None:
    code, _, err = run(capsys, "plan", "show", str(write_plan("steps: [")), "--weight", "70")
    assert code == 2 and err.count("\n") == 1 and "malformed YAML" in err
    code, _, err = run(capsys, "plan", "check", str(tmp_path / "none.yaml"))
    assert code == 2 and "no such file" in err


def test_bad_weight_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "show", str(STANDARD), "--weight", "heavy")
    assert code == 2 and "Traceback" not in err
    code, _, err = run(capsys, "plan", "show", str(STANDARD), "--weight", "nan")
    assert code == 2 and err.count("\n") == 1 and "positive finite" in err


def test_course_show_prints_the_calendar(capsys: pytest.CaptureFixture[str]) -> None:
    course = str(COURSES / "ketamine-induction-maintenance.yaml")
    code, out, err = run(capsys, "course", "show", course)
    assert code == 0, err
    assert out.count("induction") >= 6 and out.count("maintenance") >= 4
    assert "2025-03-03" in out and "Mon" in out and "48 h" in out
    twice = str(COURSES / "ketamine-twice-weekly.yaml")
    code, out, _ = run(capsys, "course", "show", twice, "--json")
    assert code == 0
    sessions = json.loads(out)["sessions"]
    assert [s["phase"] for s in sessions] == ["induction"] * 6 + ["maintenance"] * 2


def test_course_show_refuses_a_too_close_infusion(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (COURSES / "ketamine-twice-weekly.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "close.yaml"
    bad.write_text(text.replace("2025-03-06 10:00", "2025-03-04 10:00"), encoding="utf-8")
    code, out, err = run(capsys, "course", "show", str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "induction.dates[1]" in err and "24 h" in err and "minimum interval 48 h" in err


def test_console_script_runs_the_demo() -> None:
    """What `make demo` runs, as a separate process through the installed entry point."""
    exe = Path(sys.executable).with_name("pumpctl")
    result = subprocess.run(
        [str(exe), "plan", "show", str(STANDARD), "--weight", "70"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "52.5" in result.stdout

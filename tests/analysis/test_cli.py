"""`pumpctl accuracy analyse` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pumpctl.analysis.accuracy import STANDARD_WINDOWS_MIN
from pumpctl.cli import main
from pumpctl.commands.accuracy import STANDARD_WINDOWS


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


def write_series(path: Path, rate_ml_h: float, *, minutes: float = 120.0,
                 interval: float = 0.5, density: float = 0.998) -> Path:
    t = np.arange(0.0, minutes + interval / 2, interval)
    with path.open("w") as f:
        f.write("t_min,mass_g\n")
        for a, b in zip(t, density * rate_ml_h * t / 60.0, strict=True):
            f.write(f"{a:g},{b:.6f}\n")
    return path


def test_the_cli_default_windows_are_the_standard_ones() -> None:
    assert tuple(float(w) for w in STANDARD_WINDOWS.split(",")) == STANDARD_WINDOWS_MIN


def test_json_has_a_trumpet_startup_and_inputs(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_series(tmp_path / "s.csv", 5.1)
    code, out, err = run(capsys, "accuracy", "analyse", str(csv), "--rate", "5 mL/h", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["mean_error_pct"] == pytest.approx(2.0, abs=1e-4)
    assert [p["window_min"] for p in data["trumpet"]] == [2, 5, 11, 19, 31]
    for p in data["trumpet"]:
        assert p["ep_max_pct"] == pytest.approx(2.0, abs=0.01)
        assert p["ep_min_pct"] == pytest.approx(2.0, abs=0.01)
    assert len(data["startup"]) == 240
    assert data["startup"][0]["t_min"] == 0.5
    assert data["startup"][0]["flow_ml_h"] == pytest.approx(5.1, abs=1e-3)
    expected = {"rate_ml_h": 5.0, "interval_min": 0.5, "density_g_ml": 0.998,
                "start_min": 60.0, "period_min": 60.0, "samples": 241, "file": str(csv)}
    assert {k: data["inputs"][k] for k in expected} == expected


def test_options_with_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_series(tmp_path / "s.csv", 5.0, minutes=30, interval=1.0, density=1.0)
    code, out, err = run(capsys, "accuracy", "analyse", str(csv), "--rate", "83.3333333 µL/min",
                         "--interval", "60 s", "--density", "1 g/mL", "--start", "0.1 h",
                         "--period", "20min", "--windows", "2,5,11,19", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["inputs"]["start_min"] == pytest.approx(6.0)
    assert [p["positions"] for p in data["trumpet"]] == [19, 16, 10, 2]
    assert abs(data["mean_error_pct"]) < 1e-4


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_series(tmp_path / "s.csv", 4.9)
    code, out, _ = run(capsys, "accuracy", "analyse", str(csv), "--rate", "5 mL/h")
    assert code == 0
    assert "A = -2.00 %" in out and "Ep(max)" in out and "117" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--rate", "5"], "--rate: '5' has no unit"),
    (["--rate", "5 mL"], "--rate: '5 mL' has the wrong unit"),
    (["--rate", "5 mL/h", "--interval", "0.7min"], "period_min = 60 min is not a whole number"),
    (["--rate", "5 mL/h", "--density", "12"], "density_g_ml = 12.0: must be 0.5-3.0 g/mL"),
    (["--rate", "5 mL/h", "--windows", "2,x"], "--windows '2,x': 'x' is not a number"),
    (["--rate", "5 mL/h", "--period", "2h"], "the analysis period ends at 180 min"),
    (["--rate", "5 mL/h", "--evaporation", "2 mL"], "--evaporation: '2 mL' has the wrong unit"),
])
def test_bad_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  extra: list[str], message: str) -> None:
    csv = write_series(tmp_path / "s.csv", 5.0)
    code, _out, err = run(capsys, "accuracy", "analyse", str(csv), *extra)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("t_min,mass_g\n0,0\n0.5,0.04\n1,zero\n")
    code, _, err = run(capsys, "accuracy", "analyse", str(csv), "--rate", "5 mL/h")
    assert code == 2
    assert f"{csv} line 4: mass_g 'zero' is not a number" in err
    code, _, err = run(capsys, "accuracy", "analyse", "/dev/zero", "--rate", "5 mL/h")
    assert code == 2 and "is a character device" in err

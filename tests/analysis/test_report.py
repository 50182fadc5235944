"""`pumpctl report` and `pumpctl runs export` on journals of real simulated runs."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from pumpctl.analysis.report_data import load_run
from pumpctl.cli import main

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "configs" / "plans"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture(scope="module")
def faulted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The stepped plan with an occlusion at 20 min: segments, an alarm, a monitoring plan."""
    journal = tmp_path_factory.mktemp("runs")
    with pytest.raises(SystemExit) as info:
        main(["run", str(PLANS / "ketamine-stepped-0.5mgkg-40min.yaml"), "--weight", "70",
              "--sim", "--speed", "max", "--sim-fault", "occlusion@20m", "--json",
              "--journal", str(journal)])
    assert info.value.code == 6
    (path,) = journal.glob("*.jsonl")
    return journal, path.stem


def test_report_writes_a_png_and_a_page_with_the_picture_inside(
        faulted_run: tuple[Path, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    journal, run_id = faulted_run
    code, out, err = run(capsys, "report", run_id[:20], "--journal", str(journal),
                         "--out", str(tmp_path))
    assert code == 0, err
    png, page = tmp_path / f"{run_id}.png", tmp_path / f"{run_id}.html"
    assert out.split() == [str(png), str(page)]
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 800 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.05  # not a blank canvas
    text = page.read_text()
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', text)
    assert embedded is not None and base64.b64decode(embedded[1]) == png.read_bytes()
    assert "faulted" in text and "pump_alarm" in text and "stall" in text
    assert "end of observation" in text and "vital signs (baseline)" in text
    assert "no overrides" in text


def test_report_data_marks_segments_alarms_and_the_timeline(
        faulted_run: tuple[Path, str]) -> None:
    journal, run_id = faulted_run
    d = load_run(journal / f"{run_id}.jsonl")
    assert [m.label for m in d.segments] == ["segment 1", "segment 2"]
    assert [round(m.t_min) for m in d.segments] == [10, 20]
    assert len(d.alarm_marks) == 1 and 20 <= d.alarm_marks[0].t_min < 21
    assert d.planned_curve[-1] == pytest.approx((40.0, 35.0))
    assert d.end_min == pytest.approx(160.0)  # the end of the 2 h observation
    assert d.measured_ml is not None and d.accuracy is None


def test_export_csv_has_one_row_per_sample(faulted_run: tuple[Path, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    journal, run_id = faulted_run
    code, out, _ = run(capsys, "runs", "export", run_id, "--journal", str(journal), "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    records = [json.loads(line) for line in (journal / f"{run_id}.jsonl").read_text().splitlines()]
    samples = [r for r in records if r["type"] == "sample"]
    assert len(rows) == len(samples) > 1000
    assert float(rows[-1]["infused_ml"]) == samples[-1]["infused_ml"]
    assert rows[0]["state"] == "infusing"
    code, _, err = run(capsys, "runs", "export", run_id, "--journal", str(journal), "--csv",
                       "--weighings")
    assert code == 2 and "no balance readings" in err
    code, _, err = run(capsys, "runs", "export", run_id, "--journal", str(journal))
    assert code == 2 and "give --csv" in err


def test_an_accuracy_run_exports_and_reanalyses_to_the_same_figures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rig = ROOT / "configs" / "rigs" / "sim-newera-accuracy.yaml"
    code, out, err = run(capsys, "accuracy", "run", "--rig", str(rig), "--rate", "5 mL/h",
                         "--duration", "40min", "--start", "10min", "--period", "30min",
                         "--windows", "2,5,11", "--speed", "max", "--journal", str(tmp_path),
                         "--json")
    assert code == 0, err
    live = json.loads(out)
    csv_path = tmp_path / "w.csv"
    code, _, err = run(capsys, "runs", "export", live["run_id"], "--journal", str(tmp_path),
                       "--csv", "--weighings", "--out", str(csv_path))
    assert code == 0, err
    code, out, err = run(capsys, "accuracy", "analyse", str(csv_path), "--rate", "5 mL/h",
                         "--start", "10min", "--period", "30min", "--windows", "2,5,11",
                         "--evaporation", "0.05 mg/min", "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["mean_error_pct"] == live["mean_error_pct"]
    assert again["trumpet"] == live["trumpet"]
    d = load_run(tmp_path / f"{live['run_id']}.jsonl")
    assert d.accuracy is not None and d.accuracy.mean_error_pct == live["mean_error_pct"]
    assert d.balance_ml is not None and d.balance_ml.size == 81
    code, out, _ = run(capsys, "report", live["run_id"], "--journal", str(tmp_path))
    page = (tmp_path / f"{live['run_id']}.html").read_text()
    assert "Ep(max)" in page and "Accuracy (gravimetric)" in page
    assert f"{live['mean_error_pct']:+.2f} %" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed "
                    "(make system-deps installs it)")
def test_the_page_renders_in_a_browser(faulted_run: tuple[Path, str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    journal, run_id = faulted_run
    run(capsys, "report", run_id, "--journal", str(journal), "--out", str(tmp_path))
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,1400",
                    (tmp_path / f"{run_id}.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    image = matplotlib.image.imread(shot)
    # the embedded picture is drawn: a blank page or a broken-image icon is near-uniform
    assert np.asarray(image)[..., :3].std() > 0.1

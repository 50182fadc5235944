"""`pumpctl accuracy run` on the simulated rig, in virtual time: the issue's acceptance."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from pathlib import Path

import pytest

from pumpctl.cli import main
from pumpctl.journal import read_records
from pumpctl.rig import load_rig

RIGS = Path(__file__).resolve().parents[2] / "configs" / "rigs"
SIM_RIG = RIGS / "sim-newera-accuracy.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture(scope="module")
def two_hours(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One 2 h run at 5 mL/h with start-up compliance and ripple on (about 10 s of wall time)."""
    journal = tmp_path_factory.mktemp("runs")
    out = io.StringIO()  # a module fixture cannot use capsys
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main(["accuracy", "run", "--rig", str(SIM_RIG), "--rate", "5 mL/h", "--speed", "max",
              "--journal", str(journal), "--json"])
    assert info.value.code == 0
    return json.loads(out.getvalue()), journal


def test_the_rig_has_compliance_and_ripple_on() -> None:
    physics = load_rig(SIM_RIG).physics()
    assert physics.startup_ml > 0 and physics.ripple_fraction > 0 and physics.thread_error_um > 0


def test_a_within_two_percent_and_the_trumpet_narrows(two_hours: tuple[dict, Path]) -> None:
    data, _ = two_hours
    assert abs(data["mean_error_pct"]) <= 2.0
    widths = [p["ep_max_pct"] - p["ep_min_pct"] for p in data["trumpet"]]
    assert [p["window_min"] for p in data["trumpet"]] == [2, 5, 11, 19, 31]
    assert all(a > b for a, b in itertools.pairwise(widths)), widths
    for p in data["trumpet"]:  # the band is around zero: no offset in the simulated pump
        assert p["ep_min_pct"] < 0.5 and p["ep_max_pct"] > -0.5


def test_the_start_up_graph_shows_the_compliance(two_hours: tuple[dict, Path]) -> None:
    data, _ = two_hours
    flows = [s["flow_ml_h"] for s in data["startup"]]
    assert len(flows) == 240
    assert flows[0] < 0.5 * 5.0  # the stopper takes up the first 0.15 mL
    assert sum(flows[30:60]) / 30 == pytest.approx(5.0, rel=0.02)  # 15-30 min: at the rate


def test_the_journal_holds_every_reading_and_the_inputs(two_hours: tuple[dict, Path]) -> None:
    data, _journal = two_hours
    records = read_records(Path(data["journal"]))
    header = records[0]
    assert header["accuracy"]["rate_ml_h"] == 5.0 and header["accuracy"]["rig"] == \
        "sim-newera-accuracy"
    assert header["accuracy"]["balance"]["model"] == "pumpctl-sim 220.0000 g"
    weighings = [r for r in records if r["type"] == "weighing"]
    assert [w["index"] for w in weighings] == list(range(241))
    assert all(not w["stable"] and w["raw"].startswith("S D") for w in weighings[1:])
    assert records[-1]["type"] == "summary" and records[-1]["outcome"] == "completed"
    # the pump ran one interval past the 2 h, so the last reading was taken while it ran
    assert records[-1]["planned_volume_ml"] == pytest.approx(5.0 * 120.5 / 60)


@pytest.mark.parametrize(("extra", "message"), [
    (["--rate", "5 mL/h", "--duration", "1h"], "--duration 60 min is shorter than the analysis"),
    (["--rate", "5000 mL/h"], "--rate 5000 mL/h is outside"),
    (["--rate", "5 mL/h", "--duration", "20h"], "is 100 mL; the BD Plastipak 60 mL holds 60 mL"),
    (["--rate", "5.12345 mL/h"], "cannot be written exactly"),
    (["--rate", "5 mL/h", "--duration", "120.2min"], "not a whole number of --interval"),
])
def test_refused_before_the_pump_moves(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       extra: list[str], message: str) -> None:
    code, _, err = run(capsys, "accuracy", "run", "--rig", str(SIM_RIG), "--speed", "max",
                       "--journal", str(tmp_path), *extra)
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert not list(tmp_path.glob("*.jsonl"))


def test_a_real_rig_refuses_virtual_time(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "accuracy", "run", "--rig", str(RIGS / "ne1000-mtsics.example.yaml"),
                       "--rate", "5 mL/h", "--speed", "max", "--journal", str(tmp_path))
    assert code == 2 and "--speed max (virtual time) needs a simulated rig" in err


def test_a_bad_rig_file_names_the_field(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    rig = tmp_path / "rig.yaml"
    rig.write_text(SIM_RIG.read_text().replace("startup_ml: 0.15", "startup_mL: 0.15"))
    code, _, err = run(capsys, "accuracy", "run", "--rig", str(rig), "--rate", "5 mL/h")
    assert code == 2 and "unknown physics parameter 'startup_mL'" in err, err
    rig.write_text(SIM_RIG.read_text().replace("density: 0.998 g/mL", "density: 0.998"))
    code, _, err = run(capsys, "accuracy", "run", "--rig", str(rig), "--rate", "5 mL/h")
    assert code == 2 and "density" in err and "no unit" in err, err

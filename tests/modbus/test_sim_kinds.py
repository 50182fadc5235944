"""`pumpctl run PLAN --sim MAP`: every shipped Modbus map is a simulator kind, run through the
Modbus driver in memory, with the Modbus faults as `--sim-fault`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pumpctl.drivers.modbus.pumpmap import map_names
from pumpctl.drivers.open import simulator_kinds
from pumpctl.journal import read_records
from tests.controller.test_cli import STANDARD, cli


def test_every_map_is_a_simulator_kind_beside_newera() -> None:
    kinds = simulator_kinds()
    assert {"newera", "generic", "isco-d", "vindum-vp"} <= set(kinds)
    assert set(map_names()) <= set(kinds)


@pytest.mark.parametrize("kind", ["isco-d", "generic", "vindum-vp"])
def test_the_standard_plan_on_each_map_in_virtual_time(kind: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["run", str(STANDARD), "--weight", "70", "--sim", kind, "--speed",
                          "max", "--journal", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["outcome"] == "completed"
    assert summary["delivered_volume_ml"] == pytest.approx(35.0, abs=0.01)
    header = read_records(Path(summary["journal_path"]))[0]
    assert header["pump_capabilities"]["watchdog"] is None or kind == "generic"


def test_a_modbus_fault_on_the_command_line_faults_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["run", str(STANDARD), "--weight", "70", "--sim", "generic",
                          "--speed", "max", "--sim-fault", "exception@10m:code=4,count=-1",
                          "--journal", str(tmp_path), "--json"], capsys)
    assert code == 6, err
    summary = json.loads(out)
    assert summary["outcome"] == "faulted"
    assert 0 < summary["delivered_volume_ml"] < 35.0


@pytest.mark.parametrize(("args", "names"), [
    (["--sim", "nosuch"], "simulator kind 'nosuch' is not known"),
    (["--sim", "isco-d", "--sim-fault", "exception@1m:code=999"], "code=999"),
    (["--sim", "isco-d", "--sim-fault", "busy@1m:pump=2"], "unit id 2"),
    (["--sim", "newera", "--sim-fault", "busy@1m"], "fault kind 'busy'"),
])
def test_bad_kinds_and_faults_are_one_line_errors(args: list[str], names: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["run", str(STANDARD), "--weight", "70", "--speed", "max", *args,
                          "--journal", str(tmp_path)], capsys)
    assert code == 2, (out, err)
    assert names in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("*.jsonl"))  # refused before any pump was touched


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "p.yaml", "--sim"], ["run", "p.yaml", "--sim", "newera"]),
    (["run", "p.yaml", "--sim", "--speed", "max"],
     ["run", "p.yaml", "--sim", "newera", "--speed", "max"]),
    (["run", "--sim", "p.yaml"], ["run", "--sim", "newera", "p.yaml"]),
    (["run", "p.yaml", "--sim", "isco-d"], ["run", "p.yaml", "--sim", "isco-d"]),
    (["pump", "--sim"], ["pump", "--sim"]),  # only `run` has it
])
def test_sim_alone_is_the_default_kind(argv: list[str], expected: list[str]) -> None:
    from pumpctl.commands.run import sim_flag_alone

    assert sim_flag_alone(argv) == expected

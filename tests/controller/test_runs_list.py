"""`pumpctl runs list` as a table: readable when piped (CI logs), not squeezed to ellipses."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_cli import STANDARD, cli


def test_runs_list_table_keeps_whole_cells_when_piped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["run", str(STANDARD), "--weight", "70", "--sim", "--speed", "max",
                        "--journal", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    code, out, _ = cli(["runs", "list", "--journal", str(tmp_path)], capsys)
    assert code == 0
    run_id = next(tmp_path.glob("*.jsonl")).stem
    row = next(line for line in out.splitlines() if run_id in line)
    # The plan's name keeps its dots ("0.5mgkg"), only the YAML suffix goes.
    assert "ketamine-0.5mgkg-40min " in row and ".yaml" not in row
    assert "completed" in row and "35.000 / 35.000" in row and "…" not in out


def test_runs_list_on_an_empty_directory_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["runs", "list", "--journal", str(tmp_path)], capsys)
    assert code == 0 and out.strip() == f"no runs in {tmp_path}"


def test_runs_show_json_is_indented_on_a_terminal_and_one_line_in_a_pipe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import sys

    code, _, err = cli(["run", str(STANDARD), "--weight", "70", "--sim", "--speed", "max",
                        "--journal", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    run_id = next(tmp_path.glob("*.jsonl")).stem
    show = ["runs", "show", run_id, "--journal", str(tmp_path), "--json"]
    code, piped, _ = cli(show, capsys)
    assert code == 0 and len(piped.strip().splitlines()) == 1  # for jq and files
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, shown, _ = cli(show, capsys)
    assert code == 0 and shown.startswith('{\n  "run": {\n')  # for a person
    assert json.loads(shown) == json.loads(piped)

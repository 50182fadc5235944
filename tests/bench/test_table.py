"""The bench table's row convention: register, select, judge, print, write JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import table
from bench.table import Bench, Figure, at_least, at_most, render, row, run_rows, write_results


@pytest.fixture
def rows(monkeypatch: pytest.MonkeyPatch) -> dict[str, table.Row]:
    registry: dict[str, table.Row] = {}
    monkeypatch.setattr(table, "ROWS", registry)
    return registry


def test_a_registered_row_is_run_judged_and_written(rows: dict[str, table.Row],
                                                    tmp_path: Path) -> None:
    @row("fast", about="a figure that meets its target")
    def fast(bench: Bench) -> list[Figure]:
        return [Figure("requests", 2500.0, "req/s", at_least(1000)), Figure("context", 3, "ms")]

    @row("slow")
    def slow(bench: Bench) -> list[Figure]:
        """A figure that misses."""
        return [Figure("lateness p99", 80.0, "ms", at_most(50), note="under load")]

    @row("broken")
    def broken(bench: Bench) -> list[Figure]:
        raise RuntimeError("no broker")

    with pytest.raises(ValueError, match="twice"):
        row("fast")(fast)
    figures = run_rows(None, Bench(tmp_path), progress=lambda _: None)
    assert [(f.row, f.met) for f in figures] == [("fast", True), ("fast", None),
                                                 ("slow", False), ("broken", False)]
    assert math.isnan(figures[-1].value) and "no broker" in figures[-1].name
    assert rows["slow"].about == "A figure that misses."
    text = render(figures)
    assert "<= 50" in text and "NO" in text and "yes" in text and "under load" in text
    write_results(tmp_path / "r.json", figures, {"cores": 2})
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["machine"] == {"cores": 2}
    assert data["figures"][2] == {"name": "lateness p99", "value": 80.0, "unit": "ms",
                                  "target": "<= 50", "note": "under load", "row": "slow",
                                  "met": False}
    assert data["figures"][3]["value"] is None  # NaN is not JSON


def test_rows_are_selected_by_name(rows: dict[str, table.Row], tmp_path: Path) -> None:
    row("a")(lambda bench: [Figure("x", 1, "")])
    row("b")(lambda bench: [Figure("y", 2, "")])
    assert [f.name for f in run_rows(["b"], Bench(tmp_path), progress=lambda _: None)] == ["y"]
    with pytest.raises(SystemExit, match="unknown bench row"):
        run_rows(["c"], Bench(tmp_path), progress=lambda _: None)

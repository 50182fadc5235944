"""The folder of evidence a HIL session leaves (`--hil-report DIR`), and its summary tables.

    DIR/measurements.json     every measurement, one object each, with the test's node id
    DIR/junit.xml             pytest's own JUnit XML (measurements also as <property>)
    DIR/runs/TEST/RUN.jsonl   each run's journal, copied from the test's journal directory
    DIR/runs/TEST/RUN.png     the run report (pumpctl.analysis.report) for the runs a test
    DIR/runs/TEST/RUN.html      asked to have drawn (the seed protocols)

Journals and pictures are written by the process that ran the test (a pytest-xdist worker
writes into the same folder); measurements.json by the one that collected every report.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pumpctl.analysis.report import write_report


def test_folder_name(nodeid: str) -> str:
    """A file-system-safe name for a test (`test_rig_protocols.py-test_x-plan`)."""
    tail = nodeid.split("/")[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-")
    return name[:150] or "test"


def keep_runs(report_dir: Path, nodeid: str, journal_dir: Path,
              render: Iterable[str] = ()) -> list[Path]:
    """Copy every journal in `journal_dir` to DIR/runs/TEST/ and draw the runs in `render`;
    returns the journals kept."""
    if not journal_dir.is_dir():
        return []
    target = report_dir / "runs" / test_folder_name(nodeid)
    wanted = set(render)
    kept = []
    for journal in sorted(journal_dir.glob("*.jsonl")):
        target.mkdir(parents=True, exist_ok=True)
        copy = target / journal.name
        shutil.copyfile(journal, copy)
        kept.append(copy)
        if journal.stem in wanted:
            write_report(copy, target)
    return kept


def write_measurements(report_dir: Path, measurements: Sequence[dict[str, Any]]) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "measurements.json"
    ordered = sorted(measurements, key=lambda m: (m.get("test", ""), m.get("seq", 0)))
    path.write_text(json.dumps([{k: v for k, v in m.items() if k != "seq"} for m in ordered],
                               indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def render_tables(cells: Sequence[dict[str, Any]]) -> list[str]:
    """Plain-text tables from recorded cells (`table`, `row`, `column`, `text`, `ok`, and
    optional `row_order` / `column_order`): one block per table, rows and columns in their
    given order (xdist delivers cells in any order)."""
    lines: list[str] = []
    for table in sorted({c["table"] for c in cells}):
        mine = [c for c in cells if c["table"] == table]
        rows = sorted({(c.get("row_order", 0), c["row"]) for c in mine})
        cols = sorted({(c.get("column_order", 0), c["column"]) for c in mine})
        grid = {(c["row"], c["column"]): c for c in mine}
        head = [""] + [name for _, name in cols]
        body = []
        for _, row in rows:
            line = [row]
            for _, col in cols:
                cell = grid.get((row, col))
                line.append("-" if cell is None else
                            ("" if cell.get("ok", True) else "FAIL ") + cell["text"])
            body.append(line)
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines.append(table)
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        lines.extend("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     for r in body)
        failed = sum(1 for c in mine if not c.get("ok", True))
        lines.append(f"{len(mine)} cells, {failed} failed")
        lines.append("")
    return lines

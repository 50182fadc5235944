"""The one bench table: rows registered by small modules, measured side by side in one run.

Adding a row (e.g. a Modbus round trip, a dashboard latency): drop a module `bench/rows_<area>.py`
with one or more functions decorated `@row("<name>")`. Each gets a `Bench` (a scratch
directory, the quick flag, shared helpers) and returns `Figure`s; `make bench` finds the
module by its file name, runs the rows in registration order (or those named in
`ROWS=name,...`), prints one table and writes `bench/results.json`.

    from bench.table import Bench, Figure, at_most, row

    @row("modbus-roundtrip", about="Modbus RTU round trip over a pty vs wire time")
    def modbus_roundtrip(bench: Bench) -> list[Figure]:
        ratio = ...
        return [Figure("Modbus RTU round trip / wire time, 19200 baud", ratio, "x",
                       at_most(1.2), note="median of 200")]

A figure is OpenHTF's measurement shape: name, value, unit, limit, outcome. A figure with no
target is context (a raw value behind a ratio) and is neither met nor missed. Times are
ratios to a reference measured in the same run wherever the host's speed would otherwise
decide the verdict (start-up against `python -c pass`, round trips against the wire time),
because this bench runs on shared machines.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
STANDARD_PLAN = REPO / "configs" / "plans" / "ketamine-0.5mgkg-40min.yaml"


@dataclass(frozen=True)
class Target:
    """A limit on a figure: `op` is "<=" or ">="."""

    op: str
    limit: float

    def met(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.op} {_number(self.limit)}"


def at_most(limit: float) -> Target:
    return Target("<=", limit)


def at_least(limit: float) -> Target:
    return Target(">=", limit)


@dataclass
class Figure:
    """One measured figure: a line of the table."""

    name: str
    value: float
    unit: str
    target: Target | None = None
    note: str = ""
    row: str = ""  # filled in by the runner: the registered row that measured it

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data["met"] = self.met
        data["value"] = None if math.isnan(self.value) else self.value
        return data


@dataclass
class Bench:
    """What a row function gets: a scratch directory and whether to measure briefly."""

    workdir: Path
    quick: bool = False

    def scratch(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


RowFunc = Callable[[Bench], list[Figure]]


@dataclass(frozen=True)
class Row:
    name: str
    about: str
    func: RowFunc


ROWS: dict[str, Row] = {}


def row(name: str, *, about: str = "") -> Callable[[RowFunc], RowFunc]:
    """Register `func` as the bench row `name` (`ROWS=name` selects it)."""
    def register(func: RowFunc) -> RowFunc:
        if name in ROWS:
            raise ValueError(f"bench row {name!r} registered twice")
        ROWS[name] = Row(name, about or (func.__doc__ or "").strip().split("\n")[0], func)
        return func
    return register


def run_rows(names: list[str] | None, bench: Bench,
             progress: Callable[[str], None] = print) -> list[Figure]:
    """Run the selected rows (all, in registration order, if `names` is None)."""
    unknown = [n for n in names or [] if n not in ROWS]
    if unknown:
        raise SystemExit(f"unknown bench row(s) {', '.join(unknown)}; known: "
                         f"{', '.join(ROWS)}")
    figures: list[Figure] = []
    for name in names or list(ROWS):
        entry = ROWS[name]
        progress(f"-- {name}: {entry.about}")
        t0 = time.perf_counter()
        try:
            got = entry.func(bench)
        except Exception as exc:  # one broken row must not hide the others' figures
            traceback.print_exc()
            got = [Figure(f"{name}: failed ({type(exc).__name__}: {exc})", math.nan, "",
                          at_least(0))]
        for fig in got:
            fig.row = name
            progress(f"   {fig.name}: {_number(fig.value)} {fig.unit}")
        progress(f"   ({time.perf_counter() - t0:.0f} s)")
        figures.extend(got)
    return figures


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value):
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2e}"


def render(figures: list[Figure]) -> str:
    """The table as plain text (it goes into logs and the README as it is)."""
    header = ("row", "figure", "measured", "unit", "target", "met")
    lines = [(f.row, f.name, _number(f.value), f.unit, str(f.target or ""),
              {True: "yes", False: "NO", None: ""}[f.met]) for f in figures]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    aligns = ("<", "<", ">", "<", "<", "<")

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths, strict=True))

    out = [fmt(header), "  ".join("-" * w for w in widths)]
    out += [fmt(line) for line in lines]
    notes = [(f.row, f.name, f.note) for f in figures if f.note]
    if notes:
        out.append("")
        out += [f"{name}: {note}" for _, name, note in notes]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "host": platform.node(),
            "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}",
            "load_average_1_5_15": [round(x, 2) for x in load]}


def write_results(path: Path, figures: list[Figure], info: dict[str, Any]) -> None:
    path.write_text(json.dumps({"machine": info, "figures": [f.as_dict() for f in figures]},
                               indent=2) + "\n", encoding="utf-8")

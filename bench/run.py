"""`make bench`: run every registered bench row (or those in ROWS), print one table, write
bench/results.json.

    .venv/bin/python bench/run.py [--rows startup,fleet] [--quick] [--list]

Rows live in `bench/rows_*.py` (see bench/table.py for how to add one). The environment
variable ROWS (comma-separated) selects rows as --rows does; BENCH_QUICK=1 as --quick.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.table import (  # noqa: E402
    BENCH_DIR,
    ROWS,
    Bench,
    Figure,
    machine,
    render,
    row,
    run_rows,
    write_results,
)

# Cheap rows first, so a look at the first minute already says something; rows of modules
# not named here (a new area's) run after these, in file-name order.
FIRST = ("startup", "controller", "journal", "roundtrip", "telemetry", "fleet")


def load_row_modules() -> None:
    """Import every bench/rows_*.py; one that cannot be imported becomes a row that fails
    with the reason, so it shows in the table instead of stopping the bench."""
    names = [p.stem.removeprefix("rows_") for p in sorted(BENCH_DIR.glob("rows_*.py"))]
    for name in sorted(names, key=lambda n: (FIRST.index(n) if n in FIRST else len(FIRST), n)):
        try:
            importlib.import_module(f"bench.rows_{name}")
        except Exception as exc:
            message = f"cannot import bench/rows_{name}.py: {type(exc).__name__}: {exc}"

            def broken(bench: Bench, message: str = message) -> list[Figure]:
                raise RuntimeError(message)

            row(name, about=message)(broken)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=os.environ.get("ROWS") or None,
                        help="comma-separated row names (env ROWS); default all")
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                        help="shorter measurements, for a smoke test of the bench itself")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.json")
    args = parser.parse_args()
    load_row_modules()
    if args.list:
        for entry in ROWS.values():
            print(f"{entry.name:<12} {entry.about}")
        return
    names = [n.strip() for n in args.rows.split(",") if n.strip()] if args.rows else None
    info = machine()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pumpctl-bench-") as tmp:
        figures = run_rows(names, Bench(Path(tmp), quick=args.quick))
    info["bench_seconds"] = round(time.perf_counter() - t0)
    print()
    print(f"pumpctl bench, {info['date']}, {info['cpu']} x{info['cores']}, Python "
          f"{info['python']}, load {info['load_average_1_5_15']}, {info['bench_seconds']} s")
    print(render(figures))
    write_results(args.out, figures, info)
    print(f"\nwritten: {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    missed = [f for f in figures if f.met is False]
    if missed:
        print(f"{len(missed)} target(s) not met")


if __name__ == "__main__":
    main()

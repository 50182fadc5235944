"""Start-up: how long `pumpctl` takes to be useful, as a ratio to `python -c pass`.

A command's wall time on a shared machine says more about the neighbours than about the
code, so each command is timed alternately with `python -c pass` (the same interpreter and
venv, so the same site start-up), and the verdict is on the ratio of the fastest of each,
as `timeit` does. The targets come from the issue: `pumpctl --help` <= 0.3 s and
`pumpctl plan check` <= 0.6 s on a machine where `python -c pass` takes 30 ms (this VM when
quiet), i.e. <= 10x and <= 20x.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.table import REPO, STANDARD_PLAN, Bench, Figure, at_most, row

PASS_NOMINAL_S = 0.030  # python -c pass on this VM when quiet: the targets' scale


def _time(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   cwd=REPO)
    return time.perf_counter() - t0


def startup_ratios(commands: dict[str, list[str]], rounds: int) -> tuple[float, dict[str, float]]:
    """Fastest wall time of `python -c pass` and of each command, taken in alternation."""
    python = [sys.executable, "-c", "pass"]
    best = {name: float("inf") for name in commands}
    base = float("inf")
    for _ in range(rounds):
        base = min(base, _time(python))
        for name, argv in commands.items():
            best[name] = min(best[name], _time(argv))
    return base, best


@row("startup", about="pumpctl start-up, as a ratio to python -c pass in the same run")
def startup(bench: Bench) -> list[Figure]:
    exe = str(Path(sys.executable).with_name("pumpctl"))
    commands = {
        "pumpctl --help": [exe, "--help"],
        "pumpctl plan check PLAN --weight 70": [exe, "plan", "check", str(STANDARD_PLAN),
                                                "--weight", "70"],
        "pumpctl version": [exe, "version"],
    }
    targets = {"pumpctl --help": 0.3, "pumpctl plan check PLAN --weight 70": 0.6}
    base, best = startup_ratios(commands, 3 if bench.quick else 9)
    figures = [Figure("python -c pass (the reference)", base * 1e3, "ms",
                      note=f"fastest of the rounds; the targets assume {PASS_NOMINAL_S * 1e3:.0f}"
                           " ms")]
    for name, seconds in best.items():
        target = targets.get(name)
        figures.append(Figure(
            f"{name} / python -c pass", seconds / base, "x",
            at_most(target / PASS_NOMINAL_S) if target else None,
            note=f"{seconds * 1e3:.0f} ms" + (f"; target {target} s at the nominal reference"
                                              if target else "")))
    return figures

"""The controller in virtual time: how fast a whole plan runs, and how fast a breach stops it.

1. Virtual-time speed: the standard plan (ketamine 0.5 mg/kg over 40 min, 70 kg, poll 1 s,
   a sensor fitted, every sample checked and journaled) against the in-process simulator;
   simulated seconds per wall second, judged on the fastest run as `timeit` does (other
   guests on a shared VM slow single runs; the median is in the note). Then the same plan as
   a user starts it, `pumpctl run ... --sim --speed max` in a fresh process: start-up, plan
   compilation and journal included.
2. Breach to stop: for each injectable fault at 10 min into the plan on a paced 19200-baud
   line, the time from the safety monitor's alarm to the confirmed stop, in poll intervals.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.table import REPO, STANDARD_PLAN, Bench, Figure, at_least, at_most, row
from pumpctl.clock import LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.drivers.sensors import ModelBalance
from pumpctl.journal import read_records
from pumpctl.plan.compile import compile_plan_file
from pumpctl.plan.program import RateProgram
from pumpctl.run.controller import InfusionController, RunResult, RunSettings


def standard() -> RateProgram:
    return compile_plan_file(STANDARD_PLAN, weight_kg=70)


async def embedded_run(program: RateProgram, journal: Path, poll_s: float = 1.0,
                       faults: tuple[str, ...] = (), baud: int | None = None) -> RunResult:
    from simulators.faults import parse_fault
    from simulators.newera.embedded import embedded_newera

    clock = LoopClock()
    async with embedded_newera(clock, faults=[parse_fault(f) for f in faults],
                               baud=baud) as (sim, driver):
        ctl = InfusionController(driver, program, RunSettings(journal_dir=journal, poll_s=poll_s),
                                 clock=clock, volume_sensor=ModelBalance(sim.pump(0).model))
        return await ctl.run()


def virtual_speeds(bench: Bench, repeat: int) -> list[float]:
    program = standard()
    work = bench.scratch("speed")
    run_clock(embedded_run(program, work / "warm-up"), virtual=True)
    ratios = []
    for i in range(repeat):
        t0 = time.perf_counter()
        result = run_clock(embedded_run(program, work / str(i)), virtual=True)
        wall = time.perf_counter() - t0
        assert result.outcome == "completed", result.reason
        ratios.append(result.duration_s / wall)
    return ratios


@row("speed", about="virtual-time speed of the standard plan, in process and as a command")
def speed(bench: Bench) -> list[Figure]:
    ratios = virtual_speeds(bench, 3 if bench.quick else 9)
    figures = [Figure("standard plan in virtual time, in process", max(ratios), "x real time",
                      at_least(10_000), note=f"fastest of {len(ratios)}; median "
                      f"{statistics.median(ratios):,.0f}x, slowest {min(ratios):,.0f}x")]
    journal = bench.scratch("speed-cli")
    walls = []
    for _ in range(2 if bench.quick else 5):
        t0 = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).with_name("pumpctl")), "run",
                               str(STANDARD_PLAN), "--weight", "70", "--sim", "--speed", "max",
                               "--journal", str(journal), "--json"], cwd=REPO,
                              capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t0)
        assert done.returncode == 0, done.stderr
    # 40 simulated minutes in at most 2.4 s of wall time, start-up of the process included.
    figures.append(Figure("standard plan, `pumpctl run --sim --speed max` process",
                          2400 / min(walls), "x real time", at_least(1_000),
                          note=f"fastest of {len(walls)}: {min(walls):.2f} s wall for 2400 s "
                               "simulated, start-up included"))
    return figures


FAULTS = ("free-flow@10m:factor=2", "occlusion@10m", "stuck-motor@10m", "syringe-empty@10m",
          "power-reset@10m", "drop-replies@10m:count=-1")


@row("breach", about="safety alarm to confirmed pump stop, per fault, in poll intervals")
def breach(bench: Bench) -> list[Figure]:
    program, poll = standard(), 1.0
    figures = []
    for fault in FAULTS:
        result = run_clock(embedded_run(program, bench.scratch("breach"), poll, (fault,),
                                        baud=19200), virtual=True)
        records = read_records(result.journal_path)

        def at(pred: Callable[[dict[str, Any]], bool],
               records: list[dict[str, Any]] = records) -> float:
            return next((r["elapsed_s"] for r in records if pred(r)), float("nan"))

        t_alarm = at(lambda r: r["type"] == "alarm")
        kind = next(r["kind"] for r in records if r["type"] == "alarm")
        t_conf = at(lambda r: r["type"] == "state" and r["state"] == "stopped")
        onset = at(lambda r: r["type"] == "state" and r["state"] == "started") + 600.0
        name = fault.split("@")[0]
        note = (f"{kind} after {(t_alarm - onset) / poll:.0f} polls; delivered "
                f"{result.delivered_volume_ml:.3f} mL")
        if result.stop_confirmed:
            figures.append(Figure(f"{name}: alarm to stop confirmed", (t_conf - t_alarm) / poll,
                                  "polls", at_most(1.0), note=note))
        else:  # a pump that answers nothing cannot confirm: its own watchdog stops it
            figures.append(Figure(f"{name}: alarm to stop (unconfirmable, no replies)",
                                  float("nan"), "polls", note=note + "; left to the watchdog"))
    return figures

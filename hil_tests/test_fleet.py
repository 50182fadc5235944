"""Several pumps in one process: one controller task per channel, on every simulator kind."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

import pytest

from pumpctl.clock import LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.drivers.sensors import ModelBalance
from pumpctl.journal import read_records
from pumpctl.plan.program import RateProgram
from pumpctl.run.controller import InfusionController, RunResult, RunSettings
from pumpctl.run.fleet import request_stop_all, run_channels
from simulators.faults import parse_fault
from simulators.line import SimLine
from simulators.pump import PumpSetup

from .conftest import PLANS_DIR, STANDARD_PLAN, compile_seed
from .kinds import SimKind


async def _run_on_one_line(kind: SimKind, sim: SimLine, clock: LoopClock,
                           programs: list[RateProgram], journal_dir: Path, *,
                           poll_s: float = 1.0, with_sensors: bool = False) -> list[RunResult]:
    """One controller per program, for the first pumps of `sim`, all on one shared in-memory
    line (one request in flight at a time)."""
    async with kind.open_drivers(sim, clock, "memory", journal_dir, len(programs),
                                 None) as drivers:
        ctls = []
        for i, (driver, program) in enumerate(zip(drivers, programs, strict=True)):
            model = sim.pump(kind.address(i)).model
            settings = RunSettings(journal_dir=journal_dir, channel=f"pump{i}", poll_s=poll_s)
            ctls.append(InfusionController(driver, program, settings, clock=clock,
                                           volume_sensor=ModelBalance(model) if with_sensors
                                           else None))
        return await run_channels(ctls)


def test_a_line_of_five_pumps_runs_five_plans_at_once(sim_kind: SimKind, tmp_path: Path) -> None:
    """Five pumps daisy-chained on one serial line (five addresses, one request in flight)."""
    plans = [STANDARD_PLAN, PLANS_DIR / "ketamine-0.2mgkg-40min.yaml",
             PLANS_DIR / "ketamine-0.4mgkg-40min.yaml", PLANS_DIR / "saline-placebo-40min.yaml",
             PLANS_DIR / "ketamine-stepped-0.5mgkg-40min.yaml"]
    programs = [compile_seed(p) for p in plans]

    async def main() -> tuple[list[RunResult], list[float]]:
        clock = LoopClock()
        async with sim_kind.build(clock, [PumpSetup() for _ in programs]) as sim:
            results = await _run_on_one_line(sim_kind, sim, clock, programs, tmp_path,
                                             poll_s=2.0, with_sensors=True)
            return results, [sim.pump(sim_kind.address(i)).model.infused_ml
                             for i in range(len(programs))]

    results, counters = run_clock(main(), virtual=True)
    assert [r.outcome for r in results] == ["completed"] * 5, [r.reason for r in results]
    for r, program, counter in zip(results, programs, counters, strict=True):
        assert abs(r.delivered_volume_ml - program.total_volume_ml) <= 0.01
        assert abs(counter - program.total_volume_ml) <= 0.01
        assert r.duration_s < program.duration_s + 5  # concurrently, not one after another
    assert len({r.run_id for r in results}) == 5
    assert {read_records(r.journal_path)[0]["pump"]["address"] for r in results} == {
        sim_kind.address(i) for i in range(5)}


def test_active_and_placebo_stop_together_on_a_fault(sim_kind: SimKind, tmp_path: Path) -> None:
    """Blinded pair: an occlusion on the active syringe stops the placebo too."""
    active = compile_seed(STANDARD_PLAN)
    placebo = compile_seed(PLANS_DIR / "saline-placebo-40min.yaml")

    async def main() -> tuple[list[RunResult], list[bool]]:
        clock = LoopClock()
        sims = [sim_kind.build(clock, [PumpSetup()]) for _ in range(2)]
        async with sims[0], sims[1], contextlib.AsyncExitStack() as stack:
            sims[0].inject(parse_fault("occlusion@15m"))
            ctls = []
            for name, sim, program in zip(("active", "placebo"), sims, (active, placebo),
                                          strict=True):
                (driver,) = await stack.enter_async_context(
                    sim_kind.open_drivers(sim, clock, "memory", tmp_path, 1, None))
                ctls.append(InfusionController(
                    driver, program, RunSettings(journal_dir=tmp_path, channel=name),
                    clock=clock))
            results = await run_channels(ctls, stop_all_on_fault=True)
            await asyncio.sleep(60)  # nothing keeps running afterwards
            return results, [s.pump(sim_kind.address(0)).model.running for s in sims]

    results, running = run_clock(main(), virtual=True)
    assert [r.outcome for r in results] == ["faulted", "aborted"]
    assert running == [False, False]
    assert results[1].reason == "linked channel active faulted"
    assert results[1].delivered_volume_ml < 35.0 * 0.5


def test_a_silent_pump_does_not_hold_up_the_others_on_its_line(
        sim_kind: SimKind, tmp_path: Path) -> None:
    """Pump 1 stops answering 10 min in: its run faults (no valid status), while pumps 0 and
    2 on the same line complete with their polls on time (virtual time, so exact)."""
    programs = [compile_seed(STANDARD_PLAN) for _ in range(3)]

    async def main() -> list[RunResult]:
        clock = LoopClock()
        async with sim_kind.build(clock, [PumpSetup() for _ in range(3)]) as sim:
            sim.pump(sim_kind.address(1)).inject(parse_fault("drop-replies@10m:count=-1"))
            return await _run_on_one_line(sim_kind, sim, clock, programs, tmp_path)

    results = run_clock(main(), virtual=True)
    assert [r.outcome for r in results] == ["completed", "faulted", "completed"]
    assert results[1].alarms[0]["kind"] == "no_status"
    for healthy in (results[0], results[2]):
        # The silent pump holds the line for at most one request timeout (1 s) at a time; the
        # wait for its owed replies happens off the line. So no healthy poll falls a whole
        # poll interval behind (holding the line during that wait made them 2-3 s late).
        assert max(healthy.poll_lateness_s) < 1.0, max(healthy.poll_lateness_s)


def test_channels_start_spread_over_one_poll_interval(sim_kind: SimKind,
                                                     tmp_path: Path) -> None:
    """Four channels start a quarter poll apart, so their polls never fall in one instant;
    a stop asked for before a channel's turn ends it before its pump is started."""
    program = compile_seed(STANDARD_PLAN)

    async def main() -> list[RunResult]:
        clock = LoopClock()
        async with sim_kind.build(clock, [PumpSetup() for _ in range(4)]) as sim, \
                sim_kind.open_drivers(sim, clock, "memory", tmp_path, 4, None) as drivers:
            ctls = [InfusionController(driver, program,
                                       RunSettings(journal_dir=tmp_path, channel=f"pump{i}",
                                                   poll_s=2.0), clock=clock)
                    for i, driver in enumerate(drivers)]
            loop = asyncio.get_running_loop()
            loop.call_later(0.1, ctls[3].request_stop, "changed my mind", "operator")
            loop.call_later(60, request_stop_all, ctls[:3], "enough", "operator")
            return await run_channels(ctls)

    results = run_clock(main(), virtual=True)
    journals = [read_records(r.journal_path) for r in results]
    started = [next(r["t"] for r in recs if r["type"] == "state" and r["state"] == "started")
               for recs in journals[:3]]
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert gaps == [pytest.approx(0.5, abs=0.05)] * 2  # 2 s poll / 4 channels
    assert [r.outcome for r in results] == ["aborted"] * 4
    assert results[3].delivered_volume_ml == 0
    assert not any(r["type"] == "command" and r["op"] == "run" for r in journals[3])

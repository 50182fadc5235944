"""Several pumps in one process: one controller task per channel, on the simulator."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from pumpctl.clock import LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.drivers.sensors import ModelBalance
from pumpctl.journal import read_records
from pumpctl.plan.program import RateProgram
from pumpctl.run.controller import InfusionController, RunResult
from pumpctl.run.fleet import request_stop_all, run_channels
from simulators.faults import parse_fault
from simulators.newera import NewEraSimulator, SimPumpConfig
from simulators.serve import memory_bus

from .conftest import PLANS_DIR, STANDARD_PLAN, compile_seed


async def _run_on_one_line(sim: NewEraSimulator, clock: LoopClock, programs: list[RateProgram],
                           journal_dir: Path, *, poll_s: float = 1.0,
                           with_sensors: bool = False) -> list[RunResult]:
    """One controller per program, for the pumps at addresses 0, 1, ... of `sim`, all on one
    shared in-memory line (one request in flight at a time)."""
    bus = memory_bus(sim, clock=clock)
    try:
        ctls = []
        for i, program in enumerate(programs):
            driver = bus.pump(i)
            await driver.open()
            sensor = ModelBalance(sim.pump(i).model) if with_sensors else None
            ctls.append(InfusionController(driver, program, journal_dir=journal_dir, clock=clock,
                                           channel=f"pump{i}", poll_s=poll_s,
                                           volume_sensor=sensor))
        return await run_channels(ctls)
    finally:
        await bus.close()


def test_a_line_of_five_pumps_runs_five_plans_at_once(tmp_path: Path) -> None:
    """Five pumps daisy-chained on one serial line (addresses 0-4, one request in flight)."""
    plans = [STANDARD_PLAN, PLANS_DIR / "ketamine-0.2mgkg-40min.yaml",
             PLANS_DIR / "ketamine-0.4mgkg-40min.yaml", PLANS_DIR / "saline-placebo-40min.yaml",
             PLANS_DIR / "ketamine-stepped-0.5mgkg-40min.yaml"]
    programs = [compile_seed(p) for p in plans]

    async def main() -> tuple[list[RunResult], list[float]]:
        clock = LoopClock()
        configs = [SimPumpConfig(address=i) for i in range(len(programs))]
        async with NewEraSimulator(clock, configs) as sim:
            results = await _run_on_one_line(sim, clock, programs, tmp_path, poll_s=2.0,
                                             with_sensors=True)
            return results, [sim.pump(i).model.infused_ml for i in range(len(programs))]

    results, counters = run_clock(main(), virtual=True)
    assert [r.outcome for r in results] == ["completed"] * 5, [r.reason for r in results]
    for r, program, counter in zip(results, programs, counters, strict=True):
        assert abs(r.delivered_volume_ml - program.total_volume_ml) <= 0.01
        assert abs(counter - program.total_volume_ml) <= 0.01
        assert r.duration_s < program.duration_s + 5  # concurrently, not one after another
    assert len({r.run_id for r in results}) == 5
    assert {read_records(r.journal_path)[0]["pump"]["address"] for r in results} == set(range(5))


def test_active_and_placebo_stop_together_on_a_fault(tmp_path: Path) -> None:
    """Blinded pair: an occlusion on the active syringe stops the placebo too."""
    active = compile_seed(STANDARD_PLAN)
    placebo = compile_seed(PLANS_DIR / "saline-placebo-40min.yaml")

    async def main() -> tuple[list[RunResult], list[bool]]:
        clock = LoopClock()
        sims = [NewEraSimulator(clock, [SimPumpConfig()]) for _ in range(2)]
        async with sims[0], sims[1]:
            sims[0].inject(parse_fault("occlusion@15m"))
            buses = [memory_bus(s, clock=clock) for s in sims]
            try:
                ctls = []
                for name, bus, program in zip(("active", "placebo"), buses, (active, placebo),
                                              strict=True):
                    driver = bus.pump(0)
                    await driver.open()
                    ctls.append(InfusionController(driver, program, journal_dir=tmp_path,
                                                   clock=clock, channel=name))
                results = await run_channels(ctls, stop_all_on_fault=True)
                await asyncio.sleep(60)  # nothing keeps running afterwards
            finally:
                for bus in buses:
                    await bus.close()
            return results, [s.pump(0).model.running for s in sims]

    results, running = run_clock(main(), virtual=True)
    assert [r.outcome for r in results] == ["faulted", "aborted"]
    assert running == [False, False]
    assert results[1].reason == "linked channel active faulted"
    assert results[1].delivered_volume_ml < 35.0 * 0.5


def test_a_silent_pump_does_not_hold_up_the_others_on_its_line(tmp_path: Path) -> None:
    """Pump 1 stops answering 10 min in: its run faults (no valid status), while pumps 0 and
    2 on the same line complete with their polls on time (virtual time, so exact)."""
    programs = [compile_seed(STANDARD_PLAN) for _ in range(3)]

    async def main() -> list[RunResult]:
        clock = LoopClock()
        async with NewEraSimulator(clock, [SimPumpConfig(address=i) for i in range(3)]) as sim:
            sim.pump(1).inject(parse_fault("drop-replies@10m:count=-1"))
            return await _run_on_one_line(sim, clock, programs, tmp_path)

    results = run_clock(main(), virtual=True)
    assert [r.outcome for r in results] == ["completed", "faulted", "completed"]
    assert results[1].alarms[0]["kind"] == "no_status"
    for healthy in (results[0], results[2]):
        # The silent pump holds the line for at most one request timeout (1 s) at a time; the
        # wait for its owed replies happens off the line. So no healthy poll falls a whole
        # poll interval behind (holding the line during that wait made them 2-3 s late).
        assert max(healthy.poll_lateness_s) < 1.0, max(healthy.poll_lateness_s)


def test_channels_start_spread_over_one_poll_interval(tmp_path: Path) -> None:
    """Four channels start a quarter poll apart, so their polls never fall in one instant;
    a stop asked for before a channel's turn ends it before its pump is started."""
    program = compile_seed(STANDARD_PLAN)

    async def main() -> list[RunResult]:
        clock = LoopClock()
        async with NewEraSimulator(clock, [SimPumpConfig(address=i) for i in range(4)]) as sim:
            bus = memory_bus(sim, clock=clock)
            try:
                ctls = []
                for i in range(4):
                    driver = bus.pump(i)
                    await driver.open()
                    ctls.append(InfusionController(driver, program, journal_dir=tmp_path,
                                                   clock=clock, channel=f"pump{i}", poll_s=2.0))
                asyncio.get_running_loop().call_later(
                    0.1, ctls[3].request_stop, "changed my mind", "operator")
                asyncio.get_running_loop().call_later(
                    60, request_stop_all, ctls[:3], "enough", "operator")
                return await run_channels(ctls)
            finally:
                await bus.close()

    results = run_clock(main(), virtual=True)
    journals = [read_records(r.journal_path) for r in results]
    started = [next(r["t"] for r in recs if r["type"] == "state" and r["state"] == "started")
               for recs in journals[:3]]
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert gaps == [pytest.approx(0.5, abs=0.05)] * 2  # 2 s poll / 4 channels
    assert [r.outcome for r in results] == ["aborted"] * 4
    assert results[3].delivered_volume_ml == 0
    assert not any(r["type"] == "command" and r["op"] == "run" for r in journals[3])

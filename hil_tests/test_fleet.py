"""Several pumps in one process: one controller task per channel, on the simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pumpctl.clock import LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.controller import InfusionController, RunResult
from pumpctl.fleet import run_channels
from pumpctl.journal import read_records
from pumpctl.sensors import ModelBalance
from simulators.faults import parse_fault
from simulators.newera import NewEraSimulator, SimPumpConfig
from simulators.serve import memory_bus

from .conftest import PLANS_DIR, STANDARD_PLAN, compile_seed


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
            bus = memory_bus(sim, clock=clock)
            try:
                ctls = []
                for i, program in enumerate(programs):
                    driver = bus.pump(i)
                    await driver.open()
                    ctls.append(InfusionController(
                        driver, program, journal_dir=tmp_path, clock=clock, channel=f"pump{i}",
                        poll_s=2.0,
                        volume_sensor=ModelBalance(sim.pump(i).model)))
                results = await run_channels(ctls)
            finally:
                await bus.close()
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

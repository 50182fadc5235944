"""Resume chains (issue 9 item 1): a run is resumed at most once, only the latest link of its
chain can be resumed, the decision counts everything the chain delivered, and two resumes
started at once cannot both win."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pumpctl.clock import run as run_clock
from pumpctl.run.controller import InfusionController, RunResult
from pumpctl.run.resume import ResumeRefused, load_journal_state, reconcile

from .fakes import FakeDriver, FakePump, make_program

PLAN_ML = 35.0


class MeteredDriver(FakeDriver):
    """A `FakeDriver` that remembers what its pump delivered before each counter clear, so a
    test can add up everything that left the syringe across runs."""

    def __init__(self, pump: FakePump) -> None:
        super().__init__(pump)
        self.cleared_ml = 0.0

    async def clear_counters(self) -> None:
        self.cleared_ml += self.pump.infused
        await super().clear_counters()

    @property
    def total_ml(self) -> float:
        return self.cleared_ml + self.pump.infused


def kill_when(journal_dir: Path, driver: MeteredDriver, *, counter_ml: float,
              resume_ref: str | None = None) -> Path:
    """Run (or resume `resume_ref`) until the pump's counter reaches `counter_ml`, then end it
    as a killed process leaves it: pump stopped by its watchdog, journal cut after the last
    sample."""
    async def main() -> RunResult:
        point, program = None, make_program()
        if resume_ref is not None:
            state = load_journal_state(journal_dir, resume_ref)
            point, program = await reconcile(state, driver), state.program
        ctl = InfusionController(driver, program, journal_dir=journal_dir, watchdog_s=5,
                                 resume=point)
        task = asyncio.create_task(ctl.run())
        await asyncio.sleep(5.0)  # past the counter clear of the run's preparation
        while driver.pump.infused < counter_ml:
            await asyncio.sleep(1.0)
        ctl.request_stop("killed", "test")
        return await task

    path = run_clock(main(), virtual=True).journal_path
    lines = path.read_text().splitlines()
    last = max(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "sample")
    path.write_text("\n".join(lines[: last + 1]) + "\n")
    return path


def resume_to_the_end(journal_dir: Path, ref: str, driver: MeteredDriver) -> RunResult:
    async def main() -> RunResult:
        state = load_journal_state(journal_dir, ref)
        point = await reconcile(state, driver)
        return await InfusionController(driver, state.program, journal_dir=journal_dir,
                                        resume=point).run()

    return run_clock(main(), virtual=True)


def new_pump() -> MeteredDriver:
    async def make() -> MeteredDriver:
        return MeteredDriver(FakePump())

    return run_clock(make(), virtual=True)


def test_resuming_an_already_resumed_run_is_refused(tmp_path: Path) -> None:
    """The reported over-delivery: A interrupted at 10 mL, resumed as B, B killed when the
    pump's counter matched A's journaled 10 mL, `--resume A` accepted again: 45 mL for a
    35 mL plan, exit 0. Now A is refused (only the chain's latest link, B, may go on) and
    resuming B delivers exactly the rest."""
    driver = new_pump()
    a = kill_when(tmp_path, driver, counter_ml=10.0)
    journaled_a = json.loads(a.read_text().splitlines()[-1])["infused_ml"]
    b = kill_when(tmp_path, driver, counter_ml=journaled_a, resume_ref=a.stem)
    assert driver.total_ml == pytest.approx(2 * journaled_a, abs=0.1)
    try:
        again = resume_to_the_end(tmp_path, a.stem, driver)
    except ResumeRefused as exc:
        refused = str(exc)
    else:
        pytest.fail(f"--resume {a.stem} accepted again: {again.outcome}, the pump delivered "
                    f"{driver.total_ml:.1f} mL for a {PLAN_ML:g} mL plan")
    assert f"resumed as {b.stem}" in refused and f"--resume {b.stem}" in refused
    result = resume_to_the_end(tmp_path, b.stem, driver)
    assert result.outcome == "completed", result.reason
    assert driver.total_ml == pytest.approx(PLAN_ML, abs=0.011)
    assert result.delivered_volume_ml == pytest.approx(PLAN_ML, abs=0.011)

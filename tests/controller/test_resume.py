"""Resume reconciliation: the journal of a dead controller against the pump's counter."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from pumpctl.clock import run as run_clock
from pumpctl.drivers.base import PumpCapabilities, PumpState
from pumpctl.drivers.fake import IDEAL, FakeDriver, FakePump
from pumpctl.run.controller import InfusionController, ResumePoint, RunResult, RunSettings
from pumpctl.run.resume import JournalState, ResumeRefused, load_journal_state, reconcile

from .programs import make_program


def crashed_run(tmp_path: Path, at_s: float = 900.0) -> tuple[Path, float]:
    """A run journaled until `at_s`, then cut as if the process had been killed."""
    async def main() -> RunResult:
        ctl = InfusionController(FakeDriver(FakePump()), make_program(),
                                 RunSettings(journal_dir=tmp_path, watchdog_s=5))
        task = asyncio.create_task(ctl.run())
        await asyncio.sleep(at_s)
        ctl.request_stop("simulated crash", "test")
        return await task

    result = run_clock(main(), virtual=True)
    lines = result.journal_path.read_text().splitlines()
    last_sample = max(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "sample")
    result.journal_path.write_text("\n".join(lines[: last_sample + 1]) + "\n")
    return result.journal_path, json.loads(lines[last_sample])["infused_ml"]


def reconcile_with(path: Path, pump: FakePump, capabilities: PumpCapabilities = IDEAL,
                   ) -> tuple[JournalState, ResumePoint]:
    async def main() -> tuple[JournalState, ResumePoint]:
        state = load_journal_state(path.parent, path.stem)
        return state, await reconcile(state, FakeDriver(pump, capabilities=capabilities))

    return run_clock(main(), virtual=True)


def test_watchdog_stopped_pump_reconciles_and_resume_delivers_the_rest(tmp_path: Path) -> None:
    path, journaled = crashed_run(tmp_path)
    state, point = reconcile_with(path, pump := _pump_with(journaled + 0.05))
    assert state.outcome is None and state.watchdog_s == 5
    assert point.baseline_ml == pytest.approx(journaled + 0.05)
    assert point.plan_offset_s == pytest.approx((journaled + 0.05) / 52.5 * 3600)

    async def resume() -> RunResult:
        ctl = InfusionController(FakeDriver(pump), state.program,
                                 RunSettings(journal_dir=tmp_path), resume=point)
        return await ctl.run()

    result = run_clock(resume(), virtual=True)
    assert result.outcome == "completed", result.reason
    assert result.delivered_volume_ml == pytest.approx(35.0, abs=0.011)
    assert pump.infused == pytest.approx(35.0 - point.baseline_ml, abs=0.011)  # only the rest
    assert result.duration_s == pytest.approx(2400 - point.plan_offset_s, abs=3)
    header = json.loads(result.journal_path.read_text().splitlines()[0])
    assert header["resume_of"] == state.run_id and header["baseline_ml"] == point.baseline_ml


def _pump_with(counter_ml: float) -> FakePump:
    async def make() -> FakePump:
        p = FakePump()
        p.infused = counter_ml
        return p

    return run_clock(make(), virtual=True)


@pytest.mark.parametrize("delta", [-1.0, +3.0])
def test_counter_disagreeing_with_the_journal_is_refused(tmp_path: Path, delta: float) -> None:
    path, journaled = crashed_run(tmp_path)
    with pytest.raises(ResumeRefused, match=r"pump counter says .* journal says"):
        reconcile_with(path, _pump_with(journaled + delta))


@pytest.mark.parametrize(("watchdog", "why"), [
    (True, "its watchdog did not stop it"),
    (False, "it has no watchdog: nothing stopped it"),
])
def test_a_pump_still_running_is_stopped_and_refused(tmp_path: Path, watchdog: bool,
                                                     why: str) -> None:
    path, journaled = crashed_run(tmp_path)
    pump = _pump_with(journaled)
    pump.state = PumpState.INFUSING
    capabilities = IDEAL if watchdog else replace(IDEAL, watchdog=None)
    with pytest.raises(ResumeRefused, match=f"still infusing \\({why}"):
        reconcile_with(path, pump, capabilities)
    assert pump.state is PumpState.STOPPED


def test_completed_and_faulted_runs_are_not_resumed(tmp_path: Path) -> None:
    async def main() -> RunResult:
        return await InfusionController(FakeDriver(FakePump()), make_program([(60.0, 60.0)]),
                                        RunSettings(journal_dir=tmp_path)).run()

    done = run_clock(main(), virtual=True)
    with pytest.raises(ResumeRefused, match="already completed"):
        reconcile_with(done.journal_path, _pump_with(1.0))
    text = done.journal_path.read_text().replace('"outcome":"completed"', '"outcome":"faulted"')
    done.journal_path.write_text(text)
    with pytest.raises(ResumeRefused, match="ended faulted"):
        reconcile_with(done.journal_path, _pump_with(1.0))

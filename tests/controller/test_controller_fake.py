"""InfusionController on the product's fake pump (pumpctl.drivers.fake), in virtual time (the
simulator tests are in hil_tests/)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from pumpctl.clock import run as run_clock
from pumpctl.drivers.base import AlarmKind, PumpState
from pumpctl.drivers.fake import FakeDriver, FakePump
from pumpctl.journal import read_records
from pumpctl.run.controller import InfusionController, RunResult, RunSettings
from pumpctl.run.fleet import run_channels

from .programs import make_program


class ListSink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.closed = False

    def emit(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    async def aclose(self) -> None:
        self.closed = True


def _in(journal_dir: Path, **kw: Any) -> RunSettings:
    return RunSettings(journal_dir=journal_dir, **kw)


def drive(tmp_path: Path, steps: list[tuple[float, float]] | None = None, *,
          during: Callable[[FakePump, InfusionController], Coroutine[Any, Any, None]] | None = None,
          sinks: list[Any] | None = None, **kw: Any) -> tuple[RunResult, FakePump, list[dict]]:
    async def main() -> tuple[RunResult, FakePump]:
        pump = FakePump()
        ctl = InfusionController(FakeDriver(pump), make_program(steps),
                                 RunSettings(journal_dir=tmp_path, **kw), sinks=sinks or [])
        task = asyncio.create_task(ctl.run())
        if during is not None:
            await during(pump, ctl)
        return await task, pump

    result, pump = run_clock(main(), virtual=True)
    return result, pump, read_records(result.journal_path)


def types(records: list[dict]) -> list[str]:
    return [r["type"] for r in records]


def states(records: list[dict]) -> list[str]:
    return [r["state"] for r in records if r["type"] == "state"]


def alarms(records: list[dict]) -> list[str]:
    return [r["kind"] for r in records if r["type"] == "alarm"]


def test_standard_plan_completes_and_journals_everything(tmp_path: Path) -> None:
    sink = ListSink()
    result, pump, recs = drive(tmp_path, sinks=[sink])
    assert result.outcome == "completed", result.reason
    assert result.delivered_volume_ml == pytest.approx(35.0, abs=0.001)
    assert pump.state is PumpState.STOPPED and pump.vtbi == 35.0
    assert recs[0]["type"] == "header" and recs[-1]["type"] == "summary"
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    assert sink.records == recs  # every record, in order, after the journal
    h = recs[0]
    assert h["total_volume_ml"] == 35.0 and h["pump"]["model"] == "fake"
    assert h["program"]["segments"][0]["rate_ml_h"] == 52.5
    assert states(recs) == ["started", "stopping", "stopped", "completed"]
    samples = [r for r in recs if r["type"] == "sample"]
    assert 2390 <= len(samples) <= 2410  # 1 Hz over 40 min
    assert all(s["infused_ml"] <= s["planned_ml"] + 0.1 for s in samples)
    mid = samples[1199]
    assert mid["dose_mg_per_kg"] == pytest.approx(mid["dose_mg"] / 70.0)
    assert recs[-1]["outcome"] == "completed" and recs[-1]["delivered_volume_ml"] == 35.0


def test_rate_changes_at_each_segment_boundary(tmp_path: Path) -> None:
    result, _, recs = drive(tmp_path, [(300.0, 120.0), (600.0, 60.0), (900.0, 30.0)])
    assert result.outcome == "completed", result.reason
    assert [r["rate_ml_h"] for r in recs if r["type"] == "segment"] == [120.0, 60.0, 30.0]
    rates = [r["args"]["value"] for r in recs if r["type"] == "command" and r["op"] == "set_rate"]
    assert rates == [120.0, 60.0, 30.0]
    changes = [r for r in recs if r["type"] == "segment"]
    assert changes[1]["elapsed_s"] == pytest.approx(changes[0]["elapsed_s"] + 300.0, abs=0.01)
    assert result.delivered_volume_ml == pytest.approx(27.5, abs=0.001)


def test_poll_interval_is_configurable(tmp_path: Path) -> None:
    _, _, recs = drive(tmp_path, [(600.0, 60.0)], poll_s=5.0)
    samples = [r for r in recs if r["type"] == "sample"]
    assert 118 <= len(samples) <= 122


@pytest.mark.parametrize("bad", [0, -1, float("nan"), 1000])
def test_bad_poll_interval_is_a_usage_error(tmp_path: Path, bad: float) -> None:
    from pumpctl.errors import UsageError

    async def main() -> None:
        InfusionController(FakeDriver(FakePump()), make_program(), _in(tmp_path, poll_s=bad))

    with pytest.raises(UsageError, match="poll interval"):
        run_clock(main(), virtual=True)


async def _at(ctl: InfusionController, seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_pause_and_resume_shift_the_schedule(tmp_path: Path) -> None:
    async def during(pump: FakePump, ctl: InfusionController) -> None:
        await asyncio.sleep(600)
        ctl.request_pause("bathroom", "operator")
        await asyncio.sleep(300)
        assert pump.state is PumpState.PAUSED
        ctl.request_resume("back", "mqtt:dashboard")

    result, _, recs = drive(tmp_path, [(1200.0, 60.0), (600.0, 30.0)], during=during)
    assert result.outcome == "completed", result.reason
    st = [r for r in recs if r["type"] == "state"]
    assert [(r["state"], r["sender"]) for r in st][:3] == [
        ("started", "controller"), ("paused", "operator"), ("resumed", "mqtt:dashboard")]
    seg1 = [r for r in recs if r["type"] == "segment"][1]
    assert seg1["elapsed_s"] == pytest.approx(1200 + 300, abs=1.0)  # shifted by the pause
    assert result.duration_s == pytest.approx(1800 + 300, abs=3.0)


def test_operator_stop_aborts_and_stops_the_pump(tmp_path: Path) -> None:
    async def during(pump: FakePump, ctl: InfusionController) -> None:
        await asyncio.sleep(120)
        ctl.request_stop("enough", "mqtt:lab-ui")

    result, pump, recs = drive(tmp_path, during=during)
    assert result.outcome == "aborted" and pump.state is PumpState.STOPPED
    assert result.stop_confirmed
    assert "remote_stop" in alarms(recs)
    stopping = next(r for r in recs if r["type"] == "state" and r["state"] == "stopping")
    assert stopping["sender"] == "mqtt:lab-ui" and stopping["reason"] == "enough"
    assert 1.6 < result.delivered_volume_ml < 1.9


def test_stop_before_start_never_runs_the_pump(tmp_path: Path) -> None:
    async def main() -> tuple[RunResult, FakePump]:
        pump = FakePump()
        ctl = InfusionController(FakeDriver(pump), make_program(), _in(tmp_path))
        ctl.request_stop("changed my mind", "operator")
        return await ctl.run(), pump

    result, pump = run_clock(main(), virtual=True)
    assert result.outcome == "aborted" and "run" not in pump.log


def test_cancellation_still_stops_the_pump(tmp_path: Path) -> None:
    async def main() -> tuple[FakePump, Path]:
        pump = FakePump()
        ctl = InfusionController(FakeDriver(pump), make_program(), _in(tmp_path))
        task = asyncio.create_task(ctl.run())
        await asyncio.sleep(60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pump, ctl.journal.path if ctl.journal else Path()

    pump, path = run_clock(main(), virtual=True)
    assert pump.state is PumpState.STOPPED
    recs = read_records(path)
    assert recs[-1]["type"] == "summary" and recs[-1]["outcome"] == "aborted"


def _fault(tmp_path: Path, action: Callable[[FakePump], None], at: float = 600.0,
           **kw: Any) -> tuple[RunResult, FakePump, list[dict]]:
    async def during(pump: FakePump, ctl: InfusionController) -> None:
        await asyncio.sleep(at)
        action(pump)

    return drive(tmp_path, during=during, **kw)


def test_occlusion_is_under_infusion(tmp_path: Path) -> None:
    result, pump, recs = _fault(tmp_path, lambda p: setattr(p, "flow_factor", 0.0))
    assert result.outcome == "faulted" and pump.state is PumpState.STOPPED
    assert alarms(recs)[0] == "under_infusion"
    assert result.delivered_volume_ml < 35.0


def test_free_flow_is_over_infusion_and_stops_at_once(tmp_path: Path) -> None:
    result, pump, recs = _fault(tmp_path, lambda p: setattr(p, "flow_factor", 1.5))
    assert result.outcome == "faulted" and pump.state is PumpState.STOPPED
    assert alarms(recs)[0] == "over_infusion"
    # Caught within a few polls of crossing the tolerance (~2 % of ~9 mL), far below 35 mL.
    assert result.delivered_volume_ml < 10.0
    assert result.breach_to_stop_s is not None and result.breach_to_stop_s < 1.0


def test_pump_alarm_stops_and_is_journaled(tmp_path: Path) -> None:
    result, pump, recs = _fault(tmp_path, lambda p: p.raise_alarm(AlarmKind.STALL))
    assert result.outcome == "faulted"
    a = next(r for r in recs if r["type"] == "alarm")
    assert a["kind"] == "pump_alarm" and a["value"] == "stall" and a["source"] == "pump"
    assert pump.state is not PumpState.INFUSING


def test_silence_is_no_status(tmp_path: Path) -> None:
    result, pump, recs = _fault(tmp_path, lambda p: setattr(p, "silent", True))
    assert result.outcome == "faulted"
    assert alarms(recs)[0] == "no_status"
    assert pump.state is PumpState.STOPPED  # the stop command still got through
    errors = [r for r in recs if r["type"] == "command" and r.get("error")]
    assert len(errors) >= 3


def test_rate_changed_behind_the_back(tmp_path: Path) -> None:
    def meddle(p: FakePump) -> None:
        p.rate = 80.0

    result, pump, recs = _fault(tmp_path, meddle)
    assert result.outcome == "faulted" and pump.state is PumpState.STOPPED
    assert alarms(recs)[:2] == ["rate_exceeded", "readback_mismatch"]


def test_unconfirmed_stop_is_an_alarm(tmp_path: Path) -> None:
    def wedge(p: FakePump) -> None:
        p.flow_factor = 2.0
        p.ignore_stop = True

    result, _, recs = _fault(tmp_path, wedge)
    assert result.outcome == "faulted" and not result.stop_confirmed
    assert alarms(recs)[-1] == "pump_error"
    assert "watchdog" in [r for r in recs if r["type"] == "alarm"][-1]["message"]


def test_hardware_stop_at_total_even_without_polls(tmp_path: Path) -> None:
    """The pump's own volume-to-dispense is the remaining plan: the pump stops at the total
    even when the controller polls rarely."""
    result, pump, _ = drive(tmp_path, [(600.0, 60.0)], poll_s=60.0)
    assert result.outcome == "completed"
    assert pump.infused == pytest.approx(10.0)


def test_fleet_runs_channels_concurrently(tmp_path: Path) -> None:
    async def main() -> list[RunResult]:
        ctls = [InfusionController(FakeDriver(FakePump()), make_program([(600.0, 30.0 + i)]),
                                   _in(tmp_path, channel=f"pump{i}")) for i in range(5)]
        return await run_channels(ctls)

    results = run_clock(main(), virtual=True)
    assert [r.outcome for r in results] == ["completed"] * 5
    floored = [5.0, 5.166, 5.333, 5.5, 5.666]  # volume to dispense floored to the pump format
    assert [round(r.delivered_volume_ml, 3) for r in results] == floored
    assert all(r.duration_s < 620 for r in results)  # concurrent, not one after another


def test_linked_channels_stop_together(tmp_path: Path) -> None:
    async def main() -> tuple[list[RunResult], list[FakePump]]:
        pumps = [FakePump(), FakePump()]
        ctls = [InfusionController(FakeDriver(p), make_program(), _in(tmp_path, channel=name))
                for p, name in zip(pumps, ("active", "placebo"), strict=True)]

        async def occlude() -> None:
            await asyncio.sleep(300)
            pumps[0].flow_factor = 3.0

        occ = asyncio.create_task(occlude())
        res = await run_channels(ctls, stop_all_on_fault=True)
        await occ
        return res, pumps

    results, pumps = run_clock(main(), virtual=True)
    assert [r.outcome for r in results] == ["faulted", "aborted"]
    assert all(p.state is PumpState.STOPPED for p in pumps)
    assert results[1].reason.startswith("linked channel active faulted")


def test_sinks_added_later_and_notes_from_other_components(tmp_path: Path) -> None:
    """Telemetry is built after the controller (it needs its hooks) and journals remote
    commands through `journal_note`; a note before the header waits for it."""
    sink = ListSink()

    async def main() -> RunResult:
        ctl = InfusionController(FakeDriver(FakePump()), make_program([(60.0, 60.0)]),
                                 _in(tmp_path))
        ctl.add_sink(sink)
        ctl.journal_note({"type": "command", "op": "remote_command", "args": {"command": "x"},
                          "sender": "mqtt:alice", "result": "accepted"})
        task = asyncio.create_task(ctl.run())
        await asyncio.sleep(30)
        ctl.journal_note({"type": "command", "op": "remote_command", "args": {}, "sender":
                          "mqtt:bob", "error": "refused: not allowed"})
        with pytest.raises(RuntimeError):
            ctl.add_sink(ListSink())
        return await task

    result = run_clock(main(), virtual=True)
    recs = read_records(result.journal_path)
    assert sink.records == recs and recs[0]["type"] == "header"
    notes = [r for r in recs if r.get("op") == "remote_command"]
    assert [n["sender"] for n in notes] == ["mqtt:alice", "mqtt:bob"]
    assert notes[0]["seq"] == 1 and notes[1]["elapsed_s"] >= 30


def test_a_failing_journal_stops_the_pump(tmp_path: Path) -> None:
    """Disk full or an I/O error: a run that cannot be recorded must not go on."""
    from pumpctl.journal import JournalError

    def disk_full(line: bytes, *, durable: bool) -> None:
        raise JournalError("cannot write journal: No space left on device")

    async def main() -> tuple[RunResult, FakePump]:
        pump = FakePump()
        ctl = InfusionController(FakeDriver(pump), make_program(), _in(tmp_path))
        task = asyncio.create_task(ctl.run())
        await asyncio.sleep(300)
        assert ctl.journal is not None
        ctl.journal._append = disk_full  # type: ignore[method-assign]
        return await task, pump

    result, pump = run_clock(main(), virtual=True)
    assert pump.state is PumpState.STOPPED and "stop" in pump.log
    assert result.outcome == "faulted" and "journal failed" in result.reason
    # The alarm the journal could not take is still counted (the summary said "alarms: none").
    assert [a["kind"] for a in result.alarms] == ["controller_error"]


def test_hung_status_call_times_out_and_stops(tmp_path: Path) -> None:
    """A driver whose status never returns: each poll gives up after the no-status window,
    the silence becomes a no_status alarm, and the pump is still stopped."""
    result, pump, recs = _fault(tmp_path, lambda p: setattr(p, "status_delay_s", math.inf))
    assert result.outcome == "faulted"
    assert alarms(recs)[0] == "no_status"
    assert pump.state is PumpState.STOPPED
    timed_out = [r for r in recs if r["type"] == "command" and r["op"] == "status"
                 and r.get("error_type") == "TimeoutError"]
    assert timed_out and timed_out[0]["error"] == "timed out"
    # The first status after the hang gives up exactly one window (5 s) after it was asked.
    samples = [r["elapsed_s"] for r in recs if r["type"] == "sample"]
    assert timed_out[0]["elapsed_s"] == pytest.approx(samples[-1] + 1.0 + 5.0, abs=1e-3)
    alarm = next(r for r in recs if r["type"] == "alarm")
    assert alarm["elapsed_s"] - samples[-1] < 15.0


def test_slow_status_within_the_window_is_fine(tmp_path: Path) -> None:
    """Answers that take most of the window (4 of 5 s) are late, not missing."""
    result, _, recs = _fault(tmp_path, lambda p: setattr(p, "status_delay_s", 4.0),
                                at=2300.0, poll_s=2.0, stop_timeout_s=5.0)
    assert result.outcome == "completed", result.reason
    assert not alarms(recs)
    assert not [r for r in recs if r["type"] == "command" and r.get("error")]


def test_cancel_during_a_hung_status_is_not_taken_for_a_timeout(tmp_path: Path) -> None:
    """Cancelling the controller (Ctrl-C, SIGTERM) while a status call hangs must cancel it:
    the pump is stopped and the cancellation goes on, it is not swallowed as a timeout."""
    async def main() -> tuple[bool, FakePump, Path]:
        pump = FakePump()
        ctl = InfusionController(FakeDriver(pump), make_program(None), _in(tmp_path))
        task = asyncio.create_task(ctl.run())
        await asyncio.sleep(600.0)
        pump.status_delay_s = math.inf
        await asyncio.sleep(3.5)  # inside the hung call, before its 5 s window ends
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            cancelled = True
        else:
            cancelled = False
        assert ctl.journal is not None
        return cancelled, pump, ctl.journal.path

    cancelled, pump, path = run_clock(main(), virtual=True)
    recs = read_records(path)
    assert cancelled
    assert pump.state is PumpState.STOPPED
    # The stop went out, but the hung status could not confirm it: an unconfirmed stop is a
    # fault (exit 6), whoever asked for the stop.
    assert pump.log[-1] == "stop" and states(recs)[-1] == "faulted"
    assert [r["message"][:18] for r in recs if r["type"] == "alarm"] == ["stop not confirmed"]
    assert not [r for r in recs if r["type"] == "command" and r.get("error_type") == "TimeoutError"]


def test_a_bug_in_the_end_sequence_still_stops_and_summarises(tmp_path: Path) -> None:
    """Issue 9 item 3, "any unhandled exception": a driver that raises something that is not a
    `PumpError` while the run is being wound up (here: disarming the watchdog). The run still
    ends with the pump stopped and confirmed, the bug journaled as an alarm and a faulted
    summary, instead of the exception escaping past the summary."""
    class BuggyDisarm(FakeDriver):
        async def set_watchdog(self, seconds: int) -> None:
            if seconds == 0:
                raise TypeError("driver bug")
            await super().set_watchdog(seconds)

    async def main() -> tuple[RunResult, FakePump]:
        pump = FakePump()
        ctl = InfusionController(BuggyDisarm(pump), make_program([(60.0, 60.0)]),
                                 RunSettings(journal_dir=tmp_path, watchdog_s=5))
        return await ctl.run(), pump

    result, pump = run_clock(main(), virtual=True)
    records = read_records(result.journal_path)
    assert result.outcome == "faulted" and result.stop_confirmed
    assert pump.state is PumpState.STOPPED
    alarm = next(r for r in records if r["type"] == "alarm")
    assert alarm["kind"] == "controller_error"
    assert alarm["message"] == "TypeError while ending the run: driver bug"
    assert records[-1]["type"] == "summary" and records[-1]["outcome"] == "faulted"

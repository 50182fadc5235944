"""The driver contract's capabilities: what they say, where New Era's come from, and the
controller's paths for pumps that lack a volume cap, a watchdog or pause (on the product's
fake driver configured without them)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from pumpctl.clock import run as run_clock
from pumpctl.drivers.base import (
    Counters,
    NumberFormat,
    PumpCapabilities,
    PumpDriver,
    PumpState,
    RateFormat,
    Resolution,
    VolumeCap,
    WatchdogRange,
)
from pumpctl.drivers.fake import IDEAL, FakeDriver, FakePump, decimal_display
from pumpctl.drivers.newera import codec
from pumpctl.journal import read_records
from pumpctl.run.controller import InfusionController, RunResult, RunSettings
from pumpctl.run.display import RunDisplay

from .programs import NEWERA, make_program

PROFILE = Path(__file__).resolve().parents[2] / "configs" / "pumps" / "newera-ne1000.yaml"
NO_CAP = PumpCapabilities(volume_cap=None, watchdog=WatchdogRange(1, 255), pause=True)
BARE = PumpCapabilities(volume_cap=None, watchdog=None, pause=False,
                        counters=Counters(withdrawn=False))


# ---- what the capabilities say -------------------------------------------------------------


def test_newera_capabilities_are_the_profiles_numbers() -> None:
    """The 4-digit rule, the rate units and the resolution are read from the profile file."""
    profile = yaml.safe_load(PROFILE.read_text())
    digits = NumberFormat(**profile["number_format"])
    assert NEWERA.rates.digits == digits
    assert [code for code, _ in NEWERA.rates.units] == list(profile["rate_units"])
    assert dict(NEWERA.rates.units)["UM"] == Fraction(6, 100)  # 1 µL/min in mL/h
    assert NEWERA.rates.units_change_while_running is profile["rate_units_change_while_running"]
    assert NEWERA.counters.resolution == Resolution(0.001, digits)
    assert NEWERA.volume_cap is not None and NEWERA.volume_cap.resolution.digits == digits
    assert NEWERA.watchdog == WatchdogRange(1, 255) and NEWERA.pause


@settings(max_examples=300)
@given(st.integers(1, 99_999_999), st.integers(0, 6), st.sampled_from(list(codec.RateUnit)))
def test_profile_and_codec_agree_on_what_a_rate_can_be(n: int, decimals: int,
                                                       unit: codec.RateUnit) -> None:
    """Two descriptions of the same pump (the profile above the line, the codec below it)
    must never disagree about whether a rate can be written."""
    rate = n / 10**decimals
    assert NEWERA.rates.expresses(rate, unit.value) == codec.is_expressible(rate / unit.ml_h)


@pytest.mark.parametrize(("v", "expected"), [(35.0, 35.0), (17.4567, 17.45), (0.12345, 0.123),
                                             (123.456, 123.4), (5.1666666, 5.166), (0.0, 0.0)])
def test_volume_cap_is_floored_to_the_pump_format(v: float, expected: float) -> None:
    assert NEWERA.volume_cap is not None
    assert NEWERA.volume_cap.resolution.floor(v) == pytest.approx(expected)
    assert Resolution(0.001).floor(123.456) == pytest.approx(123.456)  # a float register


def test_one_unit_for_every_rate_of_a_program() -> None:
    """Issue 9 item 6: 85.56 mL/h is writable in mL/h, 53.472 only in µL/min; a pump that
    cannot change units while running needs one unit for both, and µL/min writes both."""
    rates = NEWERA.rates
    assert rates.unit_for([85.56]) == "MH" and rates.unit_for([85.56, 53.472, 53.478]) == "UM"
    assert rates.problem([85.56, 53.472]) is None
    assert "cannot be written" in str(rates.problem([53.4751]))
    two_units = RateFormat((("MH", Fraction(1)), ("UH", Fraction(1, 1000))), NumberFormat(4, 3),
                           units_change_while_running=False)
    assert "no single rate unit" in str(two_units.problem([1500.0, 0.1255]))
    assert RateFormat(two_units.units, two_units.digits).problem([1500.0, 0.1255]) is None


def test_the_fake_and_the_newera_driver_are_pump_drivers() -> None:
    from pumpctl.drivers.newera.bus import NewEraBus
    from pumpctl.drivers.newera.driver import NewEraDriver

    class _Line:
        def write(self, data: bytes) -> None: ...

        def close(self) -> None: ...

    async def main() -> None:
        assert isinstance(FakeDriver(), PumpDriver)
        assert isinstance(NewEraDriver(NewEraBus(None, _Line()), 0), PumpDriver)

    run_clock(main(), virtual=True)


# ---- the controller on pumps that lack something --------------------------------------------


def _run(tmp_path: Path, caps: PumpCapabilities, steps: list[tuple[float, float]] | None = None,
         *, during: Callable[[FakePump, InfusionController], Coroutine[Any, Any, None]] | None
         = None, **kw: Any) -> tuple[RunResult, FakePump, list[dict[str, Any]]]:
    async def main() -> tuple[RunResult, FakePump]:
        pump = FakePump()
        ctl = InfusionController(FakeDriver(pump, capabilities=caps), make_program(steps),
                                 RunSettings(journal_dir=tmp_path, **kw))
        task = asyncio.create_task(ctl.run())
        if during is not None:
            await during(pump, ctl)
        return await task, pump

    result, pump = run_clock(main(), virtual=True)
    return result, pump, read_records(result.journal_path)


def _ops(records: list[dict[str, Any]]) -> list[str]:
    return [r["op"] for r in records if r["type"] == "command"]


@pytest.mark.parametrize("poll_s", [1.0, 7.0])
def test_without_a_volume_cap_the_controller_stops_at_the_total(tmp_path: Path,
                                                                poll_s: float) -> None:
    result, pump, recs = _run(tmp_path, NO_CAP, [(600.0, 60.0), (1200.0, 30.0)], poll_s=poll_s)
    assert result.outcome == "completed", result.reason
    assert "set_volume_limit" not in _ops(recs)
    assert pump.log[-1] == "stop" and pump.state is PumpState.STOPPED
    # Stopped by the controller when the program is through, whatever the poll interval:
    # within one resolution step of the plan.
    assert pump.infused == pytest.approx(20.0, abs=0.001)
    assert result.delivered_volume_ml == pytest.approx(20.0, abs=0.001)
    assert recs[0]["pump_capabilities"]["volume_cap"] is None
    assert all(s["vtbi_ml"] is None for s in recs if s["type"] == "sample")


def test_the_hardware_cap_is_what_stops_a_capped_pump(tmp_path: Path) -> None:
    """The contrast: with a volume cap and rare polls the pump stops itself at the total."""
    result, pump, recs = _run(tmp_path, IDEAL, [(600.0, 60.0)], poll_s=60.0)
    assert result.outcome == "completed"
    assert "set_volume_limit" in _ops(recs) and pump.vtbi == 10.0
    assert pump.log[-2:] == ["run", "stop"]  # the pump stopped itself; stop only confirms


def test_a_pump_without_a_cap_that_runs_fast_is_stopped_at_the_total(tmp_path: Path) -> None:
    async def fast(pump: FakePump, ctl: InfusionController) -> None:
        await asyncio.sleep(500)
        pump.flow_factor = 1.01  # counts 1 % ahead of the plan: inside the tolerance

    result, pump, _ = _run(tmp_path, NO_CAP, [(600.0, 60.0)], during=fast)
    assert result.outcome == "completed", result.reason
    # Stopped when its counter reached the total, before the program's end: at most one
    # poll's worth over.
    assert 10.0 - 0.001 <= pump.infused <= 10.0 + 60.0 * 1.01 / 3600
    assert result.duration_s < 600.0


def test_watchdog_asked_of_a_pump_without_one_is_refused_before_it_moves(tmp_path: Path) -> None:
    result, pump, recs = _run(tmp_path, BARE, watchdog_s=5)
    assert result.outcome == "faulted" and "run" not in pump.log
    alarm = next(r for r in recs if r["type"] == "alarm")
    assert alarm["kind"] == "command_refused" and "no watchdog" in alarm["message"]


def test_watchdog_outside_the_pumps_range_is_refused(tmp_path: Path) -> None:
    caps = PumpCapabilities(watchdog=WatchdogRange(10, 60))
    result, pump, recs = _run(tmp_path, caps, watchdog_s=5)
    assert result.outcome == "faulted" and "run" not in pump.log
    assert "10-60 s" in next(r for r in recs if r["type"] == "alarm")["message"]


def test_no_watchdog_is_in_the_header_and_on_the_console(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    display = RunDisplay(console)

    async def main() -> RunResult:
        ctl = InfusionController(FakeDriver(capabilities=BARE), make_program([(60.0, 60.0)]),
                                 RunSettings(journal_dir=tmp_path), sinks=[display])
        return await ctl.run()

    result = run_clock(main(), virtual=True)
    header = read_records(result.journal_path)[0]
    assert header["pump_capabilities"]["watchdog"] is None
    text = console.export_text()
    assert "no watchdog of its own: if pumpctl dies, nothing stops it\n" in text
    assert "no volume limit of its own" in text
    console = Console(record=True, width=120)
    RunDisplay(console).emit({**header, "pump_capabilities": NEWERA.as_record()})
    assert console.export_text() == ""  # a pump with both says nothing


def test_a_pump_that_cannot_pause_is_stopped_and_its_cap_set_again(tmp_path: Path) -> None:
    caps = PumpCapabilities(pause=False, watchdog=None)

    async def pause(pump: FakePump, ctl: InfusionController) -> None:
        await asyncio.sleep(600)
        ctl.request_pause("bathroom", "operator")
        await asyncio.sleep(300)
        assert pump.state is PumpState.STOPPED and pump.phase_ml == 0.0
        ctl.request_resume("back", "operator")

    result, pump, recs = _run(tmp_path, caps, [(1200.0, 60.0)], during=pause)
    assert result.outcome == "completed", result.reason
    assert "pause" not in pump.log and pump.log.count("run") == 2
    caps_set = [r["args"]["value"] for r in recs if r.get("op") == "set_volume_limit"]
    assert caps_set[0] == 20.0 and caps_set[1] == pytest.approx(10.0, abs=0.002)
    assert pump.infused == pytest.approx(20.0, abs=0.001)
    assert result.duration_s == pytest.approx(1500.0, abs=2.0)  # shifted by the pause


def test_a_pump_that_can_pause_keeps_its_cap(tmp_path: Path) -> None:
    async def pause(pump: FakePump, ctl: InfusionController) -> None:
        await asyncio.sleep(600)
        ctl.request_pause("bathroom", "operator")
        await asyncio.sleep(300)
        ctl.request_resume("back", "operator")

    result, pump, recs = _run(tmp_path, IDEAL, [(1200.0, 60.0)], during=pause)
    assert result.outcome == "completed", result.reason
    assert "pause" in pump.log
    assert [r["args"]["value"] for r in recs if r.get("op") == "set_volume_limit"] == [20.0]


def test_rates_the_pump_cannot_hold_in_one_unit_are_refused_before_it_moves(
        tmp_path: Path) -> None:
    caps = decimal_display(NumberFormat(4, 3), units={"MH": Fraction(1),
                                                      "UH": Fraction(1, 1000)})
    result, pump, recs = _run(tmp_path, caps, [(60.0, 900.0), (600.0, 0.1255)])
    assert result.outcome == "faulted" and "run" not in pump.log
    alarm = next(r for r in recs if r["type"] == "alarm")
    assert alarm["kind"] == "command_refused" and "no single rate unit" in alarm["message"]


def test_prepare_chooses_the_unit_once_for_the_whole_run(tmp_path: Path) -> None:
    """The run that faulted mid-way on a pump that chose a unit per call (issue 9 item 6)
    completes: the driver is told every rate first, and keeps to the one unit."""
    caps = decimal_display(NumberFormat(4, 3), units={"MH": Fraction(1),
                                                      "UM": Fraction(6, 100)})
    result, pump, recs = _run(tmp_path, caps, [(300.0, 85.56), (1200.0, 53.472)])
    assert result.outcome == "completed", result.reason
    prepare = next(r for r in recs if r.get("op") == "prepare")
    assert prepare["result"] == {"rate_unit": "UM"}
    assert prepare["args"]["rates_ml_h"] == [85.56, 53.472]
    assert pump.rate_unit == "UM"


def test_a_pump_without_a_withdrawn_counter_journals_none(tmp_path: Path) -> None:
    result, _, recs = _run(tmp_path, PumpCapabilities(counters=Counters(withdrawn=False),
                                                      volume_cap=VolumeCap()), [(60.0, 60.0)])
    assert result.outcome == "completed"
    assert {s["withdrawn_ml"] for s in recs if s["type"] == "sample"} == {None}

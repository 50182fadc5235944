"""`pumpctl accuracy run`: deliver at one rate into a beaker on a balance, read it, analyse.

The pump is driven by the ordinary `InfusionController` (a constant-rate program), so the
run has the safety monitor, the stop-on-any-doubt ending and a journal like any other. Beside
it a weighing task reads the balance (`SI`, the immediate weight: liquid keeps arriving, so a
stable reading never comes) every interval from the moment the pump is started, and journals
each reading as a `weighing` record. When the run has ended the readings are analysed.

Choices (docs/accuracy.md): the pump runs one interval past `--duration`, so the last reading
is taken while it still delivers at the set rate rather than after the stop; the balance is
not the controller's volume sensor here, because the start-up lag this run exists to measure
would look like under-delivery to the monitor (the pump's counter still supervises the run);
a balance that fails or refuses a reading stops the run (the measurement is void).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from pumpctl.analysis.accuracy import AccuracyInputs, AccuracyResult, analyse
from pumpctl.clock import Clock, LoopClock
from pumpctl.drivers.balance.driver import MtSicsBalance
from pumpctl.drivers.balance.mtsics import BalanceError
from pumpctl.drivers.base import PumpDriver
from pumpctl.errors import UsageError
from pumpctl.journal import read_records
from pumpctl.plan.library import DEFAULT_PUMP_PROFILE, Syringe, load_pump_profile
from pumpctl.plan.program import (
    PlannedStep,
    ProgramLimits,
    RateProgram,
    Segment,
    SyringeInfo,
)
from pumpctl.plan.representable import program_rate_unit
from pumpctl.rig import Rig
from pumpctl.run.controller import InfusionController, RunResult, RunSettings
from pumpctl.run.session import RunAborted, RunFaulted
from pumpctl.run.signals import controller_signals
from pumpctl.timescale import run_at_speed

PROFILE = DEFAULT_PUMP_PROFILE


@dataclass
class AccuracyRun:
    rig: Rig
    inputs: AccuracyInputs
    duration_s: float
    speed: float | None = 1.0  # None: virtual time
    journal_dir: Path = Path("runs")
    channel: str = "pump0"
    result: AccuracyResult | None = None
    run: RunResult | None = None
    readings: list[dict[str, Any]] = field(default_factory=list)


def accuracy_program(rate_ml_h: float, duration_s: float, syringe: Syringe,
                     profile_name: str = PROFILE) -> RateProgram:
    """One constant-rate step of water (no drug): what the controller and monitor need."""
    profile = load_pump_profile(profile_name)
    low, high = profile.rate_limits_ml_h(syringe.inner_diameter_mm)
    if not low <= rate_ml_h <= high:
        raise UsageError(f"--rate {rate_ml_h:g} mL/h is outside {low:.4g}-{high:.4g} mL/h "
                         f"({profile.name} with {syringe.name})")
    try:
        program_rate_unit([rate_ml_h], profile)
    except ValueError:
        raise UsageError(f"--rate {rate_ml_h:g} mL/h cannot be written exactly in any rate "
                         f"unit of {profile.name}; choose a neighbouring rate") from None
    volume = rate_ml_h * duration_s / 3600.0
    if volume > syringe.capacity_ml:
        raise UsageError(f"{rate_ml_h:g} mL/h for {duration_s / 60:g} min is {volume:.4g} mL; "
                         f"the {syringe.name} holds {syringe.capacity_ml:g} mL")
    return RateProgram(
        plan=f"accuracy {rate_ml_h:g} mL/h", drug="water", library_name="accuracy",
        library_version="-", weight_kg=None, concentration_mg_per_ml=1.0,
        total_dose_mg=volume, total_volume_ml=volume, duration_s=duration_s,
        syringe=SyringeInfo(id=syringe.id, name=syringe.name,
                            inner_diameter_mm=syringe.inner_diameter_mm,
                            capacity_ml=syringe.capacity_ml),
        pump_profile=profile.name,
        steps=[PlannedStep(label="accuracy", start_s=0.0, duration_s=duration_s,
                           dose_mg=volume, volume_ml=volume)],
        segments=[Segment(start_s=0.0, duration_s=duration_s, rate_ml_h=rate_ml_h,
                          volume_ml=volume)],
        limits=ProgramLimits(max_rate_ml_h=high, min_rate_ml_h=low,
                             max_total_volume_ml=volume, max_total_dose_mg=volume,
                             volume_resolution_ml=profile.volume_resolution_ml))


def check_plan(job: AccuracyRun) -> RateProgram:
    """Everything that can be refused before a pump is touched."""
    inputs = job.inputs
    inputs.check()
    if job.rig.balance is None:
        raise UsageError(f"rig {job.rig.name}: has no balance; an accuracy run needs one")
    simulated = job.rig.pump.simulated and job.rig.balance.simulated
    if job.speed is None and not simulated:
        raise UsageError("--speed max (virtual time) needs a simulated rig: real pumps and "
                         "balances run in real time")
    if job.speed not in (None, 1.0) and not simulated:
        raise UsageError("--speed N needs a simulated rig")
    needed = inputs.start_min + inputs.period_min
    if job.duration_s / 60 + 1e-9 < needed:
        raise UsageError(f"--duration {job.duration_s / 60:g} min is shorter than the analysis "
                         f"needs ({inputs.start_min:g} + {inputs.period_min:g} = {needed:g} min)")
    readings = job.duration_s / 60 / inputs.interval_min
    if abs(readings - round(readings)) > 1e-6:
        raise UsageError(f"--duration {job.duration_s / 60:g} min is not a whole number of "
                         f"--interval {inputs.interval_min:g} min")
    # One interval more, so the last reading falls while the pump still runs.
    return accuracy_program(inputs.rate_ml_h, job.duration_s + inputs.interval_min * 60,
                            job.rig.syringe())


@contextlib.asynccontextmanager
async def _parts(rig: Rig, clock: Clock) -> AsyncIterator[tuple[PumpDriver, MtSicsBalance,
                                                                 int | None, str]]:
    """The rig's pump driver and balance, opened (simulated ones started in this process)."""
    assert rig.balance is not None
    async with contextlib.AsyncExitStack() as stack:
        delivered: Callable[[], float] | None = None
        # Both through the registry (pumpctl.drivers.open): a rig's `sim: KIND` is a
        # simulator kind, its `url` a pump URL.
        if rig.pump.simulated:
            from pumpctl.drivers.open import SimulatedSetup, simulator_kind

            syringe = rig.syringe()
            setup = SimulatedSetup(
                clock, syringe.inner_diameter_mm, capacity_ml=syringe.capacity_ml,
                contents_ml=rig.pump.contents.f if rig.pump.contents else None,
                physics=rig.physics())
            embedded = await stack.enter_async_context(
                simulator_kind(rig.pump.sim).start(setup))
            driver: PumpDriver = embedded.driver
            delivered, watchdog, pump_url = embedded.delivered_ml, None, f"sim:{rig.pump.sim}"
        else:
            from pumpctl.drivers.open import open_driver, parse_pump_url

            pump_url = rig.pump.urls[0]  # an accuracy run weighs one pump
            target = parse_pump_url(pump_url)
            driver = await stack.enter_async_context(open_driver(target, clock=clock))
            watchdog = target.watchdog_s
        spec = rig.balance
        if spec.simulated:
            from simulators.balance import embedded_balance

            if delivered is None:
                raise UsageError(f"rig {rig.name}: a simulated balance can only weigh a "
                                 "simulated pump")
            _, balance = await stack.enter_async_context(
                embedded_balance(clock, delivered, spec.sim_config()))
        else:
            from pumpctl.drivers.balance.open import open_balance

            balance = await stack.enter_async_context(open_balance(spec.url))
        yield driver, balance, watchdog, pump_url


class _StartWatch:
    """A journal sink that notes when the pump was told to start (the `started` record)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.started_at: float | None = None

    def emit(self, record: dict[str, Any]) -> None:
        if record.get("type") == "state" and record.get("state") == "started":
            self.started_at = asyncio.get_running_loop().time()
            self.started.set()

    async def aclose(self) -> None:
        return None


async def _weigh(job: AccuracyRun, ctl: InfusionController, balance: MtSicsBalance,
                 watch: _StartWatch) -> None:
    """Read the balance every interval from the start; journal each reading."""
    await watch.started.wait()
    assert watch.started_at is not None
    interval_s = job.inputs.interval_min * 60
    count = round(job.duration_s / interval_s)
    loop = asyncio.get_running_loop()
    for k in range(count + 1):
        due = watch.started_at + k * interval_s
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            w = await balance.weigh_now()
        except BalanceError as exc:
            ctl.request_stop(f"balance failed at reading {k}: {exc}", "controller")
            raise
        record = {"type": "weighing", "index": k, "t_min": k * job.inputs.interval_min,
                  "mass_g": w.grams, "stable": w.stable, "raw": w.raw,
                  "late_s": round(loop.time() - due, 6)}
        job.readings.append(record)
        ctl.journal_note(record)


async def _main(job: AccuracyRun, program: RateProgram, console: Console | None) -> RunResult:
    clock = LoopClock()
    assert job.rig.balance is not None
    async with _parts(job.rig, clock) as (driver, balance, watchdog, pump_url):
        identity = {}
        with contextlib.suppress(BalanceError):
            identity = {"model": await balance.model(), "serial": await balance.serial_number()}
        watch = _StartWatch()
        header = {"accuracy": {**job.inputs.__dict__, "windows_min": list(job.inputs.windows_min),
                               "duration_min": job.duration_s / 60, "rig": job.rig.name,
                               "rig_file": job.rig.source, "balance_url": job.rig.balance.url,
                               "balance": identity},
                  "speed": "max" if job.speed is None else job.speed}
        settings = RunSettings(journal_dir=job.journal_dir, channel=job.channel,
                               poll_s=job.rig.poll.f, pump_url=pump_url, watchdog_s=watchdog,
                               header_extra=header)
        ctl = InfusionController(driver, program, settings, clock=clock, sinks=[watch])
        if console is not None:
            console.print(f"accuracy run [bold]{ctl.run_id}[/] on rig " + escape(
                f"{job.rig.name}: {job.inputs.rate_ml_h:g} mL/h for {job.duration_s / 60:g} "
                f"min, journal {job.journal_dir}/{ctl.run_id}.jsonl"), highlight=False)
        weighing = asyncio.create_task(_weigh(job, ctl, balance, watch), name="weighing")
        try:
            # The readings end one interval before the plan does; a failed reading asks the
            # controller to stop. Either way the controller decides how the run ends.
            # SIGTERM stops; Ctrl-C asks on a terminal (as `pumpctl run` does): the pump is
            # stopped and the run journaled as aborted.
            with controller_signals(ctl, console or Console(stderr=True)):
                return await ctl.run()
        finally:
            weighing.cancel()
            with contextlib.suppress(asyncio.CancelledError, BalanceError):
                await weighing


def execute(job: AccuracyRun, console: Console | None) -> AccuracyRun:
    """Run, then analyse the journaled readings; RunAborted/RunFaulted if the run did not
    complete (nothing is analysed then)."""
    program = check_plan(job)
    result = run_at_speed(_main(job, program, console), job.speed)
    job.run = result
    if result.outcome != "completed":
        cls = RunAborted if result.outcome == "aborted" else RunFaulted
        exc = cls(f"accuracy run {result.run_id} {result.outcome}: {result.reason}; no analysis")
        exc.result = result
        raise exc
    masses = masses_from_journal(job.journal_dir / f"{result.run_id}.jsonl")
    count = round(job.duration_s / 60 / job.inputs.interval_min) + 1
    job.result = analyse(masses[:count], job.inputs)
    return job


def masses_from_journal(path: Path) -> list[float]:
    """The `weighing` records of an accuracy run, in order, checked to be complete."""
    weighings = [r for r in read_records(path) if r["type"] == "weighing"]
    masses = []
    for i, r in enumerate(weighings):
        if r.get("index") != i or not isinstance(r.get("mass_g"), int | float) \
                or not math.isfinite(r["mass_g"]):
            raise UsageError(f"{path}: weighing record {i} is missing or malformed")
        masses.append(float(r["mass_g"]))
    return masses

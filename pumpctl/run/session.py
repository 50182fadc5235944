"""`pumpctl run` end to end: plan → pump (or simulator) → controller → summary.

Kept apart from the typer command so tests and other front ends can call `execute()` with a
`RunOptions`. Everything that can go wrong before the pump moves (bad plan, bad URL, bad
speed) raises a one-line `PumpctlError`; once the controller runs, it alone decides how the
run ends, and the pump is stopped before this returns. Signals are handled for the whole
session (`pumpctl.run.signals`); a real pump is run in safe mode by default
(`pumpctl.run.watchdog`) and read by other processes through the run's status endpoint
(`pumpctl.run.endpoint`); a resume claims its run first (`pumpctl.run.chain`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from pumpctl.clock import Clock, LoopClock
from pumpctl.drivers.base import PumpDriver
from pumpctl.drivers.port_owner import describe_owner
from pumpctl.drivers.sensors import VolumeSensor
from pumpctl.errors import PumpctlError, UsageError
from pumpctl.journal import JOURNAL_SUFFIX, RecordSink, new_run_id
from pumpctl.plan.program import RateProgram
from pumpctl.run.chain import ResumeClaim
from pumpctl.run.controller import InfusionController, RunResult, RunSettings
from pumpctl.run.display import PausableLive, RunDisplay
from pumpctl.run.endpoint import EndpointError, StatusEndpoint
from pumpctl.run.output import TolerantStream
from pumpctl.run.signals import DEFAULT_PROMPT_TIMEOUT_S, SessionSignals, is_interactive
from pumpctl.run.watchdog import EMBEDDED, WatchdogPlan, plan_watchdog
from pumpctl.timescale import run_at_speed


class RunEnded(PumpctlError):
    """A run that ended without completing; carries its result for the summary."""

    result: RunResult | None = None


SinkFactory = Callable[[InfusionController], contextlib.AbstractAsyncContextManager[RecordSink]]


class RunAborted(RunEnded):
    """The run was stopped by the operator (or a signal) before the plan was complete."""

    exit_code = 5


class RunFaulted(RunEnded):
    """The safety monitor or the pump stopped the run."""

    exit_code = 6


@dataclass
class RunOptions:
    plan: Path | None
    weight_kg: float | None = None
    pump_url: str | None = None  # None: the embedded simulator
    speed: float | None = 1.0  # None: virtual time ("max")
    poll_s: float = 1.0
    journal_dir: Path = Path("runs")
    override_reason: str | None = None
    sim_faults: list[str] = field(default_factory=list)
    sim_kind: str | None = None  # the embedded simulator's kind (None: the registry's default)
    resume: str | None = None
    json: bool = False
    channel: str = "pump0"
    prompt_timeout_s: float = DEFAULT_PROMPT_TIMEOUT_S  # the Ctrl-C question (real seconds)
    sinks: list[RecordSink] = field(default_factory=list)  # extra sinks, closed after the run
    # Sinks that need the controller (its request_* hooks, journal_note), e.g. MQTT telemetry:
    # each is entered after the controller exists and exited after the run.
    sink_factories: list[SinkFactory] = field(default_factory=list)


def _compile(opts: RunOptions) -> RateProgram:
    from pumpctl.plan.compile import compile_plan_file

    if opts.plan is None:
        raise UsageError("PLAN is required (or give --resume RUN)")
    return compile_plan_file(opts.plan, weight_kg=opts.weight_kg,
                             override_reason=opts.override_reason)


def validate(opts: RunOptions) -> None:
    if opts.pump_url is not None and opts.sim_faults:
        raise UsageError("--sim-fault needs the embedded simulator (--sim), not --pump")
    if opts.pump_url is not None and opts.speed is None:
        raise UsageError("--speed max (virtual time) needs --sim: a pump outside this process "
                         "runs in real time")
    if opts.resume is not None and opts.pump_url is None and opts.sim_faults:
        raise UsageError("--resume continues on the pump of the original run, not a new simulator")


def execute(opts: RunOptions, console: Console) -> RunResult:
    """Run one plan on one pump; raise RunAborted/RunFaulted unless it completed."""
    validate(opts)
    if opts.pump_url is None and opts.resume is None:  # bad --sim-kind or --sim-fault: now
        from pumpctl.drivers.open import simulator_kind

        simulator_kind(opts.sim_kind).check_faults(opts.sim_faults)
    result = run_at_speed(_main(opts, console), opts.speed)
    if result.outcome in ("aborted", "faulted"):
        cls = RunAborted if result.outcome == "aborted" else RunFaulted
        exc = cls(f"run {result.run_id} {result.outcome}: {result.reason} "
                  f"({result.delivered_volume_ml:.3f} of {result.planned_volume_ml:.3f} mL)")
        exc.result = result
        raise exc
    return result


@contextlib.asynccontextmanager
async def _pump(opts: RunOptions, program: RateProgram, clock: Clock,
                ) -> AsyncIterator[tuple[PumpDriver, VolumeSensor | None, WatchdogPlan]]:
    """The driver to run on, a delivered-volume sensor if there is one, and what the run does
    about the pump's own watchdog (`pumpctl.run.watchdog`). Both ways go through the registry
    of pumpctl.drivers.open: a URL's scheme, or the embedded simulator's kind."""
    from pumpctl.drivers.open import SimulatedSetup, open_driver, parse_pump_url, simulator_kind

    if opts.pump_url is None:
        setup = SimulatedSetup(clock, program.syringe.inner_diameter_mm, opts.sim_faults)
        async with simulator_kind(opts.sim_kind).start(setup) as embedded:
            yield embedded.driver, embedded.sensor, EMBEDDED
        return
    target = parse_pump_url(opts.pump_url)
    async with open_driver(target, clock=clock) as driver:
        # A real pump's watchdog is armed by the controller before anything else is set
        # (safe mode by default): if this process is killed, the pump stops itself.
        yield driver, None, plan_watchdog(target.watchdog_s, driver=driver,
                                           url_param=target.watchdog_param)


async def _main(opts: RunOptions, console: Console) -> RunResult:
    """The session under its signal handlers (`pumpctl.run.signals`)."""
    signals = SessionSignals(console, interactive=is_interactive(),
                             prompt_timeout_s=opts.prompt_timeout_s)
    if isinstance(console.file, TolerantStream):
        console.file.on_lost = signals.output_lost
    with signals.installed():
        try:
            return await _session(opts, console, signals)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if signals.cause is None or task is None:
                raise
            task.uncancel()
            raise RunAborted(f"{signals.cause} before the pump was started: nothing was "
                             "run") from None


async def _session(opts: RunOptions, console: Console, signals: SessionSignals) -> RunResult:
    from pumpctl.run.resume import load_journal_state, reconcile

    clock = LoopClock()
    state = None
    if opts.resume is not None:
        state = load_journal_state(opts.journal_dir, opts.resume)
        program = state.program
        if opts.plan is not None:
            fresh = _compile(opts)
            if (fresh.segments, fresh.total_volume_ml) != (program.segments,
                                                           program.total_volume_ml):
                raise UsageError(f"--resume {opts.resume}: {opts.plan} does not compile to the "
                                 "program journaled by that run")
        if opts.pump_url is None:
            opts.pump_url = str(state.header.get("pump_url") or "") or None
            if opts.pump_url is None or opts.pump_url.startswith("sim"):
                raise UsageError(f"--resume {opts.resume}: the run used the embedded simulator, "
                                 "whose pump is gone with its process; nothing to resume")
    else:
        program = _compile(opts)
    run_id = new_run_id(opts.channel)
    journal_path = opts.journal_dir / f"{run_id}{JOURNAL_SUFFIX}"
    display = RunDisplay(console, print_alarms=not opts.json)
    sinks: list[RecordSink] = [display, *opts.sinks]
    claim: ResumeClaim | None = None
    try:
        if state is not None:  # before the pump is opened: two resumes cannot both win
            claim = ResumeClaim(state.path.parent, state.run_id, run_id).take()
        if opts.pump_url is not None:  # others read this pump through the run, not its port
            try:
                sinks.append(await StatusEndpoint(opts.pump_url, run_id=run_id).start())
            except EndpointError as exc:  # the run is not refused for it; the operator is told
                console.print(f"[bold yellow]warning:[/] no status endpoint ({escape(str(exc))}): "
                              "'pumpctl pump' beside this run would open its port",
                              highlight=False)
        async with _pump(opts, program, clock) as (driver, sensor, watchdog):
            point = await reconcile(state, driver) if state is not None else None
            settings = RunSettings(
                journal_dir=opts.journal_dir, channel=opts.channel, poll_s=opts.poll_s,
                pump_url=opts.pump_url or "sim://embedded", watchdog_s=watchdog.seconds,
                run_id=run_id,
                header_extra={"speed": "max" if opts.speed is None else opts.speed,
                              "sim_faults": opts.sim_faults, **watchdog.header()})
            ctl = InfusionController(driver, program, settings, clock=clock, sinks=sinks,
                                     resume=point, volume_sensor=sensor)
            signals.attach(ctl)
            describe_owner(f"run {ctl.run_id}")  # a second opener of the port learns the run
            if not opts.json:
                console.print(f"run [bold]{ctl.run_id}[/] journal "
                              f"{escape(str(journal_path))}", highlight=False)
            # An absent watchdog is said by the display from the header's capabilities.
            if watchdog.warning is not None and watchdog.state != "absent":
                console.print(f"[bold yellow]warning:[/] {watchdog.warning}", highlight=False)
            async with contextlib.AsyncExitStack() as stack:
                for factory in opts.sink_factories:  # telemetry sinks are created here
                    ctl.add_sink(await stack.enter_async_context(factory(ctl)))
                with _live(display, console, enabled=not opts.json) as live:
                    signals.set_live(live)
                    try:
                        return await ctl.run()
                    finally:
                        signals.set_live(None)
    finally:
        if claim is not None and not journal_path.exists():
            claim.release()  # refused or failed before the resumed run began
        for sink in sinks:
            with contextlib.suppress(Exception):
                await sink.aclose()


@contextlib.contextmanager
def _live(display: RunDisplay, console: Console, *, enabled: bool) -> Any:
    if not enabled or not console.is_terminal:
        yield None
        return
    live = PausableLive(display, console)
    try:
        live.start()
    except OSError:  # the terminal went away
        yield None
        return
    try:
        yield live
    finally:
        with contextlib.suppress(OSError):
            live.stop()

"""`pumpctl run` end to end: plan → pump (or simulator) → controller → summary.

Kept apart from the typer command so tests and other front ends can call `execute()` with a
`RunOptions`. Everything that can go wrong before the pump moves (bad plan, bad URL, bad
speed) raises a one-line `PumpctlError`; once the controller runs, it alone decides how the
run ends, and the pump is stopped before this returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from pumpctl.clock import Clock, LoopClock
from pumpctl.drivers.base import PumpDriver
from pumpctl.drivers.port_owner import describe_owner
from pumpctl.drivers.sensors import ModelBalance, VolumeSensor
from pumpctl.errors import PumpctlError, UsageError
from pumpctl.journal import RecordSink
from pumpctl.plan.program import RateProgram
from pumpctl.run.controller import InfusionController, RunResult
from pumpctl.run.display import RunDisplay
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
    resume: str | None = None
    json: bool = False
    channel: str = "pump0"
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
    faults = _parse_faults(opts.sim_faults)
    result = run_at_speed(_main(opts, console, faults), opts.speed)
    if result.outcome in ("aborted", "faulted"):
        cls = RunAborted if result.outcome == "aborted" else RunFaulted
        exc = cls(f"run {result.run_id} {result.outcome}: {result.reason} "
                  f"({result.delivered_volume_ml:.3f} of {result.planned_volume_ml:.3f} mL)")
        exc.result = result
        raise exc
    return result


def _parse_faults(texts: list[str]) -> list[Any]:
    if not texts:
        return []
    from simulators.faults import parse_fault

    return [parse_fault(t) for t in texts]


@contextlib.asynccontextmanager
async def _pump(opts: RunOptions, program: RateProgram, clock: Clock, faults: list[Any],
                ) -> AsyncIterator[tuple[PumpDriver, VolumeSensor | None, int | None]]:
    """The driver to run on, a delivered-volume sensor if there is one, the watchdog seconds."""
    if opts.pump_url is None:
        from simulators.newera.embedded import embedded_newera

        async with embedded_newera(clock, diameter_mm=program.syringe.inner_diameter_mm,
                                   faults=faults) as (sim, driver):
            yield driver, ModelBalance(sim.pump(0).model), None
        return
    from pumpctl.drivers.open import open_driver, parse_pump_url

    url = parse_pump_url(opts.pump_url)
    async with open_driver(opts.pump_url, clock=clock) as driver:
        yield driver, None, url.safe_s


async def _main(opts: RunOptions, console: Console, faults: list[Any]) -> RunResult:
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
    display = RunDisplay(console, print_alarms=not opts.json)
    sinks: list[RecordSink] = [display, *opts.sinks]
    try:
        async with _pump(opts, program, clock, faults) as (driver, sensor, watchdog_s):
            point = await reconcile(state, driver) if state is not None else None
            ctl = InfusionController(
                driver, program, journal_dir=opts.journal_dir, clock=clock, channel=opts.channel,
                poll_s=opts.poll_s, sinks=sinks, pump_url=opts.pump_url or "sim://embedded",
                watchdog_s=watchdog_s, resume=point, volume_sensor=sensor,
                header_extra={"speed": "max" if opts.speed is None else opts.speed,
                              "sim_faults": opts.sim_faults})
            describe_owner(f"run {ctl.run_id}")  # a second opener of the port learns the run
            if not opts.json:
                console.print(f"run [bold]{ctl.run_id}[/] journal {opts.journal_dir}/"
                              f"{ctl.run_id}.jsonl", highlight=False)
            async with contextlib.AsyncExitStack() as stack:
                for factory in opts.sink_factories:  # telemetry sinks are created here
                    ctl.add_sink(await stack.enter_async_context(factory(ctl)))
                with _signals(ctl, console), _live(display, console, enabled=not opts.json):
                    return await ctl.run()
    finally:
        for sink in sinks:
            with contextlib.suppress(Exception):
                await sink.aclose()


@contextlib.contextmanager
def _live(display: RunDisplay, console: Console, *, enabled: bool) -> Any:
    if not enabled or not console.is_terminal:
        yield None
        return
    with Live(display, console=console, refresh_per_second=4, transient=False) as live:
        yield live


@contextlib.contextmanager
def _signals(ctl: InfusionController, console: Console) -> Any:
    """SIGTERM stops; Ctrl-C asks "stop?" on a terminal (twice = stop now), else stops."""
    loop = asyncio.get_running_loop()
    asking = threading.Event()

    def on_term() -> None:
        ctl.request_stop("SIGTERM", "signal")

    def on_int() -> None:
        if not sys.stdin.isatty() or asking.is_set():
            ctl.request_stop("Ctrl-C", "operator" if asking.is_set() else "signal")
            return
        asking.set()
        def reply(yes: bool) -> None:
            loop.call_soon_threadsafe(_answer, yes)

        _ask_in_thread(console, reply)

    def _answer(yes: bool) -> None:
        asking.clear()
        if yes:
            ctl.request_stop("operator confirmed stop (Ctrl-C)", "operator")
        else:
            console.print("continuing", highlight=False)

    installed: list[signal.Signals] = []
    for sig, handler in ((signal.SIGTERM, on_term), (signal.SIGINT, on_int)):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _ask_in_thread(console: Console, done: Callable[[bool], None]) -> None:
    """Ask on the terminal without blocking the loop (the pump keeps being supervised)."""
    def ask() -> None:
        try:
            console.print("\n[bold yellow]stop the infusion?[/] [y/N] (Ctrl-C again: stop now) ",
                          end="")
            answer = sys.stdin.readline().strip().lower()
        except Exception:
            answer = "y"
        done(answer in ("y", "yes"))

    threading.Thread(target=ask, name="stop-prompt", daemon=True).start()

"""`pumpctl accuracy`: the standard's gravimetric analysis, of a recorded series or a live run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pumpctl.errors import UsageError
from pumpctl.units import Kind, parse_quantity

if TYPE_CHECKING:  # numpy and rich are imported only when an analysis runs or prints
    from rich.console import Console

    from pumpctl.analysis.accuracy import AccuracyInputs, AccuracyResult

STANDARD_WINDOWS = "2,5,11,19,31"  # minutes, the standard's observation windows

accuracy_app = typer.Typer(help="Delivery accuracy from balance readings (trumpet curves).",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(accuracy_app, name="accuracy")


Rate = Annotated[str, typer.Option("--rate", help="Set rate, e.g. '5 mL/h'.")]
Interval = Annotated[str, typer.Option("--interval", help="Sample interval S, e.g. 0.5min.")]
Density = Annotated[str, typer.Option(
    "--density", help="Density of the liquid: g/mL as a number (0.998) or with a unit.")]
Start = Annotated[str, typer.Option(
    "--start", help="Start of the analysis period after the first reading, e.g. 60min.")]
Period = Annotated[str, typer.Option("--period", help="Analysis period T, e.g. 60min.")]
Windows = Annotated[str, typer.Option(
    "--windows", help="Observation windows in minutes, comma-separated.")]
Evaporation = Annotated[str | None, typer.Option(
    "--evaporation", help="Measured evaporation from the beaker, added back, e.g. "
    "'0.05 mg/min'.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _minutes(text: str, option: str) -> float:
    value = parse_quantity(text, Kind.DURATION, option).f / 60.0
    if not value > 0 and option != "--start":
        raise UsageError(f"{option} {text!r}: must be > 0")
    if value < 0:
        raise UsageError(f"{option} {text!r}: must be >= 0")
    return value


def parse_density(text: str) -> float:
    """g/mL: a bare number is taken as g/mL (the way balance software asks for it)."""
    try:
        value = float(text)
    except ValueError:
        value = parse_quantity(text, Kind.DENSITY, "--density").f
    if not math.isfinite(value):
        raise UsageError(f"--density {text!r}: not a finite number")
    return value


def parse_windows(text: str) -> tuple[float, ...]:
    windows = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UsageError(f"--windows {text!r}: {part.strip()!r} is not a number of "
                             "minutes") from None
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"--windows {text!r}: {part.strip()!r} must be > 0 minutes")
        windows.append(value)
    return tuple(windows)


def build_inputs(*, rate: str, interval: str, density: str, start: str, period: str,
                 windows: str, evaporation: str | None) -> AccuracyInputs:
    """The analysis inputs from command-line text (units parsed with pint), checked."""
    from pumpctl.analysis.accuracy import AccuracyInputs

    rate_ml_h = parse_quantity(rate, Kind.RATE, "--rate").f
    if not rate_ml_h > 0:
        raise UsageError(f"--rate {rate!r}: must be > 0")
    evaporation_g_min = 0.0
    if evaporation is not None:
        evaporation_g_min = parse_quantity(evaporation, Kind.MASS_RATE, "--evaporation").f / 1000
        if evaporation_g_min < 0:
            raise UsageError(f"--evaporation {evaporation!r}: must be >= 0")
    inputs = AccuracyInputs(
        rate_ml_h=rate_ml_h, interval_min=_minutes(interval, "--interval"),
        density_g_ml=parse_density(density), start_min=_minutes(start, "--start"),
        period_min=_minutes(period, "--period"), windows_min=parse_windows(windows),
        evaporation_g_min=evaporation_g_min)
    inputs.check()
    return inputs


def print_result(result: AccuracyResult, console: Console, *, title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    inputs = result.inputs
    console.print(f"[bold]{escape(title)}[/]: set rate {inputs.rate_ml_h:g} mL/h, {result.samples} "
                  f"readings every {inputs.interval_min:g} min, density "
                  f"{inputs.density_g_ml:g} g/mL"
                  + (f", evaporation {inputs.evaporation_g_min * 1000:g} mg/min added back"
                     if inputs.evaporation_g_min else ""),
                  soft_wrap=True)  # a path is never broken inside: the terminal wraps it
    console.print(f"analysis period {inputs.start_min:g}-{result.period_end_min:g} min: "
                  f"mean error A = [bold]{result.mean_error_pct:+.2f} %[/]")
    table = Table(title="trumpet curve")
    for col in ("window min", "Ep(max) %", "Ep(min) %", "windows"):
        table.add_column(col, justify="right")
    for p in result.trumpet:
        table.add_row(f"{p.window_min:g}", f"{p.ep_max_pct:+.2f}", f"{p.ep_min_pct:+.2f}",
                      str(p.positions))
    console.print(table)


@accuracy_app.command("analyse")
def analyse_command(
    samples: Annotated[Path, typer.Argument(help="CSV of balance readings: t_min,mass_g.")],
    rate: Rate,
    interval: Interval = "0.5min",
    density: Density = "0.998",
    start: Start = "60min",
    period: Period = "60min",
    windows: Windows = STANDARD_WINDOWS,
    evaporation: Evaporation = None,
    as_json: AsJson = False,
) -> None:
    """Analyse a recorded mass series: mean error A, trumpet curve, start-up flows."""
    from rich.console import Console

    from pumpctl.analysis.accuracy import analyse
    from pumpctl.analysis.samples import check_interval, read_mass_series

    inputs = build_inputs(rate=rate, interval=interval, density=density, start=start,
                          period=period, windows=windows, evaporation=evaporation)
    series = read_mass_series(samples)
    check_interval(series, inputs.interval_min)
    result = analyse(series.masses_g, inputs)
    if as_json:
        out: dict[str, Any] = result.as_dict()
        out["inputs"]["file"] = str(samples)
        out["inputs"]["t0_min"] = series.start_min
        typer.echo(json.dumps(out))
        return
    print_result(result, Console(highlight=False), title=str(samples))


@accuracy_app.command("run")
def run_command(
    rig: Annotated[Path, typer.Option("--rig", help="Rig file (configs/rigs/*.yaml).")],
    rate: Rate,
    duration: Annotated[str, typer.Option("--duration", help="How long to deliver.")] = "2h",
    interval: Interval = "0.5min",
    start: Start = "60min",
    period: Period = "60min",
    windows: Windows = STANDARD_WINDOWS,
    speed: Annotated[str, typer.Option(
        "--speed", help="N x real time, or 'max' for virtual time (simulated rigs only).")] = "1",
    journal: Annotated[Path, typer.Option("--journal", help="Journal directory.")] = Path("runs"),
    as_json: AsJson = False,
) -> None:
    """Deliver at RATE into the rig's balance, read it every interval, and analyse.

    Exit codes: 0 done, 2 bad input, 4 pump or balance error before the start, 5 aborted
    (operator, signal, a failed balance reading), 6 faulted (safety stop).
    """
    from rich.console import Console

    from pumpctl.rig import load_rig
    from pumpctl.run.accuracy import AccuracyRun, execute
    from pumpctl.timescale import parse_speed

    rig_spec = load_rig(rig)
    density = f"{rig_spec.balance.density.f:g}" if rig_spec.balance else "0.998"
    evaporation = (f"{rig_spec.balance.evaporation.f:g} mg/min" if rig_spec.balance
                   else None)
    inputs = build_inputs(rate=rate, interval=interval, density=density, start=start,
                          period=period, windows=windows, evaporation=evaporation)
    job = AccuracyRun(rig=rig_spec, inputs=inputs, duration_s=_minutes(duration, "--duration")
                      * 60, speed=parse_speed(speed), journal_dir=journal)
    console = Console(stderr=as_json, highlight=False)
    execute(job, None if as_json else console)
    assert job.result is not None and job.run is not None
    if as_json:
        out: dict[str, Any] = job.result.as_dict()
        out["run_id"] = job.run.run_id
        out["journal"] = str(journal / f"{job.run.run_id}.jsonl")
        out["inputs"]["rig"] = rig_spec.name
        out["inputs"]["duration_min"] = job.duration_s / 60
        typer.echo(json.dumps(out))
        return
    print_result(job.result, console, title=f"run {job.run.run_id}")
    console.print(f"report: pumpctl report {job.run.run_id} --journal {journal}", markup=False)

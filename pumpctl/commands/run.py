"""`pumpctl run`: deliver a plan on a pump or the embedded simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pumpctl.errors import PumpctlError
from pumpctl.run_display import summary_table
from pumpctl.runner import RunOptions, SinkFactory, execute
from pumpctl.timescale import parse_speed


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    plan: Annotated[Path | None, typer.Argument(help="Plan file (optional with --resume).")] = None,
    weight: Annotated[float | None, typer.Option("--weight", help="Subject weight, kg.")] = None,
    pump: Annotated[str | None, typer.Option(
        "--pump", help="Pump URL, e.g. newera:///dev/ttyUSB0?safe=5 (default: --sim).")] = None,
    sim: Annotated[bool, typer.Option("--sim", help="Use the embedded simulator.")] = False,
    speed: Annotated[str, typer.Option(
        "--speed", help="N x real time (the event loop's clock runs N times faster), or "
        "'max' for virtual time (simulator only).")] = "1",
    poll: Annotated[float, typer.Option("--poll", help="Status poll interval, s.")] = 1.0,
    journal: Annotated[Path, typer.Option("--journal", help="Journal directory.")] = Path("runs"),
    override: Annotated[str | None, typer.Option(
        "--override-soft-limits", help="Reason for running beyond soft limits.")] = None,
    sim_fault: Annotated[list[str] | None, typer.Option(
        "--sim-fault", help="Inject a simulator fault KIND@TIME (repeatable), e.g. "
        "occlusion@10m.")] = None,
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Resume a run whose controller died (journal id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run a plan with an independent safety monitor; everything is journaled.

    Exit codes: 0 completed, 5 aborted (operator or signal), 6 faulted (safety stop),
    2/3 invalid plan, 7 resume refused.
    """
    if sim and pump:
        raise _usage("--sim and --pump exclude each other")
    console = Console(stderr=as_json, highlight=False)
    opts = RunOptions(plan=plan, weight_kg=weight, pump_url=pump, speed=parse_speed(speed),
                      poll_s=poll, journal_dir=journal, override_reason=override,
                      sim_faults=list(sim_fault or []), resume=resume, json=as_json,
                      sink_factories=telemetry_sink_factories())
    try:
        result = execute(opts, console)
    except PumpctlError as exc:
        _print_outcome(exc, as_json, console)
        raise
    _print_result(result, as_json, console)


def telemetry_sink_factories() -> list[SinkFactory]:
    """Where `pumpctl run`'s telemetry (MQTT) sinks are created.

    Each factory gets the controller (for `request_*` hooks and `journal_note`) and returns an
    async context manager yielding a `RecordSink`, e.g.
    `lambda ctl: telemetry_for_run(url, site=..., pump_id=ctl.channel, controller_hooks=ctl,
    journal_note=ctl.journal_note, spool_dir=...)`. The journal always gets each record first.
    """
    return []


def _usage(message: str) -> PumpctlError:
    from pumpctl.errors import UsageError

    return UsageError(message)


def _print_result(result: object, as_json: bool, console: Console) -> None:
    from pumpctl.controller import RunResult

    assert isinstance(result, RunResult)
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        console.print(summary_table([result]))


def _print_outcome(exc: PumpctlError, as_json: bool, console: Console) -> None:
    result = getattr(exc, "result", None)
    if result is not None:
        _print_result(result, as_json, console)

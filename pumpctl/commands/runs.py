"""`pumpctl runs`: list and show journaled runs."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

runs_app = typer.Typer(help="List and inspect journaled runs.", no_args_is_help=True)

JournalDir = Annotated[Path, typer.Option("--journal", help="Journal directory.")]


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%m-%d %H:%M") if t else "-"


def _plan_name(plan: str) -> str:
    """A plan's file name without directory or YAML suffix (names contain dots: "0.5mgkg")."""
    name = Path(plan).name
    for suffix in (".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return name


@runs_app.command("list")
def list_command(journal: JournalDir = Path("runs"),
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every run in the journal directory, oldest first."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from pumpctl.journal import list_runs

    infos = list_runs(journal)
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in infos]))
        return
    # Piped into a log or a CI artefact, rich would assume 80 columns and squeeze every cell
    # to an ellipsis; a list of runs is read there as often as on a terminal.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)
    if not infos:
        console.print(f"no runs in {journal}")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("run", "started", "plan", "outcome"):
        table.add_column(col, no_wrap=True)
    table.add_column("delivered / planned mL", justify="right", no_wrap=True)
    table.add_column("alarms", justify="right")
    for i in infos:
        delivered = "-" if i.delivered_volume_ml is None else f"{i.delivered_volume_ml:.3f}"
        planned = "-" if i.planned_volume_ml is None else f"{i.planned_volume_ml:.3f}"
        table.add_row(i.run_id, _when(i.started), _plan_name(i.plan), i.outcome,
                      f"{delivered} / {planned}", str(i.alarms))
    console.print(table)


@runs_app.command("show")
def show_command(run: Annotated[str, typer.Argument(help="Run id (or unique prefix, or path).")],
                 journal: JournalDir = Path("runs"),
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One run: header, alarms, state changes and summary (--json: every record)."""
    from rich.console import Console
    from rich.table import Table

    from pumpctl.journal import find_run, read_records, summarize_run

    path = find_run(journal, run)
    records = read_records(path)
    if as_json:
        # Indented for a person at a terminal; one compact line for a pipe (jq, a file).
        indent = 2 if sys.stdout.isatty() else None
        typer.echo(json.dumps({"run": summarize_run(path).as_dict(), "records": records},
                              indent=indent))
        return
    console = Console(highlight=False)
    info = summarize_run(path)
    header: dict[str, Any] = next((r for r in records if r["type"] == "header"), {})
    console.print(f"[bold]{info.run_id}[/]  {info.plan}  outcome [bold]{info.outcome}[/]")
    console.print(f"drug {header.get('drug')} {header.get('concentration_mg_per_ml')} mg/mL, "
                  f"weight {header.get('weight_kg')} kg, planned {header.get('total_volume_ml')} mL"
                  f" / {header.get('total_dose_mg')} mg over {header.get('duration_s')} s")
    pump = header.get("pump") or {}
    console.print(f"pump {pump.get('model')} fw {pump.get('firmware')} address "
                  f"{pump.get('address')} at {header.get('pump_url')}; operator "
                  f"{header.get('operator')}@{header.get('host')}; pumpctl "
                  f"{header.get('software_version')}")
    if header.get("resume_of"):
        console.print(f"resumes {header['resume_of']} from {header.get('baseline_ml')} mL "
                      f"(plan t={header.get('plan_offset_s'):.1f} s)")
    for o in header.get("overrides") or []:
        console.print(f"[yellow]override[/] {o.get('field')}={o.get('value')} beyond "
                      f"{o.get('bound')} {o.get('limit')}: {o.get('reason')}")
    table = Table(title="events")
    for col in ("elapsed", "type", "what"):
        table.add_column(col)
    for r in records:
        if r["type"] == "state":
            what = f"{r['state']}: {r.get('reason', '')} ({r.get('sender', '')})"
        elif r["type"] == "alarm":
            what = f"[red]{r['kind']}[/]: {r.get('message', '')}"
        elif r["type"] == "segment":
            what = f"segment {r['index']}: {r['rate_ml_h']} mL/h for {r['duration_s']} s"
        else:
            continue
        table.add_row(f"{r['elapsed_s']:.1f} s", r["type"], what)
    console.print(table)
    summary = next((r for r in reversed(records) if r["type"] == "summary"), None)
    if summary is None:
        console.print("[yellow]no summary: the controller did not finish (crash?). "
                      "`pumpctl run --resume` may continue it.[/]")
    else:
        console.print(f"delivered {summary['delivered_volume_ml']:.3f} of "
                      f"{summary['planned_volume_ml']:.3f} mL, "
                      f"{summary['delivered_dose_mg']:.3f} of {summary['planned_dose_mg']:.3f} mg "
                      f"in {summary['duration_s']:.0f} s; {summary['alarms']} alarm(s)")

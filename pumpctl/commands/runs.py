"""`pumpctl runs`: list and show journaled runs."""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # rich and the journal readers load when a command runs
    from pumpctl.journal import RunInfo
    from pumpctl.run.chain import ChainIndex, ChainTotals

runs_app = typer.Typer(help="List and inspect journaled runs.", no_args_is_help=True)

JournalDir = Annotated[Path, typer.Option("--journal", help="Journal directory.")]


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")


def _when(t: float | None) -> str:
    try:
        return datetime.fromtimestamp(t).strftime("%m-%d %H:%M") if t else "-"
    except (OverflowError, OSError, ValueError, TypeError):  # a time no calendar holds
        return "?"


def _plan_name(plan: str) -> str:
    """A plan's file name without directory or YAML suffix (names contain dots: "0.5mgkg")."""
    name = Path(plan).name
    for suffix in (".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return name


@runs_app.command("list")
def list_command(journal: JournalDir = Path("runs"),
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every run in the journal directory, oldest first; damaged journals shown as such."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from pumpctl.journal import list_runs
    from pumpctl.run.chain import ChainIndex, chain_views

    infos = list_runs(journal)
    index = ChainIndex(journal)
    chains = chain_views(index, {i.run_id: i.delivered_volume_ml for i in infos})
    if as_json:
        typer.echo(json.dumps([{**i.as_dict(), **_chain_fields(index, chains, i.run_id)}
                               for i in infos]))
        return
    if not infos:
        typer.echo(f"no runs in {journal}")
        return
    rows = [_row(i) for i in infos]
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("run", "started", "plan", "outcome"):
        table.add_column(col, no_wrap=True)
    table.add_column("delivered / planned mL", justify="right", no_wrap=True)
    table.add_column("alarms", justify="right", no_wrap=True)
    # Resume chains: a short mark here ("chain 1, link 2 of 3"), the whole story below.
    numbers = {totals: n for n, totals in enumerate(dict.fromkeys(chains.values()), 1)}
    if numbers:
        table.add_column("chain", no_wrap=True)
        rows = [(*row, _chain_mark(numbers, chains, i.run_id)) for row, i in zip(rows, infos,
                                                                                   strict=True)]
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    # A run id is what the next command needs, so it is never cut: the table is printed at
    # its natural width when piped (a log, a CI artefact), and on a terminal too narrow for it
    # each run becomes one plain line the terminal may wrap but nothing shortens.
    natural = Console(width=100_000).measure(table).maximum
    if not sys.stdout.isatty():
        Console(highlight=False, width=natural).print(table)
    elif natural <= Console().width:
        Console(highlight=False).print(table)
    else:
        for row in rows:
            typer.echo("  ".join(cell for cell in row if cell))
    by_id = {i.run_id: i for i in infos}
    for totals, n in numbers.items():
        typer.echo(f"chain {n}: {_chain_line(totals, by_id)}")
    for i in infos:
        if i.problem:
            typer.echo(f"damaged journal {i.path}: {i.problem}")


def _chain_mark(numbers: dict[ChainTotals, int], chains: dict[str, ChainTotals],
                run_id: str) -> str:
    totals = chains.get(run_id)
    if totals is None:
        return ""
    return f"{numbers[totals]}: {totals.links.index(run_id) + 1}/{len(totals.links)}"


def _row(i: RunInfo) -> tuple[str, ...]:
    delivered = "-" if not isinstance(i.delivered_volume_ml, int | float) \
        else f"{i.delivered_volume_ml:.3f}"
    planned = "-" if not isinstance(i.planned_volume_ml, int | float) \
        else f"{i.planned_volume_ml:.3f}"
    outcome = i.outcome
    if i.problem and i.problem.startswith("line "):
        outcome += f" ({i.problem.split(':', 1)[0]})"
    return (i.run_id, _when(i.started), _plan_name(i.plan), outcome, f"{delivered} / {planned}",
            str(i.alarms))


@runs_app.command("show")
def show_command(run: Annotated[str, typer.Argument(help="Run id (or unique prefix, or path).")],
                 journal: JournalDir = Path("runs"),
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One run: header, alarms, state changes and summary (--json: every record)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from pumpctl.journal import find_run, read_records, summarize_run
    from pumpctl.run.chain import ChainIndex

    path = find_run(journal, run)
    records = read_records(path)  # a damaged journal: one line naming the file and line
    if as_json:
        index = ChainIndex(path.parent)
        info = summarize_run(path)
        totals, _ = _chain_of(index, info.run_id)
        chains = {info.run_id: totals} if totals is not None else {}
        # Indented for a person at a terminal; one compact line for a pipe (jq, a file).
        indent = 2 if sys.stdout.isatty() else None
        typer.echo(json.dumps({"run": {**info.as_dict(),
                                       **_chain_fields(index, chains, info.run_id)},
                               "records": records}, indent=indent))
        return
    console = Console(highlight=False)
    info = summarize_run(path)
    header: dict[str, Any] = next((r for r in records if r["type"] == "header"), {})
    # Everything from the journal is text someone else wrote: escaped, never read as markup.
    console.print(f"[bold]{escape(info.run_id)}[/]  {escape(info.plan)}  outcome "
                  f"[bold]{escape(info.outcome)}[/]")
    console.print(escape(f"drug {header.get('drug')} "
                         f"{header.get('concentration_mg_per_ml')} mg/mL, weight "
                         f"{header.get('weight_kg')} kg, planned "
                         f"{header.get('total_volume_ml')} mL / {header.get('total_dose_mg')} mg "
                         f"over {header.get('duration_s')} s"))
    pump = header.get("pump") or {}
    console.print(escape(f"pump {pump.get('model')} fw {pump.get('firmware')} address "
                         f"{pump.get('address')} at {header.get('pump_url')}; operator "
                         f"{header.get('operator')}@{header.get('host')}; pumpctl "
                         f"{header.get('software_version')}"))
    if header.get("resume_of"):
        console.print(escape(f"resumes {header['resume_of']} from {header.get('baseline_ml')} "
                             f"mL (plan t={_num(header.get('plan_offset_s'), '.1f')} s)"))
    index = ChainIndex(path.parent)
    for child in index.resumed_as(info.run_id):
        console.print(f"[bold]resumed as {escape(child)}[/]", soft_wrap=True)
    totals, by_id = _chain_of(index, info.run_id)
    if totals is not None:
        console.print(escape(f"chain: {_chain_line(totals, by_id)}"), soft_wrap=True)
    for o in header.get("overrides") or []:
        if isinstance(o, dict):
            console.print("[yellow]override[/] " + escape(
                f"{o.get('field')}={o.get('value')} beyond {o.get('bound')} {o.get('limit')}: "
                f"{o.get('reason')}"))
    table = Table(title="events")
    for col in ("elapsed", "type", "what"):
        table.add_column(col)
    for r in records:
        what: Text | str
        if r["type"] == "state":
            what = f"{r['state']}: {r.get('reason') or ''} ({r.get('sender') or ''})"
        elif r["type"] == "alarm":
            what = Text.assemble((str(r["kind"]), "red"), f": {r.get('message') or ''}")
        elif r["type"] == "segment":
            what = f"segment {r['index']}: {r['rate_ml_h']} mL/h for {r['duration_s']} s"
        else:
            continue
        table.add_row(f"{r['elapsed_s']:.1f} s", r["type"],
                      what if isinstance(what, Text) else Text(what))
    console.print(table)
    summary = next((r for r in reversed(records) if r["type"] == "summary"), None)
    if summary is None:
        console.print("[yellow]no summary: the controller did not finish (crash?). "
                      "`pumpctl run --resume` may continue it.[/]")
    else:
        console.print(escape(
            f"delivered {_num(summary['delivered_volume_ml'], '.3f')} of "
            f"{_num(summary.get('planned_volume_ml'), '.3f')} mL, "
            f"{_num(summary.get('delivered_dose_mg'), '.3f')} of "
            f"{_num(summary.get('planned_dose_mg'), '.3f')} mg "
            f"in {_num(summary.get('duration_s'), '.0f')} s; {summary.get('alarms')} alarm(s)"))


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def _chain_of(index: ChainIndex, run_id: str) -> tuple[ChainTotals | None, dict[str, RunInfo]]:
    """The chain through one run, reading only its links' journals."""
    from pumpctl.journal import JournalError, summarize_run
    from pumpctl.run.chain import chain_totals

    if not index.in_chain(run_id):
        return None, {}
    infos: dict[str, RunInfo] = {}
    for link in index.links(run_id):
        path = index.paths.get(link)
        if path is not None:
            with contextlib.suppress(JournalError):
                infos[link] = summarize_run(path)
    delivered = {k: v.delivered_volume_ml for k, v in infos.items()}
    return chain_totals(index, run_id, delivered), infos


def _chain_fields(index: ChainIndex, chains: dict[str, ChainTotals],
                  run_id: str) -> dict[str, Any]:
    """A run's place in its resume chain, for `--json`."""
    totals = chains.get(run_id)
    return {"resume_of": index.resume_of(run_id), "resumed_as": index.resumed_as(run_id),
            "chain": list(totals.links) if totals else None,
            "chain_delivered_ml": round(totals.delivered_ml, 6) if totals else None}


def _chain_line(totals: ChainTotals, infos: dict[str, RunInfo]) -> str:
    """`A resumed as B, B resumed as C; 35.000 of 35.000 mL delivered in all; latest C
    completed`."""
    latest = infos.get(totals.latest)
    planned = latest.planned_volume_ml if latest else None
    of = f" of {planned:.3f}" if isinstance(planned, int | float) else ""
    state = f" {latest.outcome}" if latest else ""
    links = totals.links
    steps = ", ".join(f"{a} resumed as {b}" for a, b in itertools.pairwise(links))
    return (f"{steps}; {totals.delivered_ml:.3f}{of} mL delivered in all; "
            f"latest {totals.latest}{state}")

"""`pumpctl report RUN`: a run's picture and HTML page; `pumpctl runs export RUN --csv`."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from pumpctl.errors import UsageError

JournalDir = Annotated[Path, typer.Option("--journal", help="Journal directory.")]
SAMPLE_COLUMNS = ("elapsed_s", "plan_t_s", "state", "rate_ml_h", "planned_ml", "infused_ml",
                  "counter_ml", "measured_ml", "dose_mg", "segment", "paused", "alarm")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    from pumpctl.commands.runs import runs_app

    runs_app.command("export")(export)


def report(run: Annotated[str, typer.Argument(help="Run id (or unique prefix, or path).")],
           journal: JournalDir = Path("runs"),
           out: Annotated[Path | None, typer.Option(
               "--out", help="Directory for RUN.png and RUN.html (default: the journal's).")]
           = None) -> None:
    """Write RUN.png and RUN.html: planned vs delivered, rate, alarms, monitoring timeline;
    accuracy runs add the start-up graph and the trumpet curve."""
    from pumpctl.analysis.report import write_report
    from pumpctl.journal import find_run

    path = find_run(journal, run)
    try:
        png, page = write_report(path, out or path.parent)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out or path.parent}: "
                         f"{exc.strerror or exc}") from None
    typer.echo(f"{png}\n{page}")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def export(run: Annotated[str, typer.Argument(help="Run id (or unique prefix, or path).")],
           journal: JournalDir = Path("runs"),
           as_csv: Annotated[bool, typer.Option("--csv", help="CSV (the only format).")] = False,
           weighings: Annotated[bool, typer.Option(
               "--weighings", help="The balance readings of an accuracy run as t_min,mass_g "
               "(what `pumpctl accuracy analyse` reads) instead of the status samples.")] = False,
           out: Annotated[Path | None, typer.Option(
               "--out", help="Write to this file instead of stdout.")] = None) -> None:
    """A run's status samples (or balance readings) as CSV for a spreadsheet."""
    from pumpctl.journal import find_run, read_records

    if not as_csv:
        raise UsageError("give --csv (the only export format)")
    records = read_records(find_run(journal, run))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if weighings:
        rows = [r for r in records if r["type"] == "weighing"]
        if not rows:
            raise UsageError(f"run {run}: no balance readings (not an accuracy run)")
        writer.writerow(("t_min", "mass_g"))
        for r in rows:
            writer.writerow((f"{float(r['t_min']):g}", repr(float(r["mass_g"]))))
    else:
        writer.writerow(("t_min", *SAMPLE_COLUMNS))
        started = next((r["elapsed_s"] for r in records
                        if r["type"] == "state" and r.get("state") == "started"), 0.0)
        for r in records:
            if r["type"] == "sample":
                t = (float(r["elapsed_s"]) - float(started)) / 60
                writer.writerow((f"{t:.6g}", *(_cell(r.get(k)) for k in SAMPLE_COLUMNS)))
    if out is None:
        typer.echo(buffer.getvalue(), nl=False)
        return
    try:
        out.write_text(buffer.getvalue(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None

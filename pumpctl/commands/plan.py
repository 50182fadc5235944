"""`pumpctl plan show|check`: compile a dose plan and print it, or only validate it.

Exit codes of `plan check`: 0 valid; 2 invalid (one line per problem on stderr: field path,
value, limit, hard/soft); 3 valid only with a soft-limit override.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pumpctl.units import Kind, describe, format_number

if TYPE_CHECKING:  # imported where used: `pumpctl plan --help` needs neither pint nor pydantic
    from rich.console import Console

    from pumpctl.plan.program import RateProgram

plan_app = typer.Typer(
    help="Dose plans: validate and compile to rate programs.", no_args_is_help=True
)

PlanArg = Annotated[
    Path, typer.Argument(help="Plan file (YAML), e.g. configs/plans/ketamine-0.5mgkg-40min.yaml")
]
WeightOpt = Annotated[
    float | None, typer.Option("--weight", help="Subject weight in kg (wins over the plan's).")
]
ConcOpt = Annotated[
    str | None,
    typer.Option(
        "--concentration",
        help='Syringe concentration, e.g. "1 mg/mL" (wins over the plan\'s).',
    ),
]
SyringeOpt = Annotated[
    str | None, typer.Option("--syringe", help="Syringe id from configs/syringes.yaml.")
]
PumpOpt = Annotated[
    str | None, typer.Option("--pump", help="Pump profile name or file (default newera-ne1000).")
]
OverrideOpt = Annotated[
    str | None,
    typer.Option(
        "--override-soft-limits",
        metavar="REASON",
        help="Accept soft-limit breaches; the reason is recorded in the program.",
    ),
]
ConfigsOpt = Annotated[
    Path | None, typer.Option("--configs", help="Configuration directory (default: configs/).")
]


def _hms(seconds: float) -> str:
    whole = round(seconds)
    if abs(seconds - whole) > 0.05:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{seconds % 60:04.1f}"
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _pump_setting(program: RateProgram) -> tuple[str, dict[int, str]]:
    """The rate unit the pump would be told, and each segment's number in it."""
    from pumpctl.plan.errors import PlanError
    from pumpctl.plan.library import load_pump_profile
    from pumpctl.plan.representable import format_rate, program_rate_unit

    try:
        profile = load_pump_profile(program.pump_profile)
        rates = [s.rate_ml_h for s in program.segments]
        unit = program_rate_unit(rates, profile)
        return unit, {i: format_rate(r, unit, profile) for i, r in enumerate(rates)}
    except (PlanError, ValueError):
        return "", {}


def render(program: RateProgram, console: Console) -> None:
    """Human-readable program: summary, segments, plan steps, overrides, monitoring."""
    from rich.table import Table

    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    weight = f"{format_number(program.weight_kg)} kg" if program.weight_kg is not None else "-"
    rows = [
        ("plan", program.plan),
        ("drug", f"{program.drug}  (library {program.library_name} {program.library_version})"),
        ("weight", weight),
        ("concentration", describe(program.concentration_mg_per_ml, Kind.CONCENTRATION)),
        ("total dose", describe(program.total_dose_mg, Kind.DOSE)),
        ("total volume", f"{format_number(program.total_volume_ml, 8)} mL"),
        ("duration", f"{_hms(program.duration_s)}  ({format_number(program.duration_s, 8)} s)"),
        (
            "syringe",
            f"{program.syringe.name} [{program.syringe.id}], "
            f"{format_number(program.syringe.inner_diameter_mm)} mm, "
            f"{format_number(program.syringe.capacity_ml)} mL",
        ),
        (
            "pump",
            f"{program.pump_profile}: {format_number(program.limits.min_rate_ml_h, 4)}"
            f"-{format_number(program.limits.max_rate_ml_h, 5)} mL/h with this syringe",
        ),
        ("worst rate deviation", f"{program.worst_rate_deviation * 100:.4f} %"),
    ]
    for key, value in rows:
        summary.add_row(key, value)
    console.print(summary)

    unit, texts = _pump_setting(program)
    seg = Table(title="Rate program (segments)", title_justify="left")
    pump_col = f"pump ({unit})" if unit else "pump"
    for col in ("#", "start", "duration", "rate mL/h", pump_col, "volume mL"):
        seg.add_column(col, justify="right")
    for i, s in enumerate(program.segments):
        seg.add_row(
            str(i),
            _hms(s.start_s),
            f"{format_number(s.duration_s, 8)} s",
            format_number(s.rate_ml_h, 8),
            texts.get(i, "?"),
            format_number(s.volume_ml, 8),
        )
    console.print(seg)

    steps = Table(title="Plan steps", title_justify="left")
    for col in ("step", "start", "duration", "dose", "volume mL"):
        steps.add_column(col, justify="right" if col != "step" else "left")
    for p in program.steps:
        steps.add_row(
            p.label,
            _hms(p.start_s),
            describe(p.duration_s, Kind.DURATION),
            describe(p.dose_mg, Kind.DOSE),
            format_number(p.volume_ml, 8),
        )
    console.print(steps)

    if program.soft_limit_overrides:
        over = Table(title="Soft-limit overrides", title_justify="left")
        for col in ("field", "value", "limit", "bound", "reason"):
            over.add_column(col)
        for o in program.soft_limit_overrides:
            over.add_row(o.field, format_number(o.value), format_number(o.limit), o.bound, o.reason)
        console.print(over)

    if program.monitoring:
        mon = Table(title="Monitoring (from infusion start)", title_justify="left")
        mon.add_column("at", justify="right")
        mon.add_column("what")
        for m in program.monitoring:
            mon.add_row(_hms(m.at_s), m.label)
        console.print(mon)


def _compile(
    plan: Path,
    weight: float | None,
    concentration: str | None,
    syringe: str | None,
    pump: str | None,
    override: str | None,
    configs: Path | None,
) -> RateProgram:
    from pumpctl.plan.compile import compile_plan_file

    return compile_plan_file(
        plan,
        weight_kg=weight,
        concentration=concentration,
        syringe=syringe,
        override_reason=override,
        configs_dir=configs,
        pump=pump,
    )


@plan_app.command("show")
def show(
    plan: PlanArg,
    weight: WeightOpt = None,
    concentration: ConcOpt = None,
    syringe: SyringeOpt = None,
    pump: PumpOpt = None,
    override_soft_limits: OverrideOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the program as JSON.")] = False,
    configs: ConfigsOpt = None,
) -> None:
    """Compile PLAN and print the rate program (a table, or JSON with --json)."""
    from rich.console import Console

    program = _compile(plan, weight, concentration, syringe, pump, override_soft_limits, configs)
    if as_json:
        typer.echo(json.dumps(program.model_dump(mode="json"), indent=2))
        return
    render(program, Console(highlight=False, markup=False))


@plan_app.command("check")
def check(
    plan: PlanArg,
    weight: WeightOpt = None,
    concentration: ConcOpt = None,
    syringe: SyringeOpt = None,
    pump: PumpOpt = None,
    override_soft_limits: OverrideOpt = None,
    configs: ConfigsOpt = None,
) -> None:
    """Validate PLAN only. Exit 0 valid, 2 invalid, 3 valid only with a soft-limit override."""
    from pumpctl.plan.errors import PlanError, SoftLimitOverrideRequired

    override = override_soft_limits
    try:
        program = _compile(plan, weight, concentration, syringe, pump, override, configs)
    except SoftLimitOverrideRequired as exc:
        for problem in exc.problems:
            typer.echo(f"soft: {problem}", err=True)
        typer.echo(f'{plan}: valid only with --override-soft-limits "REASON"', err=True)
        raise typer.Exit(exc.exit_code) from None
    except PlanError as exc:
        for problem in exc.problems:
            typer.echo(f"{problem.severity}: {problem}", err=True)
        raise typer.Exit(exc.exit_code) from None
    if program.soft_limit_overrides:
        for o in program.soft_limit_overrides:
            typer.echo(f"overridden: {o.field} {format_number(o.value)} beyond {o.bound} "
                       f"{format_number(o.limit)}: {o.reason}", err=True)
        typer.echo(f"{plan}: valid with soft-limit overrides")
        raise typer.Exit(SoftLimitOverrideRequired.exit_code)
    typer.echo(
        f"{plan}: valid ({describe(program.total_dose_mg, Kind.DOSE)}, "
        f"{format_number(program.total_volume_ml, 8)} mL over "
        f"{describe(program.duration_s, Kind.DURATION)}, {len(program.segments)} segment(s))"
    )


def register(app: typer.Typer) -> None:
    """Add `pumpctl plan ...` to the root app."""
    app.add_typer(plan_app, name="plan")

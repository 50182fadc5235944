"""Plan -> RateProgram: validate against library, syringe and pump profile, then compile.

Order of work: read the plan; resolve drug, syringe, pump profile, weight and concentration
(command-line values win over the plan's); turn steps into exact doses and volumes; check
every limit, collecting all problems; refuse on any hard problem; require an override reason
for soft breaches; split steps into segments the pump can express; attach the monitoring
timeline and the limits the independent safety monitor will enforce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pumpctl.plan import checks
from pumpctl.plan.dose import DeliveryStep, delivery_steps
from pumpctl.plan.errors import PlanError, Problem, SoftLimitOverrideRequired
from pumpctl.plan.library import (
    DEFAULT_PUMP_PROFILE,
    DEFAULT_SYRINGE,
    Drug,
    DrugLibrary,
    PumpProfile,
    Syringe,
    load_library,
    load_pump_profile,
    load_syringes,
)
from pumpctl.plan.limits import Breach
from pumpctl.plan.model import PlanFile, load_plan
from pumpctl.plan.monitoring import MAX_EVENTS, check_monitoring, count_vitals, timeline
from pumpctl.plan.program import (
    PlannedStep,
    ProgramLimits,
    RateProgram,
    Segment,
    SoftLimitOverride,
    SyringeInfo,
)
from pumpctl.plan.representable import compile_steps
from pumpctl.units import Kind, UnitsError, exact, parse_quantity

MAX_REASON_CHARS = 500

__all__ = ["PlanError", "SoftLimitOverrideRequired", "compile_plan", "compile_plan_file"]


@dataclass(frozen=True, slots=True)
class _Context:
    library: DrugLibrary
    drug_key: str
    drug: Drug
    syringe: Syringe
    profile: PumpProfile


def compile_plan_file(
    path: str | Path,
    *,
    weight_kg: float | None = None,
    concentration: str | None = None,
    syringe: str | None = None,
    override_reason: str | None = None,
    configs_dir: Path | None = None,
    pump: str | None = None,
) -> RateProgram:
    """Read, validate and compile a plan file (see module docstring).

    Raises PlanError (exit 2) listing every problem, or SoftLimitOverrideRequired (exit 3)
    when only soft limits are breached and no `override_reason` was given.
    """
    plan = load_plan(path)
    return compile_plan(
        plan,
        weight_kg=weight_kg,
        concentration=concentration,
        syringe=syringe,
        override_reason=override_reason,
        configs_dir=configs_dir,
        pump=pump,
        source=str(path),
    )


def _resolve(
    plan: PlanFile, syringe_id: str | None, pump: str | None, configs_dir: Path | None
) -> _Context:
    library = load_library(configs_dir=configs_dir)
    syringes = load_syringes(configs_dir=configs_dir)
    problems = []
    drug = library.drugs.get(plan.drug)
    if drug is None:
        known = ", ".join(sorted(library.drugs))
        problems.append(Problem("drug", f"unknown drug {plan.drug!r} (library has: {known})"))
    chosen = syringe_id or plan.syringe or DEFAULT_SYRINGE
    found = syringes.get(chosen)
    if found is None:
        field = "--syringe" if syringe_id else "syringe"
        problems.append(Problem(field, f"unknown syringe {chosen!r} (see configs/syringes.yaml)"))
    try:
        name = pump or plan.pump or DEFAULT_PUMP_PROFILE
        profile = load_pump_profile(name, configs_dir=configs_dir)
    except PlanError as exc:
        problems += exc.problems
    if problems:
        raise PlanError(problems)
    assert drug is not None and found is not None
    return _Context(library, plan.drug, drug, found, profile)


def _weight(plan: PlanFile, weight_kg: float | None, problems: list[Problem]) -> Fraction | None:
    if weight_kg is None:
        return plan.weight.value if plan.weight is not None else None
    if isinstance(weight_kg, bool) or not isinstance(weight_kg, int | float):
        problems.append(Problem("--weight", f"{weight_kg!r} is not a number of kilograms"))
        return None
    if not math.isfinite(weight_kg) or weight_kg <= 0:
        problems.append(Problem("--weight", f"{weight_kg} kg must be a positive finite number"))
        return None
    return exact(weight_kg)


def _concentration(
    plan: PlanFile, text: str | None, drug: Drug, problems: list[Problem]
) -> Fraction | None:
    if text is None:
        return (plan.concentration or drug.concentrations.default).value
    try:
        measured = parse_quantity(text, Kind.CONCENTRATION, "--concentration")
    except UnitsError as exc:
        problems.append(Problem("--concentration", exc.message))
        return None
    if measured.value <= 0:
        problems.append(Problem("--concentration", f"{text!r} must be greater than zero"))
        return None
    return measured.value


def _reason(override_reason: str | None) -> str | None:
    if override_reason is None:
        return None
    reason = " ".join(override_reason.split())
    if not reason:
        raise PlanError([Problem("--override-soft-limits", "the reason must not be empty")])
    if len(reason) > MAX_REASON_CHARS:
        raise PlanError(
            [Problem("--override-soft-limits", f"reason longer than {MAX_REASON_CHARS} characters")]
        )
    return reason


def compile_plan(
    plan: PlanFile,
    *,
    weight_kg: float | None = None,
    concentration: str | None = None,
    syringe: str | None = None,
    override_reason: str | None = None,
    configs_dir: Path | None = None,
    pump: str | None = None,
    source: str = "",
) -> RateProgram:
    """Validate and compile an already-loaded plan (`compile_plan_file` reads one first)."""
    try:
        return _compile(
            plan, weight_kg, concentration, syringe, override_reason, configs_dir, pump
        )
    except PlanError as exc:
        if source and not exc.source:  # name the plan file in the one-line message
            raise type(exc)(exc.problems, source) from None
        raise


def _compile(
    plan: PlanFile,
    weight_kg: float | None,
    concentration: str | None,
    syringe_id: str | None,
    override_reason: str | None,
    configs_dir: Path | None,
    pump: str | None,
) -> RateProgram:
    reason = _reason(override_reason)
    ctx = _resolve(plan, syringe_id, pump, configs_dir)
    problems: list[Problem] = []
    weight = _weight(plan, weight_kg, problems)
    conc = _concentration(plan, concentration, ctx.drug, problems)
    if weight is None and not problems and checks.weight_needed(
        ctx.drug, [s.amount.kind for s in plan.steps]
    ):
        problems.append(
            Problem("weight", "a per-kg dose or limit needs the subject's weight: give "
                    "--weight KG or `weight:` in the plan")
        )
    if problems or conc is None:
        if weight is not None:  # report a bad weight together with the other problems
            problems += [b.problem() for b in ctx.library.subject_weight.check(weight, "weight")]
        raise PlanError(problems)

    steps = delivery_steps(plan.steps, weight, conc)
    subject = checks.Subject(weight, conc)
    library_problems, breaches = checks.check_library(
        ctx.library, ctx.drug_key, ctx.drug, subject, steps
    )
    problems += library_problems
    problems += checks.check_delivery(steps, ctx.syringe, ctx.profile)
    problems += check_monitoring(plan.monitoring, ctx.drug.monitoring)
    end_s = checks.sum_of(s.duration_s for s in steps)
    if plan.monitoring is not None and count_vitals(plan.monitoring, end_s) > MAX_EVENTS:
        problems.append(
            Problem("monitoring.vitals_every", f"more than {MAX_EVENTS} vital-sign checks")
        )
    hard = [b for b in breaches if b.severity == "hard"]
    soft = [b for b in breaches if b.severity == "soft"]
    if problems or hard:
        raise PlanError([*problems, *(b.problem() for b in hard), *(b.problem() for b in soft)])
    if soft and reason is None:
        raise SoftLimitOverrideRequired([b.problem() for b in soft])
    overrides = [_override(b, reason) for b in soft if reason is not None]
    return _build(plan, ctx, steps, subject, overrides)


def _override(breach: Breach, reason: str) -> SoftLimitOverride:
    return SoftLimitOverride(
        field=breach.field,
        value=float(breach.value),
        limit=float(breach.limit),
        bound=breach.bound,
        reason=reason,
    )


def _build(
    plan: PlanFile,
    ctx: _Context,
    steps: list[DeliveryStep],
    subject: checks.Subject,
    overrides: list[SoftLimitOverride],
) -> RateProgram:
    rate_range = ctx.profile.rate_limits_ml_h(ctx.syringe.inner_diameter_mm)
    compiled = compile_steps(
        [(s.volume_ml, s.duration_s) for s in steps], ctx.profile, rate_range
    )
    if compiled is None:
        raise PlanError(
            [Problem("steps", f"no rate unit of pump profile {ctx.profile.name} can express "
                     "these rates inside its limits for this syringe")]
        )
    segments: list[Segment] = []
    clock = Fraction(0)
    for pieces in compiled.pieces:
        for piece in pieces:
            segments.append(
                Segment(
                    start_s=float(clock),
                    duration_s=float(piece.duration_s),
                    rate_ml_h=float(piece.rate_ml_h),
                    volume_ml=float(piece.volume_ml),
                )
            )
            clock += piece.duration_s
    total_dose = sum((s.dose_mg for s in steps), Fraction(0))
    total_volume = sum((s.volume_ml for s in steps), Fraction(0))
    hard_max = checks.hard_max_dose_mg(ctx.drug, subject, steps)
    lo, hi = rate_range
    syringe = ctx.syringe
    return RateProgram(
        plan=plan.name or "plan",
        drug=ctx.drug_key,
        library_name=ctx.library.library.name,
        library_version=ctx.library.library.version,
        weight_kg=float(subject.weight_kg) if subject.weight_kg is not None else None,
        concentration_mg_per_ml=float(subject.concentration),
        total_dose_mg=float(total_dose),
        total_volume_ml=float(total_volume),
        duration_s=float(clock),
        syringe=SyringeInfo(
            id=syringe.id,
            name=syringe.name,
            inner_diameter_mm=syringe.inner_diameter_mm,
            capacity_ml=syringe.capacity_ml,
        ),
        pump_profile=ctx.profile.name,
        soft_limit_overrides=overrides,
        steps=[
            PlannedStep(
                label=s.label,
                start_s=float(s.start_s),
                duration_s=float(s.duration_s),
                dose_mg=float(s.dose_mg),
                volume_ml=float(s.volume_ml),
            )
            for s in steps
        ],
        segments=segments,
        worst_rate_deviation=float(compiled.worst_deviation),
        monitoring=timeline(plan.monitoring, clock) if plan.monitoring else [],
        limits=ProgramLimits(
            max_rate_ml_h=hi,
            min_rate_ml_h=lo,
            max_total_volume_ml=float(min(total_volume, syringe.capacity.value)),
            max_total_dose_mg=float(total_dose),
            hard_max_dose_mg=float(hard_max) if hard_max is not None else None,
            volume_resolution_ml=ctx.profile.volume_resolution_ml,
        ),
    )

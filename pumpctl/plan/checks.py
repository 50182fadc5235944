"""Checks of a plan's figures against the drug library, the syringe and the pump profile.

Library limits give `Breach`es (hard or soft: soft ones can be overridden with a reason);
everything else that makes a plan undeliverable (syringe too small, rate outside what the
pump can do with this syringe, volume below its resolution) is a hard `Problem`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from pumpctl.plan.dose import DeliveryStep, in_kind, needs_weight, to_mg
from pumpctl.plan.errors import Problem
from pumpctl.plan.library import Drug, DrugLibrary, PumpProfile, Syringe
from pumpctl.plan.limits import Breach
from pumpctl.units import Kind, describe, format_number


@dataclass(frozen=True, slots=True)
class Subject:
    weight_kg: Fraction | None
    concentration: Fraction


def _group_field(steps: Sequence[DeliveryStep], key: str | None = None) -> str:
    if len(steps) == 1:
        return f"steps[{steps[0].index}].{key or steps[0].amount_key}"
    indices = ",".join(str(s.index) for s in steps)
    keys = key or "/".join(sorted({s.amount_key for s in steps}))
    return f"steps[{indices}].{keys} (total)"


def check_library(
    library: DrugLibrary, drug_key: str, drug: Drug, subject: Subject, steps: list[DeliveryStep]
) -> tuple[list[Problem], list[Breach]]:
    """Weight, concentration and dose/duration/rate against the library."""
    problems: list[Problem] = []
    breaches: list[Breach] = []
    weight, conc = subject.weight_kg, subject.concentration
    if weight is not None:
        breaches += library.subject_weight.check(weight, "weight")
    breaches += drug.concentrations.limits.check(conc, "concentration")

    doses = [s for s in steps if not s.is_rate]
    rates = [s for s in steps if s.is_rate]
    problems += _unit_mismatches(drug_key, drug, steps)
    if problems:  # limits in another unit would only add noise
        return problems, breaches
    if doses:
        if drug.intermittent is None:
            problems.append(
                Problem(_group_field(doses), f"the library has no intermittent (dose over a "
                        f"duration) limits for {drug_key}; use dose_rate steps")
            )
        else:
            kind = drug.intermittent.dose.kind
            total = in_kind(kind, sum_of(d.dose_mg for d in doses),
                            sum_of(d.volume_ml for d in doses), weight) if kind else None
            if total is not None:
                breaches += drug.intermittent.dose.check(total, _group_field(doses))
            breaches += drug.intermittent.duration.check(
                sum_of(d.duration_s for d in doses), _group_field(doses, "over")
            )
    if rates:
        if drug.continuous is None:
            problems.append(
                Problem(_group_field(rates), f"the library has no continuous (dose rate) "
                        f"limits for {drug_key}; use dose steps")
            )
        else:
            for step in rates:
                rate_kind = drug.continuous.dose_rate.kind
                if rate_kind is None or (needs_weight(rate_kind) and weight is None):
                    continue
                per = weight if needs_weight(rate_kind) and weight is not None else 1
                breaches += drug.continuous.dose_rate.check(
                    step.dose_rate_mg_h / per, f"steps[{step.index}].dose_rate"
                )
            if drug.continuous.duration is not None:
                breaches += drug.continuous.duration.check(
                    sum_of(r.duration_s for r in rates), _group_field(rates, "over")
                )
    return problems, breaches


def _unit_mismatches(drug_key: str, drug: Drug, steps: list[DeliveryStep]) -> list[Problem]:
    """A step must be written in the library's dosing unit for the drug.

    "0.5 mg" for a drug the library doses in mg/kg is far more likely a slip than a choice
    (it is 70 times less for a 70 kg subject), so it is refused rather than converted.
    """
    problems = []
    for step in steps:
        limits = drug.continuous.dose_rate if step.is_rate and drug.continuous else (
            drug.intermittent.dose if not step.is_rate and drug.intermittent else None
        )
        expected = limits.kind if limits is not None else None
        if expected is not None and step.amount_kind != expected:
            problems.append(
                Problem(
                    f"steps[{step.index}].{step.amount_key}",
                    f"{step.amount_text} is not in the library's dosing unit for {drug_key} "
                    f"({expected.value}); write it in {expected.value}",
                    step.amount_text,
                    expected.value,
                )
            )
    return problems


def sum_of(values: Iterable[Fraction]) -> Fraction:
    return sum(values, Fraction(0))


def weight_needed(drug: Drug, steps_kinds: Sequence[Kind]) -> bool:
    """Weight-based plan steps or weight-based library limits need the subject's weight."""
    kinds = list(steps_kinds)
    if drug.intermittent is not None and drug.intermittent.dose.kind is not None:
        kinds.append(drug.intermittent.dose.kind)
    if drug.continuous is not None and drug.continuous.dose_rate.kind is not None:
        kinds.append(drug.continuous.dose_rate.kind)
    return any(needs_weight(k) for k in kinds)


def check_delivery(
    steps: list[DeliveryStep], syringe: Syringe, profile: PumpProfile
) -> list[Problem]:
    """Syringe capacity, pump rate range for this syringe, pump volume resolution."""
    problems = []
    total = sum_of(s.volume_ml for s in steps)
    if total > syringe.capacity.value:
        problems.append(
            Problem(
                "syringe",
                f"total volume {describe(total, Kind.VOLUME)} exceeds the capacity "
                f"{syringe.capacity} of {syringe.name} ({syringe.id}); use a larger syringe "
                "or a higher concentration",
                describe(total, Kind.VOLUME),
                str(syringe.capacity),
            )
        )
    lo, hi = profile.rate_limits_ml_h(syringe.inner_diameter_mm)
    resolution = profile.volume_resolution.value
    for step in steps:
        rate = step.rate_ml_h
        diameter = format_number(syringe.inner_diameter_mm)
        where = f"with {syringe.name} ({diameter} mm) on {profile.name}"
        if rate > hi:
            problems.append(
                Problem(f"steps[{step.index}]", f"rate {format_number(rate)} mL/h is above the "
                        f"pump's maximum {format_number(hi, 5)} mL/h {where}",
                        f"{format_number(rate)} mL/h", f"{format_number(hi, 5)} mL/h")
            )
        elif rate < lo:
            problems.append(
                Problem(f"steps[{step.index}]", f"rate {format_number(rate)} mL/h is below the "
                        f"pump's minimum {format_number(lo, 4)} mL/h {where}",
                        f"{format_number(rate)} mL/h", f"{format_number(lo, 4)} mL/h")
            )
        if step.volume_ml < resolution:
            problems.append(
                Problem(f"steps[{step.index}]", f"volume {describe(step.volume_ml, Kind.VOLUME)} "
                        f"is below the pump's resolution {profile.volume_resolution}",
                        describe(step.volume_ml, Kind.VOLUME), str(profile.volume_resolution))
            )
    return problems


def hard_max_dose_mg(drug: Drug, subject: Subject, steps: list[DeliveryStep]) -> Fraction | None:
    """The most the library would ever allow for this timing, in mg (None if unbounded)."""
    weight, conc = subject.weight_kg, subject.concentration
    total = Fraction(0)
    doses = [s for s in steps if not s.is_rate]
    rates = [s for s in steps if s.is_rate]
    if doses:
        limit = drug.intermittent.dose.hard_max if drug.intermittent else None
        if limit is None:
            return None
        mg = to_mg(limit.kind, limit.value, weight, conc)
        if mg is None:
            return None
        total += mg
    if rates:
        limit = drug.continuous.dose_rate.hard_max if drug.continuous else None
        if limit is None:
            return None
        per_h = limit.value * (weight or 0) if needs_weight(limit.kind) else limit.value
        if needs_weight(limit.kind) and weight is None:
            return None
        total += per_h * sum_of(r.duration_s for r in rates) / 3600
    return total

"""Dose arithmetic: plan steps to milligrams, millilitres and seconds, exactly.

Everything is a `Fraction`, so 0.5 mg/kg x 71.3 kg / 1 mg/mL is 35.65 mL and not
35.650000000000006 mL; only the compiled program is turned into floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from pumpctl.plan.model import Step
from pumpctl.units import Kind, Measured


@dataclass(frozen=True, slots=True)
class DeliveryStep:
    """One plan step in delivery terms."""

    index: int
    label: str
    amount_key: str  # "dose" | "volume" | "dose_rate"
    is_rate: bool
    start_s: Fraction
    duration_s: Fraction
    dose_mg: Fraction
    volume_ml: Fraction
    amount_kind: Kind
    amount_text: str  # the amount as given, for messages

    @property
    def rate_ml_h(self) -> Fraction:
        return self.volume_ml * 3600 / self.duration_s

    @property
    def dose_rate_mg_h(self) -> Fraction:
        return self.dose_mg * 3600 / self.duration_s


def needs_weight(kind: Kind) -> bool:
    return kind in (Kind.DOSE_PER_KG, Kind.VOLUME_PER_KG, Kind.DOSE_RATE_PER_KG)


def delivery_steps(
    steps: list[Step], weight_kg: Fraction | None, concentration: Fraction
) -> list[DeliveryStep]:
    """Convert each step; per-kg steps need `weight_kg` (the caller checks it is there)."""
    out = []
    start = Fraction(0)
    for index, step in enumerate(steps):
        duration = step.over.value
        dose_mg, volume_ml = _amounts(step.amount, duration, weight_kg, concentration)
        out.append(
            DeliveryStep(
                index=index,
                label=step.label or f"step {index + 1}",
                amount_key=step.amount_key,
                is_rate=step.is_rate,
                start_s=start,
                duration_s=duration,
                dose_mg=dose_mg,
                volume_ml=volume_ml,
                amount_kind=step.amount.kind,
                amount_text=str(step.amount),
            )
        )
        start += duration
    return out


def _amounts(
    amount: Measured, duration_s: Fraction, weight: Fraction | None, conc: Fraction
) -> tuple[Fraction, Fraction]:
    """(dose mg, volume mL) of one step."""
    value = amount.value
    if needs_weight(amount.kind):
        if weight is None:
            raise ValueError("a per-kg amount needs the subject's weight")
        value = value * weight
    hours = duration_s / 3600
    if amount.kind in (Kind.DOSE, Kind.DOSE_PER_KG):
        return value, value / conc
    if amount.kind in (Kind.VOLUME, Kind.VOLUME_PER_KG):
        return value * conc, value
    if amount.kind in (Kind.DOSE_RATE, Kind.DOSE_RATE_PER_KG):
        dose = value * hours
        return dose, dose / conc
    raise ValueError(f"not a step amount: {amount.kind}")  # pragma: no cover


def in_kind(
    kind: Kind, dose_mg: Fraction, volume_ml: Fraction, weight: Fraction | None
) -> Fraction | None:
    """A total expressed in a library limit's kind (None if that needs a missing weight)."""
    if needs_weight(kind) and weight is None:
        return None
    per = weight if needs_weight(kind) and weight is not None else Fraction(1)
    if kind in (Kind.DOSE, Kind.DOSE_PER_KG):
        return dose_mg / per
    if kind in (Kind.VOLUME, Kind.VOLUME_PER_KG):
        return volume_ml / per
    raise ValueError(f"not a total-amount kind: {kind}")  # pragma: no cover


def to_mg(kind: Kind, value: Fraction, weight: Fraction | None, conc: Fraction) -> Fraction | None:
    """A library amount (mg, mg/kg, mL, mL/kg) in mg for this subject and concentration."""
    if needs_weight(kind):
        if weight is None:
            return None
        value = value * weight
    if kind in (Kind.VOLUME, Kind.VOLUME_PER_KG):
        return value * conc
    return value

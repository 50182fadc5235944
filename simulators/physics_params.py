"""The vocabulary of the syringe-pump model (simulators/physics.py): motions, stalls, events
and the mechanical constants. Kept apart so the model itself stays a readable size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

RateLimits = Callable[[float], tuple[float, float]]  # diameter mm -> (min, max) mL/h


class Motion(StrEnum):
    INFUSE = "infuse"
    WITHDRAW = "withdraw"


class StallReason(StrEnum):
    OCCLUSION = "occlusion"  # line pressure reached the motor's force limit
    SYRINGE_EMPTY = "syringe_empty"  # plunger bottomed out
    SYRINGE_FULL = "syringe_full"  # withdrawing beyond the barrel


class EventKind(StrEnum):
    TARGET_REACHED = "target_reached"
    STALLED = "stalled"


@dataclass(frozen=True)
class ModelEvent:
    kind: EventKind
    at: float  # clock time
    stall: StallReason | None = None


@dataclass(frozen=True)
class PhysicsParams:
    """Mechanical constants. Defaults resemble a small lab syringe pump with a 60 mL syringe."""

    lead_pitch_mm: float = 0.794  # 32 threads per inch
    steps_per_rev: int = 3200  # 200 full steps, 1/16 microstepping
    slack_ml: float = 0.002  # backlash + stiction taken up before the plunger moves
    compliance_ml_per_kpa: float = 0.004  # syringe stopper + tubing
    resistance_kpa_per_ml_h: float = 0.04  # catheter and line
    stall_pressure_kpa: float = 120.0  # motor force limit expressed as line pressure
    ripple_fraction: float = 0.02  # peak flow ripple per lead-screw turn, fraction of flow
    noise_ml: float = 0.0  # standard deviation added by `sample_delivered_ml` (sensor noise)
    seed: int = 0
    # Start-up compliance (off by default): the rubber stopper compresses by up to this volume
    # before it moves the liquid at the plunger's pace. Delivery approaches the plunger's
    # travel exponentially over this much travel, so it takes longer at low rates, as on the
    # start-up graph of a real syringe pump. (The line's own compliance above charges in
    # about a second; this takes minutes.)
    startup_ml: float = 0.0
    # Lead-screw thread irregularity (off by default): standard deviation of the plunger's
    # position error, µm, drawn at `thread_points_per_rev` points per turn (seeded) and
    # interpolated between them. It gives the broadband flow irregularity of a real drive
    # that a pure per-turn ripple lacks.
    thread_error_um: float = 0.0
    thread_points_per_rev: int = 24


# What a rig file may set each parameter to (`pump.physics`): physically meaningful ranges,
# wide enough for any syringe pump worth simulating. Outside them the model divides by zero
# or runs backwards, so a rig is refused, naming the parameter and its range.
PHYSICS_LIMITS: dict[str, tuple[float, float]] = {
    "lead_pitch_mm": (0.05, 20.0),
    "steps_per_rev": (1, 1_000_000),
    "slack_ml": (0.0, 5.0),
    "compliance_ml_per_kpa": (0.0, 1.0),
    "resistance_kpa_per_ml_h": (0.0, 100.0),
    "stall_pressure_kpa": (1.0, 10_000.0),
    "ripple_fraction": (0.0, 0.5),
    "noise_ml": (0.0, 1.0),
    "seed": (0, 2**32 - 1),
    "startup_ml": (0.0, 10.0),
    "thread_error_um": (0.0, 100.0),
    "thread_points_per_rev": (1, 10_000),
}


def physics_problem(name: str, value: float) -> str | None:
    """Why `value` cannot be physics parameter `name`, or None when it can."""
    low, high = PHYSICS_LIMITS[name]
    integral = isinstance(getattr(PhysicsParams(), name), int)
    if integral and value != int(value):
        return f"physics.{name}: {value:g} is not a whole number"
    if not low <= value <= high:  # NaN fails this too
        return f"physics.{name}: {value:g} is outside {low:g}-{high:g}"
    return None


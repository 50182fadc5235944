"""The `PumpDriver` protocol every pump speaks to the controller, and what it returns.

Everything above this line thinks in mL, mL/h and seconds; everything below it in bytes.
A driver verifies each setting by reading it back, and raises one of the errors below
rather than returning a doubtful value: the controller treats any `PumpError` as a reason
to stop the pump.

Pumps differ in what they can do, and the controller must not guess: each driver declares
its `PumpCapabilities` (a hardware volume cap or not, a watchdog of its own or not, pause,
the rates it can be told, the counters it reports), and the controller and the safety monitor
read them. A protocol's number rules (New Era's four digits) reach this side of the line only
as data in those capabilities, taken from the pump's profile (configs/pumps/*.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

from pumpctl.errors import PumpctlError


class PumpState(StrEnum):
    STOPPED = "stopped"
    INFUSING = "infusing"
    WITHDRAWING = "withdrawing"
    PAUSED = "paused"
    TIMED_PAUSE = "timed_pause"
    WAITING_TRIGGER = "waiting_trigger"
    PURGING = "purging"
    ALARM = "alarm"

    @property
    def is_moving(self) -> bool:
        # A set lookup (hash of the member's string is cached) rather than a tuple scan of
        # str comparisons: asked several times per poll.
        return self in _MOVING_STATES


_MOVING_STATES = frozenset({PumpState.INFUSING, PumpState.WITHDRAWING, PumpState.PURGING})


class Direction(StrEnum):
    INFUSE = "infuse"
    WITHDRAW = "withdraw"


class AlarmKind(StrEnum):
    POWER_RESET = "power_reset"
    STALL = "stall"  # motor stalled; on syringe pumps the usual sign of an occlusion
    WATCHDOG = "watchdog"  # safe-mode communication timeout
    PROGRAM_ERROR = "program_error"
    PHASE_OUT_OF_RANGE = "phase_out_of_range"
    SYRINGE_EMPTY = "syringe_empty"
    VOLUME_LIMIT_OUT_OF_RANGE = "volume_limit_out_of_range"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Alarm:
    kind: AlarmKind
    code: str  # what the pump actually said (New Era letter, Modbus alarm number)
    message: str = ""


@dataclass(frozen=True)
class PumpIdentity:
    model: str
    firmware: str
    address: int
    raw: str = ""


@dataclass(frozen=True)
class PumpStatus:
    state: PumpState
    rate_ml_h: float
    infused_ml: float
    withdrawn_ml: float
    alarm: Alarm | None = None
    direction: Direction | None = None


class PumpError(PumpctlError):
    """Any doubt about the pump: the controller's answer is always to stop it."""

    exit_code = 4


class PumpTimeout(PumpError):
    """No (complete) reply within the request timeout."""


class PumpChecksumError(PumpError):
    """A safe-mode frame whose CRC does not match its payload."""


class PumpProtocolError(PumpError):
    """Bytes that are not a valid reply, or an answer the driver did not expect."""


class PumpOutOfRange(PumpError):
    """The pump refused a value (`?OOR`, Modbus exception 3), or we refused to send it."""


class PumpNotApplicable(PumpError):
    """The pump refused a command in its current state (`?NA`)."""


class PumpAlarmError(PumpError):
    """The pump is in alarm; the alarm must be acknowledged before it can run."""

    def __init__(self, alarm: Alarm, message: str | None = None) -> None:
        default = f"pump alarm {alarm.kind.value} ({alarm.code}) {alarm.message}".strip()
        super().__init__(message or default)
        self.alarm = alarm


class ReadbackMismatch(PumpError):
    """A setting read back from the pump differs from what was sent."""

    def __init__(self, field: str, sent: object, read: object) -> None:
        super().__init__(f"read-back mismatch on {field}: sent {sent}, pump reports {read}")
        self.field = field
        self.sent = sent
        self.read = read


# ---- capabilities ---------------------------------------------------------------------------


def _exact(value: Fraction | float | int) -> Fraction:
    """A float as the decimal it was written as (53.472 is 53472/1000, not its binary twin)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        return Fraction(repr(value)) if math.isfinite(value) else Fraction(-1)
    return Fraction(value)


@dataclass(frozen=True)
class NumberFormat:
    """How many decimal digits a pump field holds, e.g. 4 digits with at most 3 decimals
    (9.999, 99.99, 999.9, 9999): the step a field can take grows with its value."""

    max_digits: int
    max_decimals: int

    def decimals_at(self, value: Fraction | float) -> int:
        """How many decimals a number of this size may carry (asked per status sample: plain
        integer arithmetic, no exact conversion needed to count the integer digits)."""
        int_digits = len(str(math.floor(value))) if value >= 1 else 1
        return max(0, min(self.max_decimals, self.max_digits - int_digits))

    def step_at(self, value: float) -> float:
        """The smallest step the field can show near `value`."""
        return 10.0 ** -self.decimals_at(abs(value))

    def expresses(self, value: Fraction | float) -> bool:
        """`value` can be written exactly."""
        v = _exact(value)
        if v < 0 or v > 10 ** self.max_digits - 1:
            return False
        return (v * 10 ** self.decimals_at(v)).denominator == 1


@dataclass(frozen=True)
class Resolution:
    """The smallest volume step a pump takes or shows near a value: a fixed step, and for a
    decimal field its digits (the step then grows with the value). A binary float register
    (Modbus FLOAT32) has a fixed step only."""

    step_ml: float = 0.001
    digits: NumberFormat | None = None

    def at(self, value_ml: float) -> float:
        if self.digits is None:
            return self.step_ml
        return max(self.step_ml, self.digits.step_at(value_ml))

    def floor(self, value_ml: float) -> float:
        """The largest volume <= `value_ml` the field can hold (0 for nothing)."""
        if value_ml <= 0:
            return 0.0
        q = self.at(value_ml)
        decimals = max(0, -math.floor(math.log10(q) + 1e-9))
        return round(math.floor(value_ml / q + 1e-9) * q, decimals)


@dataclass(frozen=True)
class RateFormat:
    """The rates a pump can be told: in which units (code, mL/h per unit, the pump's order of
    preference), with which digits (None: a binary float, any rate its range allows), and
    whether the unit may change while the pump runs."""

    units: tuple[tuple[str, Fraction], ...] = (("mL/h", Fraction(1)),)
    digits: NumberFormat | None = None
    units_change_while_running: bool = True

    def expresses(self, rate_ml_h: float, unit: str) -> bool:
        if self.digits is None:
            return math.isfinite(rate_ml_h) and rate_ml_h > 0
        return rate_ml_h > 0 and self.digits.expresses(_exact(rate_ml_h) / dict(self.units)[unit])

    def step_at(self, rate_ml_h: float, unit: str) -> float:
        """The step between writable rates near `rate_ml_h` in `unit`, in mL/h (0 for a
        binary float, which writes any rate)."""
        if self.digits is None or rate_ml_h <= 0:
            return 0.0
        size = float(dict(self.units)[unit])
        return self.digits.step_at(rate_ml_h / size) * size

    def unit_for(self, rates_ml_h: Iterable[float]) -> str | None:
        """The first unit that writes every one of these rates exactly, or None."""
        rates = list(rates_ml_h)
        for unit, _ in self.units:
            if all(self.expresses(r, unit) for r in rates):
                return unit
        return None

    def problem(self, rates_ml_h: Iterable[float]) -> str | None:
        """Why a run with these rates cannot be set on this pump (None: it can)."""
        rates = list(rates_ml_h)
        for r in rates:
            if not any(self.expresses(r, unit) for unit, _ in self.units):
                return (f"rate {r:g} mL/h cannot be written in any rate unit of the pump "
                        f"({', '.join(u for u, _ in self.units)})")
        if not self.units_change_while_running and self.unit_for(rates) is None:
            return ("no single rate unit of the pump writes every rate of the program "
                    f"({', '.join(f'{r:g}' for r in rates)} mL/h), and it cannot change "
                    "units while it runs")
        return None


@dataclass(frozen=True)
class Counters:
    """The delivered-volume counters a pump reports, and their resolution."""

    withdrawn: bool = True  # a separate withdrawn counter (every pump reports infused)
    resolution: Resolution = field(default_factory=Resolution)


@dataclass(frozen=True)
class VolumeCap:
    """A hardware volume-to-dispense: the pump stops itself when it has delivered this."""

    resolution: Resolution = field(default_factory=Resolution)


@dataclass(frozen=True)
class WatchdogRange:
    """A watchdog of the pump's own: it stops when no valid request came for this long."""

    min_s: int
    max_s: int


@dataclass(frozen=True)
class PumpCapabilities:
    """What a pump can do, as its driver declares it. `None` means "this pump has none":
    without a volume cap the controller stops the pump at the planned total itself; without
    a watchdog nothing stops the pump if the controller dies (header and console say so);
    without pause a pause is a stop, and resuming sets the volume cap again."""

    rates: RateFormat = field(default_factory=RateFormat)
    counters: Counters = field(default_factory=Counters)
    volume_cap: VolumeCap | None = field(default_factory=VolumeCap)
    watchdog: WatchdogRange | None = None
    pause: bool = True

    def as_record(self) -> dict[str, Any]:
        """For the journal header (rate units as {code: mL/h per unit})."""
        record = asdict(self)
        record["rates"]["units"] = {code: float(size) for code, size in self.rates.units}
        return record


@dataclass(frozen=True)
class RunOutline:
    """What a run will ask of a pump, told to its driver before it starts (`prepare`)."""

    rates_ml_h: tuple[float, ...]  # every rate the run will set, in order
    volume_ml: float  # what it will deliver


@runtime_checkable
class PumpDriver(Protocol):
    """One pump, as the controller sees it. All volumes mL, rates mL/h, times s.

    Pause (only when `capabilities.pause`): the pump stops moving but keeps its place; on
    `run()` it goes on with the same volume-to-dispense, counting what it delivered before the
    pause, so the hardware cap stays at the planned total. A pump without pause is stopped
    instead; the controller then sets its volume cap again to what remains before `run()`.
    """

    @property
    def capabilities(self) -> PumpCapabilities:
        """What this pump can do (constant for the life of the driver)."""
        ...

    @property
    def alarm_at_open(self) -> Alarm | None:
        """The alarm the pump was showing when `open()` took it over (a power-up, the
        watchdog that stopped it after a controller died), or None."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def identify(self) -> PumpIdentity: ...

    async def prepare(self, outline: RunOutline) -> Mapping[str, object]:
        """Before a run starts (pump stopped): choose whatever must hold for the whole run,
        e.g. one rate unit for every rate in it, because a pump may refuse to change units
        while it runs. Raises `PumpOutOfRange` if the run cannot be set on this pump; returns
        the choices made (journaled)."""
        ...

    async def set_diameter(self, mm: float) -> float:
        """Set the syringe inner diameter; returns the read-back value."""
        ...

    async def set_rate(self, ml_h: float) -> float:
        """Set the rate (takes effect at once while running); returns the read-back rate."""
        ...

    async def set_volume_limit(self, ml: float) -> float:
        """Volume to dispense before the pump stops itself (0 = no limit); returns read-back.
        Only when `capabilities.volume_cap`."""
        ...

    async def set_direction(self, direction: Direction) -> Direction: ...

    async def run(self) -> None: ...

    async def pause(self) -> None:
        """Stop moving and keep the place (see the class docstring); only when
        `capabilities.pause`."""
        ...

    async def stop(self) -> None:
        """Stop completely (not paused), whatever the current state."""
        ...

    async def status(self) -> PumpStatus: ...

    async def clear_counters(self) -> None: ...

    async def acknowledge_alarm(self) -> None: ...

    async def set_watchdog(self, seconds: int) -> None:
        """Arm (seconds > 0) or disarm (0) the pump's own communication watchdog (only when
        `capabilities.watchdog`, within its range).

        While armed, the driver keeps the pump fed (heartbeat) as long as the process lives,
        so the watchdog fires only when the controller is gone.
        """
        ...

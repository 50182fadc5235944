"""The `PumpDriver` protocol every pump speaks to the controller, and what it returns.

Everything above this line thinks in mL, mL/h and seconds; everything below it in bytes.
A driver verifies each setting by reading it back, and raises one of the errors below
rather than returning a doubtful value: the controller treats any `PumpError` as a reason
to stop the pump.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class PumpDriver(Protocol):
    """One pump, as the controller sees it. All volumes mL, rates mL/h, times s."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def identify(self) -> PumpIdentity: ...

    async def set_diameter(self, mm: float) -> float:
        """Set the syringe inner diameter; returns the read-back value."""
        ...

    async def set_rate(self, ml_h: float) -> float:
        """Set the rate (takes effect at once while running); returns the read-back rate."""
        ...

    async def set_volume_limit(self, ml: float) -> float:
        """Volume to dispense before the pump stops itself (0 = no limit); returns read-back."""
        ...

    async def set_direction(self, direction: Direction) -> Direction: ...

    async def run(self) -> None: ...

    async def pause(self) -> None: ...

    async def stop(self) -> None:
        """Stop completely (not paused), whatever the current state."""
        ...

    async def status(self) -> PumpStatus: ...

    async def clear_counters(self) -> None: ...

    async def acknowledge_alarm(self) -> None: ...

    async def set_watchdog(self, seconds: int) -> None:
        """Arm (seconds > 0) or disarm (0) the pump's own communication watchdog.

        While armed, the driver keeps the pump fed (heartbeat) as long as the process lives,
        so the watchdog fires only when the controller is gone.
        """
        ...

"""Fault injections for the simulated pumps, as values that tests and HIL scenarios schedule.

A fault is a kind, a time (seconds after the simulator started, on its clock) and a few
parameters. On the command line it is written `KIND@TIME[:key=value,...]`, for example
`occlusion@10m`, `power-reset@90s`, `delay-replies@30s:delay=2,count=3`,
`free-flow@5m:factor=1.5`, `stuck-motor@2m:pump=1`. TIME takes `ms`, `s`, `m`/`min` or `h`
(a bare number is seconds). Minutes are written `m` here, which is why this is parsed by a
small grammar rather than pint (pint reads `m` as metres).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pumpctl.errors import UsageError


class FaultKind(StrEnum):
    OCCLUSION = "occlusion"  # line blocked: pressure builds until the motor stalls
    SYRINGE_EMPTY = "syringe-empty"  # the plunger is at the end of its travel
    DROP_REPLIES = "drop-replies"  # the next `count` replies are not sent
    DELAY_REPLIES = "delay-replies"  # the next `count` replies are sent `delay` s late
    CORRUPT_BYTES = "corrupt-bytes"  # one byte of each of the next `count` replies is flipped
    # (with inbound=1: of the next `count` packets the pump receives)
    POWER_RESET = "power-reset"  # power lost for `off` s: stops, R alarm at power-up
    STUCK_MOTOR = "stuck-motor"  # steps are counted but nothing moves
    FREE_FLOW = "free-flow"  # delivered flow is `factor` times the plunger flow
    IGNORE_FIRST = "ignore-first-command"  # the field quirk: first command after power-up lost


# Parameters each kind accepts, with defaults. `pump` (address) is accepted by every kind.
FAULT_PARAMS: dict[FaultKind, dict[str, float]] = {
    FaultKind.OCCLUSION: {"clear_after": 0.0},  # 0 = stays occluded
    FaultKind.SYRINGE_EMPTY: {},
    FaultKind.DROP_REPLIES: {"count": 1},  # count -1 = every reply from then on
    FaultKind.DELAY_REPLIES: {"count": 1, "delay": 2.0},
    FaultKind.CORRUPT_BYTES: {"count": 1, "index": 1, "mask": 0x40, "inbound": 0},
    FaultKind.POWER_RESET: {"off": 0.0},
    FaultKind.STUCK_MOTOR: {},
    FaultKind.FREE_FLOW: {"factor": 1.5},
    FaultKind.IGNORE_FIRST: {},
}


class FaultSpecError(UsageError):
    """A fault written on the command line that cannot be understood."""


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    at_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> float:
        """A parameter's value, or its default for this kind."""
        if name in self.params:
            return float(self.params[name])
        return float(FAULT_PARAMS[self.kind].get(name, 0.0))

    @property
    def pump_address(self) -> int | None:
        return int(self.params["pump"]) if "pump" in self.params else None

    def __str__(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind.value}@{self.at_s:g}s" + (f":{extra}" if extra else "")


_TIME = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?")
_TIME_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


def parse_time(text: str, *, field_name: str = "time") -> float:
    match = _TIME.fullmatch(text.strip())
    if not match:
        raise FaultSpecError(
            f"{field_name} {text!r} is not a time like 90s, 10m, 1.5h or 250ms")
    return float(match[1]) * _TIME_FACTOR[match[2]]


def parse_fault(text: str) -> Fault:
    """`KIND@TIME[:key=value,...]` -> Fault, with a one-line error naming what is wrong."""
    head, _, tail = text.strip().partition(":")
    kind_text, at, time_text = head.partition("@")
    kinds = ", ".join(k.value for k in FaultKind)
    try:
        kind = FaultKind(kind_text.strip().lower())
    except ValueError:
        raise FaultSpecError(
            f"fault kind {kind_text!r} in {text!r} is not one of: {kinds}") from None
    if not at:
        raise FaultSpecError(
            f"fault {text!r} needs a time: {kind.value}@TIME, e.g. {kind.value}@10m")
    at_s = parse_time(time_text, field_name=f"fault time in {text!r}")
    params: dict[str, Any] = {}
    allowed = {**FAULT_PARAMS[kind], "pump": 0.0}
    for item in filter(None, (part.strip() for part in tail.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            names = ", ".join(sorted(allowed))
            raise FaultSpecError(f"fault parameter {item!r} in {text!r}: expected key=value "
                                 f"with key one of {names}")
        try:
            number = (parse_time(value) if key in ("delay", "off", "clear_after")
                      else float(value))
        except ValueError:
            raise FaultSpecError(
                f"fault parameter {key}={value!r} in {text!r} is not a number") from None
        if not math.isfinite(number):
            raise FaultSpecError(f"fault parameter {key}={value!r} in {text!r} is not finite")
        if key == "pump" and not (number.is_integer() and 0 <= number <= 99):
            raise FaultSpecError(f"fault parameter pump={value} in {text!r} is not an address 0-99")
        integral = ("pump", "count", "index", "mask", "inbound")
        params[key] = int(number) if key in integral else number
    return Fault(kind, at_s, params)

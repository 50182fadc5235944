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


# What each parameter may be: (lowest, highest, whole number?). A value outside would either
# crash the simulator mid-run (a mask above one byte) or silently mean something else (a
# negative count, a negative factor), so it is refused when the fault is written.
PARAM_LIMITS: dict[str, tuple[float, float, bool]] = {
    "count": (-1, 1_000_000, True),  # -1: every reply from then on
    "index": (0, 255, True),
    "mask": (0, 255, True),  # 0: the default 0x40
    "inbound": (0, 1, True),
    "delay": (0.001, 3600.0, False),
    "off": (0.0, 86_400.0, False),
    "clear_after": (0.0, 86_400.0, False),
    "factor": (0.01, 100.0, False),
    "pump": (0, 99, True),
}


class FaultSpecError(UsageError):
    """A fault written on the command line that cannot be understood."""


class FaultParams:
    """What every fault family's fault does with its `kind`, `at_s` and `params`: the
    parameter values with their kind's defaults (`defaults()`), the pump it is for, and the
    text it was written as (`KIND@TIMEs[:key=value,...]`)."""

    kind: StrEnum
    at_s: float
    params: dict[str, Any]

    def defaults(self) -> dict[str, float]:
        raise NotImplementedError

    def param(self, name: str) -> float:
        """A parameter's value, or its default for this kind."""
        if name in self.params:
            return float(self.params[name])
        return float(self.defaults().get(name, 0.0))

    @property
    def pump_address(self) -> int | None:
        return int(self.params["pump"]) if "pump" in self.params else None

    def __str__(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind.value}@{self.at_s:g}s" + (f":{extra}" if extra else "")


@dataclass(frozen=True)
class Fault(FaultParams):
    kind: FaultKind
    at_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, float]:
        return FAULT_PARAMS[self.kind]


_TIME = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?")
_TIME_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


def parse_time(text: str, *, field_name: str = "time") -> float:
    match = _TIME.fullmatch(text.strip())
    if not match:
        raise FaultSpecError(
            f"{field_name} {text!r} is not a time like 90s, 10m, 1.5h or 250ms")
    return float(match[1]) * _TIME_FACTOR[match[2]]


def split_spec(text: str, kinds: list[str]) -> tuple[str, float, str]:
    """`KIND@TIME[:params]` -> (kind as written, lower-cased; seconds; the params text), with
    a one-line error naming what is missing. `kinds` is only for the error message."""
    head, _, tail = text.strip().partition(":")
    kind_text, at, time_text = head.partition("@")
    kind = kind_text.strip().lower()
    if kind not in kinds:
        raise FaultSpecError(
            f"fault kind {kind_text!r} in {text!r} is not one of: {', '.join(kinds)}")
    if not at:
        raise FaultSpecError(f"fault {text!r} needs a time: {kind}@TIME, e.g. {kind}@10m")
    return kind, parse_time(time_text, field_name=f"fault time in {text!r}"), tail


# Parameters written as times (`off=1.5m`); the others are plain numbers.
TIME_PARAMS = frozenset({"delay", "off", "clear_after", "for", "gap"})


def parse_params(text: str, tail: str, allowed: dict[str, float],
                 limits: dict[str, tuple[float, float, bool]]) -> dict[str, Any]:
    """The `key=value,...` part of fault `text`: each key one of `allowed`, each value within
    `limits[key]` (lowest, highest, whole number?); one-line errors naming the parameter."""
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in tail.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            names = ", ".join(sorted(allowed))
            raise FaultSpecError(f"fault parameter {item!r} in {text!r}: expected key=value "
                                 f"with key one of {names}")
        try:
            number = parse_time(value) if key in TIME_PARAMS else float(value)
        except FaultSpecError:
            raise FaultSpecError(f"fault parameter {key}={value!r} in {text!r} is not a time "
                                 "like 90s, 10m, 1.5h or 250ms") from None
        except ValueError:
            raise FaultSpecError(
                f"fault parameter {key}={value!r} in {text!r} is not a number") from None
        if not math.isfinite(number):
            raise FaultSpecError(f"fault parameter {key}={value!r} in {text!r} is not finite")
        low, high, whole = limits[key]
        if (whole and not number.is_integer()) or not low <= number <= high or \
                (key == "count" and number == 0):
            span = (f"a whole number {low:.0f}-{high:.0f}" if whole else f"{low:g}-{high:g}")
            if key == "count":
                span = f"a whole number 1-{high:.0f}, or -1 for every one"
            raise FaultSpecError(f"fault parameter {key}={value} in {text!r} must be {span}")
        params[key] = int(number) if whole else number
    return params


def parse_fault(text: str) -> Fault:
    """`KIND@TIME[:key=value,...]` -> Fault, with a one-line error naming what is wrong."""
    name, at_s, tail = split_spec(text, [k.value for k in FaultKind])
    kind = FaultKind(name)
    params = parse_params(text, tail, {**FAULT_PARAMS[kind], "pump": 0.0}, PARAM_LIMITS)
    return Fault(kind, at_s, params)


def parse_faults(texts: list[str], *, pumps: int) -> list[Fault]:
    """Every `KIND@TIME[:key=value,...]` of a command line, for a simulator of `pumps` pumps
    (addresses 0..pumps-1): the one parser of `sim newera --fault` and `run --sim-fault`."""
    faults = [parse_fault(text) for text in texts]
    for item in faults:
        if (item.pump_address or 0) >= pumps:
            raise FaultSpecError(f"fault {str(item)!r}: no pump at address {item.pump_address} "
                                 f"(the simulator has {pumps} pump{'s' if pumps != 1 else ''}, "
                                 f"addresses 0-{pumps - 1})")
    return faults

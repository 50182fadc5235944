"""Faults only a Modbus pump has, beside every fault of `simulators.faults`.

Written like the others (`KIND@TIME[:key=value,...]`, the same grammar and the same one-line
errors, parsed by the same functions):

- `exception@TIME[:code=4,count=1]`: the next `count` requests are answered with exception
  `code` (4: server device failure) and not carried out; count -1: every one from then on.
- `busy@TIME[:for=30s]`: for `for` seconds every request is answered with exception 6 (server
  device busy) and not carried out, as a pump busy with a long command answers.
- `silence@TIME[:for=0]`: for `for` seconds (0: from then on) the pump hears nothing and
  answers nothing, as with its cable pulled (its watchdog, if armed, is not fed).
- `split-replies@TIME[:count=1,gap=1ms]`: the next `count` replies leave in two pieces, the
  second `gap` seconds after the first (below t3.5 a conforming client joins them; above it a
  conforming RTU client drops both halves).
- `glue-replies@TIME[:count=1]`: the next `count` replies leave in one write with the same
  answer from another unit id right behind them, as a client on a shared line (or behind a
  gateway) hears two devices answer back to back; a client must take its own unit's frame.

`pump=N` names the unit id the fault is for (default: the first unit). Every kind of
`simulators.faults` is accepted too (occlusion, power-reset, drop-replies, ...), with `pump=`
also a unit id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from simulators.faults import (
    FAULT_PARAMS,
    PARAM_LIMITS,
    Fault,
    FaultKind,
    FaultParams,
    FaultSpecError,
    parse_params,
    split_spec,
)


class ModbusFaultKind(StrEnum):
    EXCEPTION = "exception"
    BUSY = "busy"
    SILENCE = "silence"
    SPLIT_REPLIES = "split-replies"
    GLUE_REPLIES = "glue-replies"


MODBUS_FAULT_PARAMS: dict[ModbusFaultKind, dict[str, float]] = {
    ModbusFaultKind.EXCEPTION: {"code": 4, "count": 1},
    ModbusFaultKind.BUSY: {"for": 30.0},
    ModbusFaultKind.SILENCE: {"for": 0.0},  # 0: for good
    ModbusFaultKind.SPLIT_REPLIES: {"count": 1, "gap": 0.001},
    ModbusFaultKind.GLUE_REPLIES: {"count": 1},
}
MAX_UNIT = 247
MODBUS_PARAM_LIMITS: dict[str, tuple[float, float, bool]] = {
    **PARAM_LIMITS,
    "pump": (0, MAX_UNIT, True),  # a unit id here
    "code": (1, 255, True),
    "for": (0.0, 86_400.0, False),
    "gap": (0.0, 60.0, False),
}


@dataclass(frozen=True)
class ModbusFault(FaultParams):
    kind: ModbusFaultKind
    at_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, float]:
        return MODBUS_FAULT_PARAMS[self.kind]


AnyFault = Fault | ModbusFault


def parse_modbus_fault(text: str) -> AnyFault:
    """A fault of either family from `KIND@TIME[:key=value,...]`; one-line errors."""
    kinds = [k.value for k in FaultKind] + [k.value for k in ModbusFaultKind]
    name, at_s, tail = split_spec(text, kinds)
    if name in MODBUS_FAULT_PARAMS:
        kind = ModbusFaultKind(name)
        params = parse_params(text, tail, {**MODBUS_FAULT_PARAMS[kind], "pump": 0.0},
                              MODBUS_PARAM_LIMITS)
        return ModbusFault(kind, at_s, params)
    common = FaultKind(name)
    params = parse_params(text, tail, {**FAULT_PARAMS[common], "pump": 0.0},
                          MODBUS_PARAM_LIMITS)
    return Fault(common, at_s, params)


def parse_modbus_faults(texts: Sequence[str], *, units: Sequence[int]) -> list[AnyFault]:
    """Every fault of a command line for a simulator answering at unit ids `units`."""
    faults = [parse_modbus_fault(text) for text in texts]
    for item in faults:
        unit = item.pump_address
        if unit is not None and unit not in units:
            ids = ", ".join(str(u) for u in units)
            raise FaultSpecError(f"fault {str(item)!r}: no pump at unit id {unit} (the "
                                 f"simulator answers at unit id{'s' if len(units) > 1 else ''} "
                                 f"{ids})")
    return faults

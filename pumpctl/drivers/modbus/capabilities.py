"""What a Modbus pump can do, read off its map, as the driver contract's `PumpCapabilities`.

A map without a volume target (ISCO D) declares no volume cap, so the controller stops the
pump at the planned total itself; a map without a watchdog register (ISCO D, Vindum) declares
no watchdog, so the run header, console and journal say nothing stops the pump if pumpctl
dies. Rates are told in the unit the map's rate register takes; a FLOAT32 register takes any
rate its range allows (no decimal digits rule), an integer register's steps are its scale's.
"""

from __future__ import annotations

import math
from fractions import Fraction

from pumpctl.drivers.base import (
    Counters,
    NumberFormat,
    PumpCapabilities,
    RateFormat,
    Resolution,
    VolumeCap,
    WatchdogRange,
)
from pumpctl.drivers.modbus.pumpmap import RATE_UNITS, PumpMap, Register, ValueType

FLOAT_VOLUME_STEP_ML = 0.001  # what a FLOAT32 counter is trusted to (it holds finer)


def _digits(reg: Register) -> NumberFormat | None:
    """The decimal format of an integer register scaled by a power of ten (None: a float,
    or a scale that is not one)."""
    limits = reg.value_type.int_range
    if reg.value_type is ValueType.F32 or limits is None:
        return None
    decimals = round(math.log10(reg.scale))
    if not math.isclose(10.0 ** decimals, reg.scale) or decimals < 0:
        return None
    return NumberFormat(max_digits=len(str(limits[1])), max_decimals=decimals)


def _resolution(reg: Register) -> Resolution:
    if reg.value_type is ValueType.F32:
        return Resolution(step_ml=FLOAT_VOLUME_STEP_ML)
    return Resolution(step_ml=1.0 / reg.scale)


def capabilities(pump_map: PumpMap) -> PumpCapabilities:
    """What a pump with this map can do (see the module docstring)."""
    ops = pump_map.operations
    assert ops.rate.unit is not None
    rate_reg = pump_map.register(ops.rate.register)
    unit_size = Fraction(repr(RATE_UNITS[ops.rate.unit]))  # mL/h per unit, as written
    rates = RateFormat(units=((ops.rate.unit, unit_size),), digits=_digits(rate_reg))
    counters = Counters(withdrawn=ops.counters.withdrawn is not None,
                        resolution=_resolution(pump_map.register(ops.counters.infused)))
    cap = None
    if ops.volume_target is not None:
        cap = VolumeCap(_resolution(pump_map.register(ops.volume_target.register)))
    watchdog = None
    if ops.watchdog is not None:
        watchdog = WatchdogRange(max(1, ops.watchdog.min_s), ops.watchdog.max_s)
    return PumpCapabilities(rates=rates, counters=counters, volume_cap=cap, watchdog=watchdog,
                            pause=ops.pause is not None)

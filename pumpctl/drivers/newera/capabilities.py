"""What a New Era pump can do, as the driver contract's `PumpCapabilities`.

The protocol's facts are written here: a volume to dispense (`VOL`), safe mode's watchdog of
1-255 s (`SAF`), `STP` that pauses a running pump. The numbers the pump can be told (digits,
rate units and whether they may change while running, the volume resolution) are the pump
profile's (configs/pumps/newera-ne1000.yaml), the same data the plan compiler uses, so the
number rule has one home. The profile is read on first use: a bench command that never asks
does not load it.
"""

from __future__ import annotations

import functools

from pumpctl.drivers.base import (
    Counters,
    NumberFormat,
    PumpCapabilities,
    RateFormat,
    Resolution,
    VolumeCap,
    WatchdogRange,
)
from pumpctl.drivers.newera.safe_mode import MAX_WATCHDOG_S

PROFILE = "newera-ne1000"  # configs/pumps/: the number format, rate units and resolution


@functools.cache
def capabilities(profile: str = PROFILE) -> PumpCapabilities:
    """What a New Era pump with this profile can do (see the module docstring)."""
    from pumpctl.plan.library import load_pump_profile

    loaded = load_pump_profile(profile)
    fmt = loaded.number_format
    digits = NumberFormat(fmt.max_digits, fmt.max_decimals)
    resolution = Resolution(loaded.volume_resolution_ml, digits)
    return PumpCapabilities(
        rates=RateFormat(tuple(loaded.rate_unit_sizes().items()), digits,
                         loaded.rate_units_change_while_running),
        counters=Counters(withdrawn=True, resolution=resolution),
        volume_cap=VolumeCap(resolution), watchdog=WatchdogRange(1, MAX_WATCHDOG_S), pause=True)

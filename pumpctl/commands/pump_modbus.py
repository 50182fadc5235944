"""What `pumpctl pump` shows of a Modbus pump: its settings as its map names them.

The bench commands are written once against the driver contract (run, stop, status, rate,
clear); what differs between families is how a setting is queried and what an answer looks
like. For a Modbus pump it is whatever its map has: a map without a diameter or a volume
target says so instead of inventing a number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pumpctl.drivers.modbus.driver import ModbusPumpDriver


def _missing(d: ModbusPumpDriver, what: str) -> str:
    return f"the {d.map.name} map has no {what}"


async def info(d: ModbusPumpDriver) -> dict[str, Any]:
    assert d.identity is not None
    caps = d.capabilities
    watchdog = await d.watchdog()
    order = d.map.word_order.value + ("" if d.map.word_order_certain else
                                      " (uncertain: see the map's word_order_note)")
    direction = await d.direction()
    return {
        "model": d.identity.model, "firmware": d.identity.firmware, "unit": d.unit,
        "map": d.map.name, "word_order": order,
        "diameter_mm": await d.diameter(),
        "rate_ml_h": rate if (rate := await d.rate()) is not None else _UNSELECTED,
        "rate_units": d.map.operations.rate.unit,
        "volume_limit_ml": await d.volume_limit(),
        "direction": direction.value if direction else None,
        "watchdog_s": watchdog if watchdog is not None else "none (the pump has no watchdog)",
        "volume_cap": "yes" if caps.volume_cap else "none (pumpctl stops at the planned total)",
    }


_UNSELECTED = "the pump's rate unit or mode is not the map's yet (set a rate to select it)"


async def rate(d: ModbusPumpDriver) -> dict[str, Any]:
    read = await d.rate()
    if read is None:
        return {"rate_ml_h": None, "note": _UNSELECTED}
    return {"rate_ml_h": read, "units": d.map.operations.rate.unit}


async def diameter(d: ModbusPumpDriver, mm: float | None) -> dict[str, Any]:
    from pumpctl.drivers.base import PumpNotApplicable

    if d.map.operations.diameter is None:
        if mm is not None:
            raise PumpNotApplicable(f"{_missing(d, 'diameter register')} (a fixed cylinder); "
                                    "nothing was sent")
        return {"diameter_mm": None, "note": _missing(d, "diameter register")}
    read = await (d.set_diameter(mm) if mm is not None else d.diameter())
    return {"diameter_mm": read}


async def volume(d: ModbusPumpDriver, ml: float | None) -> dict[str, Any]:
    if ml is not None:
        await d.set_volume_limit(ml)  # says so when the map has none
    amount = await d.volume_limit()
    if amount is None:
        return {"volume_limit_ml": None, "note": _missing(d, "volume target")}
    return {"volume_limit_ml": amount, "units": "mL"}


async def scan_entry(d: ModbusPumpDriver) -> dict[str, Any]:
    assert d.identity is not None
    return {"unit": d.unit, "model": d.identity.model, "firmware": d.identity.firmware,
            "watchdog_s": await d.watchdog()}

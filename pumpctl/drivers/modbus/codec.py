"""Engineering values to Modbus register words and back, as a map's register says.

The conversion itself is pymodbus's (`ModbusClientMixin.convert_to_registers` /
`convert_from_registers` of the pinned version, with its `word_order`), so the driver and the
simulator agree with the library a third-party client would use, not only with each other.
What is added here is what the library leaves to its caller: the map's scale, the range check
of each type with a message naming the register, and booleans for coils.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal

from pymodbus.client.mixin import ModbusClientMixin

from pumpctl.drivers.modbus.pumpmap import Register, ValueType, WordOrder

_DT = ModbusClientMixin.DATATYPE
_DATATYPES = {ValueType.U16: _DT.UINT16, ValueType.I16: _DT.INT16, ValueType.U32: _DT.UINT32,
              ValueType.F32: _DT.FLOAT32}
_F32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
Value = float | int | bool


def _order(word_order: WordOrder | str) -> Literal["big", "little"]:
    return "little" if WordOrder(word_order) is WordOrder.LITTLE else "big"


def _wire(reg: Register, value: float | int | bool) -> int | float:
    """The number that goes on the wire (scaled, and for integer types rounded and checked)."""
    vt = reg.value_type
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"register {reg.name}: value {value!r} is not a finite number")
    if vt is ValueType.F32:
        try:  # what rounds to a finite FLOAT32 fits (its largest reads as 3.4028235e+38)
            struct.pack(">f", value)
        except OverflowError:
            raise ValueError(f"register {reg.name}: value {value:g} is outside f32 "
                             f"(|x| <= {_F32_MAX:.6g})") from None
        return float(value)
    low, high = vt.int_range or (0, 0)
    wire = round(value * reg.scale)
    if not low <= wire <= high:
        scale = "" if reg.scale == 1 else f" at scale {reg.scale:g}"
        raise ValueError(f"register {reg.name}: value {value:g}{scale} is outside "
                         f"{vt.value} ({low}-{high})")
    return wire


def encode(reg: Register, value: float | int | bool,
           word_order: WordOrder | str = WordOrder.BIG) -> list[int]:
    """The words to write for `value` (for a coil or discrete input: [0] or [1])."""
    vt = reg.value_type
    wire = _wire(reg, value)
    if vt is ValueType.BOOL:
        if wire not in (0, 1):
            raise ValueError(f"register {reg.name}: value {value!r} is not 0 or 1")
        return [int(wire)]
    return ModbusClientMixin.convert_to_registers(wire, _DATATYPES[vt],
                                                  word_order=_order(word_order))


def decode(reg: Register, words: Sequence[int],
           word_order: WordOrder | str = WordOrder.BIG) -> float | int | bool:
    """The engineering value of `words` as read from the pump."""
    vt = reg.value_type
    if len(words) != vt.words:
        raise ValueError(f"register {reg.name}: {len(words)} words given, {vt.value} has "
                         f"{vt.words}")
    if vt is ValueType.BOOL:
        return bool(words[0])
    for word in words:
        if not 0 <= word <= 0xFFFF:
            raise ValueError(f"register {reg.name}: word {word} is not 16 bits")
    value = ModbusClientMixin.convert_from_registers(list(words), _DATATYPES[vt],
                                                     word_order=_order(word_order))
    assert isinstance(value, int | float)
    if vt is ValueType.F32:
        return shortest_f32(float(value))
    return value if reg.scale == 1 else value / reg.scale


def shortest_f32(value: float) -> float:
    """The shortest decimal that is the same FLOAT32 as `value` (the f32 nearest 0.1 reads as
    0.1, not 0.10000000149011612): what was written, as far as the register can tell."""
    if not math.isfinite(value):
        return value
    packed = struct.pack(">f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == packed:
            return candidate
    return value


def nearest(reg: Register, value: float | int | bool) -> float | int | bool:
    """What the register will hold after `value` is written (f32 rounding, integer steps):
    the value a read-back must equal."""
    return decode(reg, encode(reg, value, WordOrder.BIG), WordOrder.BIG)


def step(reg: Register, value: float) -> float:
    """The smallest difference the register can show near `value` (its resolution there)."""
    vt = reg.value_type
    if vt is ValueType.F32:
        return abs(float(value)) * 2.0 ** -23 if value else 2.0 ** -149
    if vt is ValueType.BOOL:
        return 1.0
    return 1.0 / reg.scale


def unit_text(reg: Register) -> str:
    return f" {reg.unit}" if reg.unit else ""



def same(sent_reg: Register, sent: Value, read_reg: Register, read: Value) -> bool:
    """Whether `read` is what `sent` becomes in the register (to its precision)."""
    expected = nearest(sent_reg, sent)
    tolerance = max(step(sent_reg, float(expected)), step(read_reg, float(read)))
    return math.isclose(float(read), float(expected), rel_tol=1e-9, abs_tol=tolerance)


def shown(reg: Register, value: Value) -> str:
    """A register's value as text: its enum meaning, else the number (decimals from a
    power-of-ten scale: firmware 102 at scale 100 is 1.02)."""
    if not isinstance(value, float) or value.is_integer():
        meaning = reg.enum.get(int(value))
        if meaning is not None:
            return meaning
    if isinstance(value, float) and reg.scale != 1:
        return f"{value:.{max(0, round(math.log10(reg.scale)))}f}"
    return f"{value:g}" if isinstance(value, float) else str(value)

"""Register codec: round trips of every type in both word orders, and the byte vectors of the
ISCO D-series trace (the pump's own bytes, so the codec cannot merely agree with itself)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pumpctl.drivers.modbus import codec
from pumpctl.drivers.modbus.pumpmap import Register, RegisterKind, ValueType, WordOrder

ORDERS = [WordOrder.BIG, WordOrder.LITTLE]


def reg(vt: str, *, kind: str = "holding", scale: float = 1.0) -> Register:
    return Register(name=f"r_{vt}", kind=RegisterKind(kind), address=0, type=ValueType(vt),
                    scale=scale)


def words_of(hex_bytes: str) -> list[int]:
    raw = bytes.fromhex(hex_bytes)
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


# ---- the ISCO trace: HR 0-1 = 200.0, HR 12-13 = 0.1, HR 32-33 = 20000.0 ----------------------


@pytest.mark.parametrize(("hex_bytes", "value"), [("43 48 00 00", 200.0),
                                                  ("3d cc cc cd", 0.1),
                                                  ("46 9c 40 00", 20000.0)])
def test_isco_trace_vectors(hex_bytes: str, value: float) -> None:
    r = reg("f32")
    abcd = words_of(hex_bytes)
    assert codec.encode(r, value, WordOrder.BIG) == abcd
    assert codec.decode(r, abcd, WordOrder.BIG) == pytest.approx(value, rel=1e-7)
    # the same value low word first (CDAB): the words swap, the bytes in each do not
    cdab = [abcd[1], abcd[0]]
    assert codec.encode(r, value, WordOrder.LITTLE) == cdab
    assert codec.decode(r, cdab, WordOrder.LITTLE) == codec.decode(r, abcd, WordOrder.BIG)


def test_cdab_bytes_read_big_are_a_different_number() -> None:
    # what a wrong word-order setting looks like: 200.0 sent CDAB, read ABCD
    assert codec.decode(reg("f32"), words_of("00 00 43 48"), WordOrder.BIG) != 200.0


def test_u32_word_orders() -> None:
    r = reg("u32")
    assert codec.encode(r, 0x12345678, WordOrder.BIG) == [0x1234, 0x5678]
    assert codec.encode(r, 0x12345678, WordOrder.LITTLE) == [0x5678, 0x1234]


def test_i16_negative_and_scale() -> None:
    assert codec.encode(reg("i16"), -2) == [0xFFFE]
    r = reg("u16", scale=100)  # firmware major x 100 + minor
    assert codec.encode(r, 1.02) == [102]
    assert codec.decode(r, [102]) == pytest.approx(1.02)


# ---- round trips --------------------------------------------------------------------------------

f32_values = st.floats(width=32, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("order", ORDERS)
@given(value=f32_values)
@example(value=3.4028234663852886e38)  # the largest f32: its shortest decimal is just above it
@example(value=-1.401298464324817e-45)  # the smallest subnormal
def test_f32_round_trip(order: WordOrder, value: float) -> None:
    r = reg("f32")
    words = codec.encode(r, value, order)
    assert len(words) == 2 and all(0 <= w <= 0xFFFF for w in words)
    back = codec.decode(r, words, order)
    # the same FLOAT32 (read as the shortest decimal that is it), and the same words again
    assert struct.pack(">f", back) == struct.pack(">f", value)
    assert codec.encode(r, back, order) == words
    assert len(repr(back)) <= len(repr(value))
    # independent of pymodbus: the words are the IEEE bytes, in the chosen word order
    raw = struct.pack(">f", value)
    hi, lo = int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")
    assert words == ([hi, lo] if order is WordOrder.BIG else [lo, hi])


def test_f32_reads_as_the_decimal_that_was_written() -> None:
    r = reg("f32")
    assert codec.decode(r, words_of("3d cc cc cd")) == 0.1
    assert codec.decode(r, codec.encode(r, 26.59)) == 26.59
    assert codec.decode(r, codec.encode(r, 0.317728668)) == 0.31772867


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("vt", "low", "high"), [("u16", 0, 0xFFFF), ("i16", -0x8000, 0x7FFF),
                                                 ("u32", 0, 0xFFFF_FFFF)])
@given(data=st.data())
def test_integer_round_trip(order: WordOrder, vt: str, low: int, high: int,
                            data: st.DataObject) -> None:
    value = data.draw(st.integers(low, high))
    r = reg(vt)
    words = codec.encode(r, value, order)
    assert len(words) == ValueType(vt).words
    assert codec.decode(r, words, order) == value
    if vt == "u32":
        hi, lo = value >> 16, value & 0xFFFF
        assert words == ([hi, lo] if order is WordOrder.BIG else [lo, hi])


@pytest.mark.parametrize("order", ORDERS)
@given(wire=st.integers(0, 0xFFFF), scale=st.sampled_from([10, 100, 1000]))
def test_scaled_round_trip(order: WordOrder, wire: int, scale: int) -> None:
    r = reg("u16", scale=scale)
    value = codec.decode(r, [wire], order)
    assert codec.encode(r, value, order) == [wire]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", ["coil", "discrete"])
@given(value=st.booleans())
def test_bool_round_trip(order: WordOrder, kind: str, value: bool) -> None:
    r = reg("bool", kind=kind)
    assert codec.encode(r, value, order) == [int(value)]
    assert codec.decode(r, [int(value)], order) is value


# ---- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("vt", "value", "words"), [
    ("u16", 65536, "outside u16 (0-65535)"), ("u16", -1, "outside u16"),
    ("i16", 40000, "outside i16 (-32768-32767)"), ("u32", 2**32, "outside u32"),
    ("f32", 1e39, "outside f32"), ("f32", math.nan, "not a finite number"),
    ("f32", math.inf, "not a finite number"), ("bool", 2, "outside bool")])
def test_values_that_do_not_fit_name_register_value_and_limit(vt: str, value: float,
                                                              words: str) -> None:
    kind = "coil" if vt == "bool" else "holding"
    with pytest.raises(ValueError, match=f"register r_{vt}: value") as e:
        codec.encode(reg(vt, kind=kind), value)
    assert words in str(e.value)


def test_scaled_value_out_of_range_names_the_scale() -> None:
    with pytest.raises(ValueError, match="at scale 1000 is outside u16"):
        codec.encode(reg("u16", scale=1000), 70.0)


def test_wrong_word_count_is_refused() -> None:
    with pytest.raises(ValueError, match="1 words given, f32 has 2"):
        codec.decode(reg("f32"), [1])


def test_nearest_and_step() -> None:
    r = reg("f32")
    assert codec.nearest(r, 0.1) == 0.1 and codec.nearest(r, 0.123456789) == 0.12345679
    assert codec.step(reg("u16", scale=1000), 5.0) == 0.001

"""MT-SICS lines: parsing every reply shape, and one-line errors naming the bytes."""

from __future__ import annotations

import pytest

from pumpctl.drivers.balance.mtsics import (
    BalanceProtocolError,
    BalanceRefused,
    encode,
    parse_done,
    parse_text,
    parse_weight,
)


def test_encode() -> None:
    assert encode("SI") == b"SI\r\n"
    assert encode("@") == b"@\r\n"
    for bad in ("si", "S\r\nZ", "", "Sé"):
        with pytest.raises(ValueError):
            encode(bad)


@pytest.mark.parametrize(("command", "line", "value", "unit", "stable", "grams"), [
    ("SI", b"S S     12.3456 g", 12.3456, "g", True, 12.3456),
    ("SI", b"S D     -0.0002 g", -0.0002, "g", False, -0.0002),
    ("S", b"S S    123.4 mg", 123.4, "mg", True, 0.1234),
    ("T", b"T S     50.0121 g", 50.0121, "g", True, 50.0121),
    ("TI", b"TI D   1.5 kg", 1.5, "kg", False, 1500.0),
])
def test_weights(command: str, line: bytes, value: float, unit: str, stable: bool,
                 grams: float) -> None:
    w = parse_weight(command, line)
    assert (w.value, w.unit, w.stable) == (value, unit, stable)
    assert w.grams == pytest.approx(grams)


@pytest.mark.parametrize(("command", "line", "status", "message"), [
    ("S", b"S I", "I", "balance answered 'S I' to S: not executable now"),
    ("SI", b"S +", "+", "overload"),
    ("SI", b"S -", "-", "underload"),
    ("SI", b"ES", "ES", "balance answered ES to SI: syntax error"),
    ("T", b"ET", "ET", "transmission error"),
    ("TI", b"EL", "EL", "logical error"),
    ("T", b"T I", "I", "not executable now"),
])
def test_refusals_name_the_reply(command: str, line: bytes, status: str, message: str) -> None:
    with pytest.raises(BalanceRefused) as info:
        parse_weight(command, line)
    assert info.value.status == status
    assert message in str(info.value)


@pytest.mark.parametrize(("command", "line", "message"), [
    ("SI", b"Z A", "balance reply b'Z A' to SI: expected a line starting with 'S'"),
    ("SI", b"S S 12.x3 g", "weight '12.x3' is not a number"),
    ("SI", b"S S 12.3 lb", "unit 'lb' is not one of g, mg, kg"),
    ("SI", b"S S 12.3", "expected a value and a unit"),
    ("SI", b"S S nan g", "weight 'nan' is not a number"),
    ("SI", b"S \xff 1 g", "balance reply b'S \\xff 1 g' to SI: not ASCII"),
    ("SI", b"", "expected a line starting with 'S'"),
])
def test_garbage_names_the_bytes(command: str, line: bytes, message: str) -> None:
    with pytest.raises(BalanceProtocolError) as info:
        parse_weight(command, line)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_done_and_text_replies() -> None:
    assert parse_done("Z", b"Z A") == "A"
    assert parse_done("ZI", b"ZI D", ok=("S", "D")) == "D"
    assert parse_done("TAC", b"TAC A") == "A"
    with pytest.raises(BalanceRefused, match=r"'Z \+' to Z: overload"):
        parse_done("Z", b"Z +")
    assert parse_text("@", b'I4 A "0123456789"') == "0123456789"
    assert parse_text("I2", b'I2 A "XS205 220.0000 g"') == "XS205 220.0000 g"
    with pytest.raises(BalanceProtocolError, match="expected quoted text"):
        parse_text("I4", b"I4 A 0123")

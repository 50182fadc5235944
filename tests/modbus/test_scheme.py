"""Modbus pump URLs: the three forms, their defaults from the map, and one line for every bad
parameter naming it, its value and the limit."""

from __future__ import annotations

import os

import pytest

from pumpctl.drivers.modbus.scheme import ModbusTarget
from pumpctl.drivers.open import PumpUrlError, parse_pump_url, schemes


def test_the_three_schemes_are_registered() -> None:
    assert {"modbus+tcp", "modbus+rtu", "modbus+rtu+tcp"} <= set(schemes())


def test_tcp_url() -> None:
    t = parse_pump_url("modbus+tcp://127.0.0.1:5020?unit=3&map=isco-d&timeout=0.2&retries=2")
    assert isinstance(t, ModbusTarget)
    assert (t.host, t.port, t.address, t.map_name, t.framer) == ("127.0.0.1", 5020, 3,
                                                                 "isco-d", "socket")
    assert (t.timeout_s, t.retries, t.watchdog_s) == (0.2, 2, None)
    assert t.line_key == "tcp:127.0.0.1:5020" and t.serial_url == "socket://127.0.0.1:5020"
    assert t.with_address(7).address == 7 and t.with_address(7).map_name == "isco-d"
    assert parse_pump_url("modbus+tcp://127.0.0.1?map=isco-d").port == 502  # type: ignore


def test_rtu_url_defaults_from_the_map() -> None:
    t = parse_pump_url("modbus+rtu:///dev/ttyUSB0?map=vindum-vp")
    assert isinstance(t, ModbusTarget)
    assert (t.path, t.baud, t.parity, t.address, t.framer) == ("/dev/ttyUSB0", 38400, "N", 1,
                                                               "rtu")
    assert t.line_key == os.path.realpath("/dev/ttyUSB0")
    assert t.pump_map.word_order.value == "big"
    e = parse_pump_url("modbus+rtu:///tmp/x?map=vindum-vp&baud=9600&parity=e&word_order=little")
    assert isinstance(e, ModbusTarget)
    assert (e.baud, e.parity, e.pump_map.word_order.value) == (9600, "E", "little")


def test_rtu_over_tcp_url() -> None:
    t = parse_pump_url("modbus+rtu+tcp://127.0.0.1:4001?unit=1&map=vindum-vp")
    assert isinstance(t, ModbusTarget)
    assert (t.framer, t.serial_url, t.line_key) == ("rtu", "socket://127.0.0.1:4001",
                                                    "tcp:127.0.0.1:4001")


def test_watchdog_only_where_the_map_has_one() -> None:
    t = parse_pump_url("modbus+tcp://127.0.0.1:502?map=generic&watchdog=5")
    assert t.watchdog_s == 5


BAD = [
    ("modbus+tcp://127.0.0.1:502", "needs map=NAME (known: generic, isco-d, vindum-vp"),
    ("modbus+tcp://127.0.0.1:502?map=nosuch", "map='nosuch'"),
    ("modbus+tcp://127.0.0.1:502?map=generic&unit=0", "unit='0'"),
    ("modbus+tcp://127.0.0.1:502?map=generic&unit=248", "must be an integer 1-247"),
    ("modbus+tcp://127.0.0.1:502?map=generic&unit=x", "unit='x'"),
    ("modbus+tcp://127.0.0.1:502?map=generic&timeout=0", "timeout='0'"),
    ("modbus+tcp://127.0.0.1:502?map=generic&timeout=abc", "must be 0.01-60 s"),
    ("modbus+tcp://127.0.0.1:502?map=generic&retries=11", "retries='11'"),
    ("modbus+tcp://127.0.0.1:502?map=generic&word_order=middle", "word_order='middle'"),
    ("modbus+tcp://127.0.0.1:502?map=isco-d&watchdog=5", "isco-d map has no watchdog"),
    ("modbus+tcp://127.0.0.1:502?map=vindum-vp&watchdog=5", "vindum-vp map has no watchdog"),
    ("modbus+tcp://127.0.0.1:502?map=generic&watchdog=70000", "must be an integer 0-65535"),
    ("modbus+tcp://127.0.0.1:502?map=generic&baud=9600", "only for a serial port"),
    ("modbus+tcp://127.0.0.1:502?map=generic&colour=red", "unknown parameter 'colour'"),
    ("modbus+tcp://127.0.0.1:502?map=generic&unit=1&unit=2", "'unit' given twice"),
    ("modbus+tcp://127.0.0.1:99999?map=generic", "port must be 1-65535"),
    ("modbus+tcp://:502?map=generic", "needs a host"),
    ("modbus+rtu+tcp://127.0.0.1?map=vindum-vp", "needs the device server's port"),
    ("modbus+rtu://?map=vindum-vp", "names no serial port"),
    ("modbus+rtu:///dev/x?map=vindum-vp&baud=12345", "baud=12345"),
    ("modbus+rtu:///dev/x?map=vindum-vp&parity=M", "parity='M'"),
]


@pytest.mark.parametrize(("url", "words"), BAD, ids=[b[1][:24] for b in BAD])
def test_every_bad_parameter_is_one_line(url: str, words: str) -> None:
    with pytest.raises(PumpUrlError) as err:
        parse_pump_url(url)
    assert words in str(err.value) and "\n" not in str(err.value)

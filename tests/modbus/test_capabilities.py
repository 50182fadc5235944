"""What each shipped map declares its pump can do, and what a run then says about it."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pumpctl.drivers.fake import FakeDriver
from pumpctl.drivers.modbus.capabilities import capabilities
from pumpctl.drivers.modbus.pumpmap import load_map, parse_map
from pumpctl.run.watchdog import plan_watchdog
from tests.modbus.test_pumpmap import broken


def test_generic_has_a_cap_a_watchdog_and_float_rates() -> None:
    caps = capabilities(load_map("generic"))
    assert caps.volume_cap is not None and caps.watchdog is not None
    assert (caps.watchdog.min_s, caps.watchdog.max_s) == (1, 65535)
    assert caps.rates.units == (("mL/h", Fraction(1)),) and caps.rates.digits is None
    assert caps.rates.expresses(0.123456, "mL/h")  # a float register: no digit rule
    assert caps.counters.withdrawn and not caps.pause


def test_vindum_has_a_cap_but_no_watchdog() -> None:
    caps = capabilities(load_map("vindum-vp"))
    assert caps.volume_cap is not None and caps.watchdog is None
    assert not caps.counters.withdrawn and not caps.pause


def test_isco_has_neither_cap_nor_watchdog_and_a_run_says_so() -> None:
    caps = capabilities(load_map("isco-d"))
    assert caps.volume_cap is None and caps.watchdog is None
    plan = plan_watchdog(None, driver=FakeDriver(capabilities=caps))
    assert plan.state == "absent" and plan.seconds is None
    assert plan.warning is not None and "nothing stops it" in plan.warning


@pytest.mark.parametrize(("unit", "size"), [("mL/min", Fraction(60)),
                                            ("uL/min", Fraction(3, 50))])
def test_rate_units_other_than_ml_h(unit: str, size: Fraction) -> None:
    caps = capabilities(parse_map(broken("operations.rate.unit", unit), "small"))
    assert caps.rates.units == ((unit, size),)


def test_an_integer_rate_register_has_digits() -> None:
    data = broken("registers.rate", {"kind": "holding", "address": 0, "type": "u32",
                                     "scale": 1000, "access": "rw"})
    caps = capabilities(parse_map(data, "small"))
    assert caps.rates.digits is not None and caps.rates.digits.max_decimals == 3
    assert caps.rates.expresses(1.234, "mL/h") and not caps.rates.expresses(1.2345, "mL/h")

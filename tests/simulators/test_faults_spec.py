"""`KIND@TIME[:key=value,...]` fault specs, as typed on the command line."""

from __future__ import annotations

import pytest

from simulators.faults import Fault, FaultKind, FaultSpecError, parse_fault, parse_time


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("10m", 600.0), ("10min", 600.0), ("1.5h", 5400.0), ("250ms", 0.25),
    ("42", 42.0)])
def test_times(text: str, seconds: float) -> None:
    assert parse_time(text) == seconds


def test_fault_specs() -> None:
    assert parse_fault("occlusion@10m") == Fault(FaultKind.OCCLUSION, 600.0, {})
    assert parse_fault("power-reset@90s") == Fault(FaultKind.POWER_RESET, 90.0, {})
    fault = parse_fault("delay-replies@30s:delay=2,count=3,pump=1")
    assert fault.kind is FaultKind.DELAY_REPLIES and fault.at_s == 30.0
    assert (fault.param("delay"), fault.param("count"), fault.pump_address) == (2.0, 3, 1)
    assert parse_fault("free-flow@1m").param("factor") == 1.5  # the default
    assert parse_fault("power-reset@0s:off=1.5m").param("off") == 90.0


@pytest.mark.parametrize(("text", "names"), [
    ("jam@10m", "fault kind 'jam'"),
    ("occlusion", "needs a time"),
    ("occlusion@soon", "'soon' is not a time"),
    ("drop-replies@1s:cout=2", "'cout=2'"),
    ("free-flow@1s:factor=lots", "factor='lots'"),
    ("stuck-motor@1s:pump=100", "pump=100"),
    ("free-flow@1s:factor=inf", "not finite"),
])
def test_bad_specs_name_what_is_wrong_in_one_line(text: str, names: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_fault(text)
    assert names in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2

"""The physics that shapes an accuracy measurement: start-up compliance, thread irregularity."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from pumpctl.clock import ManualClock
from simulators.physics import PhysicsParams, SyringePumpModel


def model(clock: ManualClock, **params: Any) -> SyringePumpModel:
    return SyringePumpModel(clock, diameter_mm=26.59, capacity_ml=60.0, contents_ml=60.0,
                            params=PhysicsParams(**params))


def test_defaults_leave_both_off() -> None:
    p = PhysicsParams()
    assert p.startup_ml == 0.0 and p.thread_error_um == 0.0


@pytest.mark.parametrize("rate", [5.0, 1.0])
def test_startup_compliance_follows_the_plunger_travel(rate: float) -> None:
    clock = ManualClock()
    # No ripple, slack or line compliance: what is left is the stopper.
    m = model(clock, startup_ml=0.1, ripple_fraction=0.0, slack_ml=0.0,
              compliance_ml_per_kpa=1e-9)
    m.set_rate(rate)
    m.start()
    for minutes in (1, 3, 10, 30, 60):
        clock.now = minutes * 60.0
        x = rate * minutes / 60.0
        assert m.delivered_ml == pytest.approx(x - 0.1 * (1 - math.exp(-x / 0.1)), abs=1e-9)
    # At 1 mL/h the stopper takes five times as long as at 5 mL/h to be taken up.


def test_startup_compliance_is_kept_through_a_stop() -> None:
    clock = ManualClock()
    m = model(clock, startup_ml=0.1, ripple_fraction=0.0, slack_ml=0.0,
              compliance_ml_per_kpa=1e-9)
    m.set_rate(6.0)
    m.start()
    clock.now = 3600.0
    m.stop()
    held = m.delivered_ml
    clock.now = 7200.0
    assert m.delivered_ml == pytest.approx(held, abs=1e-9)  # the stopper stays compressed
    m.start()
    clock.now = 7260.0
    assert m.delivered_ml - held == pytest.approx(0.1, abs=1e-6)  # no new start-up lag


def test_thread_error_is_seeded_bounded_and_zero_at_the_start() -> None:
    def delivered(seed: int) -> list[float]:
        clock = ManualClock()
        m = model(clock, thread_error_um=2.0, ripple_fraction=0.0, slack_ml=0.0,
                  compliance_ml_per_kpa=1e-9, seed=seed)
        m.set_rate(5.0)
        m.start()
        out = []
        for k in range(1, 121):
            clock.now = 30.0 * k
            out.append(m.delivered_ml - 5.0 * clock.now / 3600.0)
        return out

    a, b, c = delivered(1), delivered(1), delivered(2)
    assert a == b and a != c
    area_mm2 = math.pi * 26.59**2 / 4
    sigma_ml = 2.0e-3 * area_mm2 / 1000  # 2 µm of plunger position
    errors = np.asarray(a)
    assert 0.3 * sigma_ml < errors.std() < 3 * sigma_ml
    assert np.abs(errors).max() < 6 * 2 * sigma_ml
    clock = ManualClock()
    m = model(clock, thread_error_um=2.0)
    assert m.delivered_ml == 0.0


def test_thread_error_flow_averages_out_over_longer_windows() -> None:
    clock = ManualClock()
    m = model(clock, thread_error_um=2.0, ripple_fraction=0.0, slack_ml=0.0,
              compliance_ml_per_kpa=1e-9, seed=3)
    m.set_rate(5.0)
    m.start()
    readings = []
    for k in range(0, 241):
        clock.now = 30.0 * k
        readings.append(m.delivered_ml)
    w = np.asarray(readings)

    def spread(minutes: int) -> float:
        p = 2 * minutes
        flows = (w[p:] - w[:-p]) * 60 / minutes
        return float(flows.max() - flows.min())

    # the error volume is bounded, so a window's flow error falls like 1/P
    assert spread(2) > 2 * spread(11) > 0
    assert spread(11) > spread(31)

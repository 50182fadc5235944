"""The syringe pump model on a hand-turned clock: counts, lags, stalls, faults, conservation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpctl.clock import ManualClock
from simulators.physics import (
    EventKind,
    ModelEvent,
    Motion,
    PhysicsParams,
    StallReason,
    SyringePumpModel,
)


def model(clock: ManualClock, *, contents: float = 60.0, **params: Any) -> SyringePumpModel:
    return SyringePumpModel(clock, diameter_mm=26.59, capacity_ml=60.0, contents_ml=contents,
                            params=PhysicsParams(**params))


def test_counter_follows_commanded_rate_in_whole_steps() -> None:
    clock = ManualClock()
    m = model(clock)
    m.set_rate(60.0)
    m.start()
    clock.now = 600.0
    assert m.infused_ml == pytest.approx(10.0, abs=m.ml_per_step)
    assert (m.infused_ml / m.ml_per_step) == pytest.approx(round(m.infused_ml / m.ml_per_step))
    # 26.59 mm, 0.794 mm pitch, 3200 steps a turn: about 0.138 µL a step
    assert m.ml_per_step == pytest.approx(math.pi * 26.59**2 / 4 * 0.794 / 3200 / 1000)


def test_slack_delays_delivery_much_longer_at_low_rates() -> None:
    clock = ManualClock()
    slow, fast = model(clock, ripple_fraction=0), model(clock, ripple_fraction=0)
    slow.set_rate(0.5)
    fast.set_rate(50.0)
    slow.start()
    fast.start()
    clock.now = 10.0
    # 2 µL of backlash: 14.4 s at 0.5 mL/h, 0.14 s at 50 mL/h
    assert slow.infused_ml > 0.001 and slow.delivered_ml == 0.0
    assert fast.delivered_ml > 0.1


def test_compliance_lag_and_steady_state_pressure() -> None:
    clock = ManualClock()
    m = model(clock, slack_ml=0.0, ripple_fraction=0.0)
    m.set_rate(36.0)
    m.start()
    clock.now = 0.5  # about one time constant (0.576 s)
    assert m.delivered_ml < 0.7 * 0.005  # well behind the 5 µL the motor pushed
    clock.now = 60.0
    p = m.params
    steady = 36.0 * p.resistance_kpa_per_ml_h
    assert m.pressure_kpa == pytest.approx(steady, rel=1e-6)
    # what is still in the compliance is exactly C x P
    assert 0.6 - m.delivered_ml == pytest.approx(p.compliance_ml_per_kpa * steady, rel=1e-6)
    m.stop()
    clock.now = 120.0  # the stored volume drains after the motor stops
    assert m.delivered_ml == pytest.approx(0.6, abs=1e-9)


def test_occlusion_stall_time_matches_compliance_and_limit() -> None:
    clock = ManualClock()
    m = model(clock, slack_ml=0.0)
    events: list[ModelEvent] = []
    m.add_listener(events.append)
    m.set_rate(52.5)
    m.start()
    clock.now = 100.0
    p0 = m.pressure_kpa
    m.set_occluded(True)
    predicted = m.next_event_at()
    expected = 100.0 + (m.params.stall_pressure_kpa - p0) * m.params.compliance_ml_per_kpa / (
        52.5 / 3600)
    assert predicted == pytest.approx(expected)
    clock.now = expected - 0.01
    assert m.running
    clock.now = expected + 0.01
    assert not m.running and m.stall is StallReason.OCCLUSION
    assert events == [ModelEvent(EventKind.STALLED, pytest.approx(expected), StallReason.OCCLUSION)]


def test_empty_and_full_syringe_stall() -> None:
    clock = ManualClock()
    m = model(clock, slack_ml=0.0, contents=1.0)
    m.set_rate(60.0)
    m.start()
    clock.now = 59.0
    assert m.running
    clock.now = 61.0
    assert m.stall is StallReason.SYRINGE_EMPTY and m.contents_ml == 0.0
    m.set_motion(Motion.WITHDRAW)
    m.start()
    clock.now = 61.0 + 3600.0
    assert m.stall is StallReason.SYRINGE_FULL
    assert m.contents_ml == pytest.approx(60.0)


def test_target_volume_stops_the_motor() -> None:
    clock = ManualClock()
    m = model(clock, slack_ml=0.0)
    m.set_rate(120.0)
    m.set_target(2.0)
    m.start()
    assert m.next_event_at() == pytest.approx(60.0)
    clock.now = 300.0
    assert not m.running and m.stall is None
    assert m.infused_ml == pytest.approx(2.0, abs=m.ml_per_step)
    assert [e.kind for e in m.events] == [EventKind.TARGET_REACHED]


def test_stuck_motor_counts_but_delivers_nothing_and_free_flow_overdelivers() -> None:
    clock = ManualClock()
    stuck, free = model(clock), model(clock, ripple_fraction=0)
    stuck.set_stuck(True)
    free.set_free_flow(1.5)
    for m in (stuck, free):
        m.set_rate(60.0)
        m.start()
    clock.now = 600.0
    assert stuck.infused_ml == pytest.approx(10.0, abs=0.001) and stuck.delivered_ml == 0.0
    assert stuck.running and stuck.stall is None
    assert free.infused_ml == pytest.approx(10.0, abs=0.001)
    assert free.delivered_ml == pytest.approx(15.0, abs=0.01)


def test_ripple_is_bounded_and_noise_only_in_samples() -> None:
    clock = ManualClock()
    m = model(clock, slack_ml=0.0, ripple_fraction=0.05, noise_ml=0.001, seed=3)
    m.set_rate(10.0)
    m.start()
    amplitude = 0.05 * m.ml_per_rev / (2 * math.pi)
    smooth = model(clock, slack_ml=0.0, ripple_fraction=0.0)
    smooth.set_rate(10.0)
    smooth.start()
    for t in range(1, 400, 7):
        clock.now = float(t)
        assert abs(m.delivered_ml - smooth.delivered_ml) <= amplitude + 1e-12
    samples = {m.sample_delivered_ml() for _ in range(5)}
    assert len(samples) == 5  # noisy sensor, deterministic model


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.05, 1000.0), st.floats(0.1, 300.0), st.booleans()),
                min_size=1, max_size=12))
def test_volume_is_conserved(steps: list[tuple[float, float, bool]]) -> None:
    """Counted = rate x running time; plunger volume = delivered + what the line holds."""
    clock = ManualClock()
    m = model(clock, ripple_fraction=0.0, slack_ml=0.0, stall_pressure_kpa=1e9)
    expected = 0.0
    for rate, duration, running in steps:
        m.set_rate(rate)
        if running:
            m.start()
        else:
            m.stop()
        clock.now += duration
        expected += rate * duration / 3600 if running else 0.0
        expected = min(expected, 60.0)
    assert m.infused_ml == pytest.approx(expected, abs=2 * m.ml_per_step + 1e-9)
    held = m.params.compliance_ml_per_kpa * m.pressure_kpa
    assert m.delivered_ml + held == pytest.approx(60.0 - m.contents_ml, abs=1e-9)


def test_a_change_at_the_same_instant_is_seen_by_the_next_read() -> None:
    """Reads at one clock reading are answered without re-integrating; a setting changed at
    that same reading must still take effect at once (here: a target already passed stops
    the motor before any time goes by)."""
    clock = ManualClock()
    m = model(clock)
    m.set_rate(360.0)
    m.start()
    clock.now = 10.0
    assert m.running and m.phase_ml == pytest.approx(1.0)
    assert m.running  # a second read at the same instant: same state
    m.set_target(0.5)
    assert not m.running
    assert [e.kind for e in m.events] == [EventKind.TARGET_REACHED]
    infused = m.infused_ml
    clock.now = 20.0
    assert m.infused_ml == infused  # stopped: nothing more counted
    m.set_occluded(True)
    m.start()
    assert m.running
    clock.now = 20.0 + 1e-3
    assert m.infused_ml > infused


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.05, 1000.0), st.floats(0.0, 300.0), st.booleans()),
                min_size=1, max_size=8))
def test_counters_read_together_match_the_separate_readings(
        steps: list[tuple[float, float, bool]]) -> None:
    """`counters_ml()` (one sync for a DIS reply) is the pair of the two counter readings,
    in whole steps, whichever direction the plunger went."""
    clock = ManualClock()
    m = model(clock, contents=30.0)
    for rate, duration, infuse in steps:
        m.stop()
        m.set_motion(Motion.INFUSE if infuse else Motion.WITHDRAW)
        m.set_rate(rate)
        m.start()
        clock.now += duration
        pair = m.counters_ml()
        assert pair == (m.infused_ml, m.withdrawn_ml)
        assert all(v / m.ml_per_step == pytest.approx(round(v / m.ml_per_step)) for v in pair)

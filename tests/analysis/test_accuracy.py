"""The gravimetric analysis on series whose answers are known by construction."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpctl.analysis.accuracy import (
    AccuracyError,
    AccuracyInputs,
    analyse,
    flows_ml_h,
)

D = 0.998


def constant_masses(rate: float, minutes: float = 120.0, interval: float = 0.5,
                    density: float = D) -> np.ndarray:
    t = np.arange(0.0, minutes + interval / 2, interval)
    return density * rate * t / 60.0


def test_constant_flow_has_no_error() -> None:
    result = analyse(constant_masses(5.0), AccuracyInputs(rate_ml_h=5.0))
    assert result.mean_error_pct == pytest.approx(0.0, abs=1e-9)
    for point in result.trumpet:
        assert point.ep_max_pct == pytest.approx(0.0, abs=1e-9)
        assert point.ep_min_pct == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(result.flows_ml_h, 5.0)


def test_constant_offset_is_every_ep() -> None:
    result = analyse(constant_masses(5.0 * 1.03), AccuracyInputs(rate_ml_h=5.0))
    assert result.mean_error_pct == pytest.approx(3.0, abs=1e-9)
    for point in result.trumpet:
        assert point.ep_max_pct == pytest.approx(3.0, abs=1e-9)
        assert point.ep_min_pct == pytest.approx(3.0, abs=1e-9)


def test_window_positions_follow_the_standard() -> None:
    result = analyse(constant_masses(5.0), AccuracyInputs(rate_ml_h=5.0))
    assert [p.positions for p in result.trumpet] == [117, 111, 99, 83, 59]
    assert [p.window_min for p in result.trumpet] == [2, 5, 11, 19, 31]


def test_density_and_evaporation_are_applied() -> None:
    evaporation = 0.002  # g/min lost from the beaker
    t = np.arange(0.0, 120.25, 0.5)
    masses = 1.02 * 5.0 * t / 60.0 - evaporation * t  # denser liquid, and evaporating
    inputs = AccuracyInputs(rate_ml_h=5.0, density_g_ml=1.02, evaporation_g_min=evaporation)
    result = analyse(masses, inputs)
    assert result.mean_error_pct == pytest.approx(0.0, abs=1e-9)
    uncorrected = analyse(masses, AccuracyInputs(rate_ml_h=5.0, density_g_ml=1.02))
    # 2 mg/min of 85 mg/min delivered: -2.35 %
    assert uncorrected.mean_error_pct == pytest.approx(-100 * evaporation / (1.02 * 5 / 60))


def _ripple_masses(rate: float, amplitude: float, period: float, phase: float,
                   minutes: float, interval: float = 0.5) -> np.ndarray:
    """Flow r (1 + a sin(2 pi t / T + phi)), integrated exactly."""
    t = np.arange(0.0, minutes + interval / 2, interval)
    w = 2 * math.pi / period
    volume_ml = rate / 60.0 * (t - amplitude / w * (np.cos(w * t + phase) - math.cos(phase)))
    return D * volume_ml


def _ripple_window_means(amplitude: float, period: float, phase: float, start: float,
                         length: float, window: float, interval: float = 0.5) -> np.ndarray:
    """Closed form: a window of length P starting at t averages the ripple to
    100 a sinc(P/T) sin(2 pi (t + P/2) / T + phi)."""
    starts = np.arange(start, start + length - window + interval / 2, interval)
    x = window / period
    sinc = math.sin(math.pi * x) / (math.pi * x)
    return 100 * amplitude * sinc * np.sin(2 * math.pi * (starts + window / 2) / period + phase)


@pytest.mark.parametrize("period", [64.0, 5.29])
def test_sinusoidal_ripple_matches_the_closed_form(period: float) -> None:
    amplitude, phase = 0.04, 0.7
    masses = _ripple_masses(5.0, amplitude, period, phase, minutes=240.0)
    inputs = AccuracyInputs(rate_ml_h=5.0, start_min=60.0, period_min=128.0)
    result = analyse(masses, inputs)
    for point in result.trumpet:
        expected = _ripple_window_means(amplitude, period, phase, 60.0, 128.0, point.window_min)
        assert point.positions == expected.size
        assert point.ep_max_pct == pytest.approx(expected.max(), abs=1e-9)
        assert point.ep_min_pct == pytest.approx(expected.min(), abs=1e-9)
    whole = _ripple_window_means(amplitude, period, phase, 60.0, 128.0, 128.0)
    assert result.mean_error_pct == pytest.approx(whole[0], abs=1e-9)


def test_slow_ripple_narrows_with_the_window() -> None:
    # Ripple period 64 min, analysis over two whole periods: sinc(P/T) falls for every
    # standard window (all shorter than T/2), and the windows see every phase.
    masses = _ripple_masses(5.0, 0.04, 64.0, 0.3, minutes=200.0)
    result = analyse(masses, AccuracyInputs(rate_ml_h=5.0, start_min=0.0, period_min=128.0))
    highs = [p.ep_max_pct for p in result.trumpet]
    lows = [p.ep_min_pct for p in result.trumpet]
    assert all(a > b for a, b in itertools.pairwise(highs))
    assert all(a < b for a, b in itertools.pairwise(lows))
    assert highs[0] == pytest.approx(4.0 * math.sin(math.pi / 32) / (math.pi / 32), rel=1e-3)


def test_fast_ripple_need_not_narrow() -> None:
    # A lead-screw period of 5.29 min averages out almost completely over 11 min
    # (about two periods) but less over 19 min (3.6 periods): a pure tone does not give
    # a monotone trumpet. The analysis must report that, not smooth it away.
    masses = _ripple_masses(5.0, 0.02, 5.29, 0.0, minutes=120.0)
    result = analyse(masses, AccuracyInputs(rate_ml_h=5.0))
    width = {p.window_min: p.ep_max_pct - p.ep_min_pct for p in result.trumpet}
    assert width[19.0] > width[11.0]


def test_noise_a_equals_the_total_mass_over_the_period() -> None:
    rng = np.random.default_rng(7)
    masses = constant_masses(5.0) + rng.normal(0.0, 2e-4, 241)
    result = analyse(masses, AccuracyInputs(rate_ml_h=5.0))
    delivered_ml_h = 60.0 * (masses[240] - masses[120]) / (60.0 * D)
    assert result.mean_error_pct == pytest.approx(100 * (delivered_ml_h - 5.0) / 5.0, abs=1e-9)
    # A window's mean error is the noise of two readings over the window's mass:
    # standard deviation sqrt(2) sigma / (P r d / 60); the extreme of ~100 windows lies
    # within a few of those.
    for point in result.trumpet:
        sd = 100 * math.sqrt(2) * 2e-4 / (point.window_min * 5.0 * D / 60.0)
        assert 0.5 * sd < point.ep_max_pct < 5 * sd
        assert -5 * sd < point.ep_min_pct < -0.5 * sd


def test_flows_use_interval_and_density() -> None:
    q = flows_ml_h([0.0, 0.1, 0.3], interval_min=0.5, density_g_ml=1.0)
    assert q.tolist() == pytest.approx([12.0, 24.0])


@pytest.mark.parametrize(("inputs", "fragment"), [
    (AccuracyInputs(rate_ml_h=0.0), "rate_ml_h = 0.0"),
    (AccuracyInputs(rate_ml_h=5.0, density_g_ml=9.0), "density_g_ml = 9.0"),
    (AccuracyInputs(rate_ml_h=5.0, start_min=10.2), "start_min = 10.2 min is not a whole"),
    (AccuracyInputs(rate_ml_h=5.0, windows_min=(61.0,)), "window 61 min holds 122 samples"),
    (AccuracyInputs(rate_ml_h=5.0, windows_min=(2.2,)), "window 2.2 min"),
    (AccuracyInputs(rate_ml_h=5.0, evaporation_g_min=-1.0), "evaporation_g_min = -1.0"),
])
def test_bad_inputs_are_named(inputs: AccuracyInputs, fragment: str) -> None:
    with pytest.raises(AccuracyError) as info:
        analyse(constant_masses(5.0), inputs)
    assert fragment in str(info.value)


def test_a_series_too_short_for_the_period() -> None:
    with pytest.raises(AccuracyError, match=r"ends at 120 min .* ends at 95 min"):
        analyse(constant_masses(5.0, minutes=95.0), AccuracyInputs(rate_ml_h=5.0))


def test_non_finite_mass() -> None:
    masses = constant_masses(5.0)
    masses[17] = math.nan
    with pytest.raises(AccuracyError, match="mass sample 17: nan"):
        analyse(masses, AccuracyInputs(rate_ml_h=5.0))


# ---- invariants that hold for every series -------------------------------------------------

flows = st.lists(st.floats(min_value=0.0, max_value=60.0, allow_nan=False), min_size=24,
                 max_size=80)
rates = st.floats(min_value=0.1, max_value=50.0)


def _masses(q: list[float], interval: float = 0.5) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.asarray(q) * D * interval / 60.0)])


def _inputs(rate: float, n_flows: int, windows: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
            ) -> AccuracyInputs:
    period = 0.5 * (n_flows - 4)  # the period starts at 2 min (4 flows in)
    return AccuracyInputs(rate_ml_h=rate, start_min=2.0, period_min=period,
                          windows_min=tuple(w for w in windows if w <= period))


def _tol(rate: float, q: list[float]) -> float:
    return 1e-9 * (1 + max(q) / rate) * 100


@settings(max_examples=200, deadline=None)
@given(flows, rates)
def test_every_ep_lies_between_single_sample_errors(q: list[float], rate: float) -> None:
    inputs = _inputs(rate, len(q))
    result = analyse(_masses(q), inputs)
    errors = 100 * (result.flows_ml_h[4:] - rate) / rate
    tol = _tol(rate, q)
    for point in result.trumpet:
        assert errors.min() - tol <= point.ep_min_pct <= point.ep_max_pct <= errors.max() + tol


@settings(max_examples=200, deadline=None)
@given(flows, rates, st.floats(min_value=-50.0, max_value=50.0))
def test_a_constant_error_shifts_a_and_every_ep(q: list[float], rate: float,
                                                shift_pct: float) -> None:
    inputs = _inputs(rate, len(q))
    base = analyse(_masses(q), inputs)
    shifted_q = [x + rate * shift_pct / 100 for x in q]
    shifted = analyse(_masses(shifted_q), inputs)
    tol = _tol(rate, [abs(x) for x in shifted_q] + q) * 10
    assert shifted.mean_error_pct == pytest.approx(base.mean_error_pct + shift_pct, abs=tol)
    for a, b in zip(base.trumpet, shifted.trumpet, strict=True):
        assert b.ep_max_pct == pytest.approx(a.ep_max_pct + shift_pct, abs=tol)
        assert b.ep_min_pct == pytest.approx(a.ep_min_pct + shift_pct, abs=tol)


@settings(max_examples=200, deadline=None)
@given(flows, rates)
def test_a_window_as_long_as_the_period_gives_a(q: list[float], rate: float) -> None:
    period = 0.5 * (len(q) - 4)
    inputs = AccuracyInputs(rate_ml_h=rate, start_min=2.0, period_min=period,
                            windows_min=(period,))
    result = analyse(_masses(q), inputs)
    (point,) = result.trumpet
    assert point.positions == 1
    tol = _tol(rate, q)
    assert point.ep_max_pct == pytest.approx(result.mean_error_pct, abs=tol)
    assert point.ep_min_pct == pytest.approx(result.mean_error_pct, abs=tol)

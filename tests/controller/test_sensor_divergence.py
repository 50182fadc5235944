"""The sensor-vs-counter check: compliance draining after a rate step down is not free flow,
while a free flow or a stuck motor once the line has settled still is."""

from __future__ import annotations

from pumpctl.sensor_divergence import SensorDivergence

POLL_S = 60.0


def _feed(check: SensorDivergence, samples: list[tuple[float, float, float, float]]) -> list[bool]:
    """(t, counter, measured, rate) per poll -> whether each poll was flagged."""
    return [check.check(t, c, m, r) is not None for t, c, m, r in samples]


def test_compliance_draining_after_a_step_down_at_the_reference_sample_is_allowed() -> None:
    # Found by the plan property test: 1000 mL/h until t=360, then 1 mL/h; the poll at 360
    # already reports the new rate, and the line gives back 0.156 mL over the next minute.
    check = SensorDivergence(window_s=30.0)
    step = 1000 / 3600 * POLL_S
    flagged = _feed(check, [
        (300.0, 10.0, 10.0, 1000.0),
        (360.0, 10.0 + step, 10.0 + step - 0.156, 1.0),  # the line still holds 0.156 mL
        (420.0, 10.0 + step + 0.017, 10.0 + step + 0.017, 1.0),  # ... and gives it back
    ])
    assert flagged == [False, False, False]


def test_free_flow_after_the_line_has_settled_is_still_seen() -> None:
    check = SensorDivergence(window_s=30.0)
    step = 1000 / 3600 * POLL_S
    low = 1 / 3600 * POLL_S
    flagged = _feed(check, [
        (300.0, 10.0, 10.0, 1000.0),
        (360.0, 10.0 + step, 10.0 + step, 1.0),
        (420.0, 10.0 + step + low, 10.0 + step + low, 1.0),
        (480.0, 10.0 + step + 2 * low, 10.0 + step + 2 * low + 0.156, 1.0),  # free flow
    ])
    assert flagged == [False, False, False, True]


def test_a_stuck_motor_at_a_steady_rate_is_seen() -> None:
    check = SensorDivergence(window_s=30.0)
    rate = 52.5
    per_poll = rate / 3600 * 5
    samples = [(t * 5.0, t * per_poll, t * per_poll, rate) for t in range(10)]
    samples += [(t * 5.0, t * per_poll, 9 * per_poll, rate) for t in range(10, 20)]
    flagged = _feed(check, samples)
    assert not any(flagged[:10]) and any(flagged[10:])

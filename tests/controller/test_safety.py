"""SafetyMonitor: pure logic over a program's steps and limits."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpctl.drivers.base import Alarm, AlarmKind, Direction, PumpState, PumpStatus
from pumpctl.plan.program import PlannedStep
from pumpctl.safety import (
    BreachKind,
    PlannedDelivery,
    PumpClass,
    SafetyConfigError,
    SafetyMonitor,
    SafetyTolerances,
)

from .programs import NEWERA, make_program


def running(rate: float, infused: float, state: PumpState = PumpState.INFUSING,
            alarm: Alarm | None = None) -> PumpStatus:
    return PumpStatus(state, rate, infused, 0.0, alarm, Direction.INFUSE)


def started_monitor(steps: list[tuple[float, float]] | None = None, **tol: float) -> SafetyMonitor:
    m = SafetyMonitor(make_program(steps), SafetyTolerances(**tol), NEWERA)
    rate = (steps or [(2400.0, 52.5)])[0][1]
    assert m.note_command("set_rate", rate, sent=rate) is None
    assert m.note_command("set_volume_limit", m.cap_ml, sent=m.cap_ml) is None
    assert m.check_command("run", None, plan_t=0.0, delivered_ml=0.0) is None
    m.note_command("run")
    return m


def kinds(breaches: list) -> list[BreachKind]:
    return [b.kind for b in breaches]


def test_planned_volume_is_piecewise_linear_from_steps() -> None:
    plan = PlannedDelivery(make_program([(600.0, 60.0), (1200.0, 30.0)]))
    assert plan.total_ml == pytest.approx(20.0)
    assert plan.volume_at(-5) == 0.0
    assert plan.volume_at(300) == pytest.approx(5.0)
    assert plan.volume_at(600) == pytest.approx(10.0)
    assert plan.volume_at(1200) == pytest.approx(15.0)
    assert plan.volume_at(1e6) == pytest.approx(20.0)
    assert plan.max_rate_ml_h(590, 610) == pytest.approx(60.0)
    assert plan.max_rate_ml_h(700, 900) == pytest.approx(30.0)
    assert plan.max_rate_ml_h(5000, 6000) == 0.0


@given(st.lists(st.tuples(st.floats(1.0, 5000.0), st.floats(0.1, 500.0)), min_size=1, max_size=6),
       st.floats(0.0, 1.0))
def test_time_for_volume_inverts_volume_at(steps: list[tuple[float, float]], frac: float) -> None:
    plan = PlannedDelivery(make_program(steps, max_rate=1e4))
    v = frac * plan.total_ml
    t = plan.time_for_volume(v)
    assert 0.0 <= t <= plan.end_s
    assert plan.volume_at(t) == pytest.approx(v, rel=1e-9, abs=1e-9)


@given(st.lists(st.tuples(st.floats(1.0, 5000.0), st.floats(0.1, 500.0)), min_size=1, max_size=6),
       st.floats(-100.0, 40000.0), st.floats(0.0, 100.0))
def test_volume_at_is_monotonic_and_bounded(steps: list[tuple[float, float]], t: float,
                                            dt: float) -> None:
    plan = PlannedDelivery(make_program(steps, max_rate=1e4))
    a, b = plan.volume_at(t), plan.volume_at(t + dt)
    assert 0.0 <= a <= b <= plan.total_ml * (1 + 1e-12)


def test_refuses_inconsistent_programs() -> None:
    p = make_program()
    with pytest.raises(SafetyConfigError, match="total_volume_ml"):
        SafetyMonitor(p.model_copy(update={"total_volume_ml": 40.0}))
    bolus = PlannedStep(label="bolus", start_s=0, duration_s=0, dose_mg=5, volume_ml=5)
    with pytest.raises(SafetyConfigError, match=r"steps\[0\].duration_s = 0"):
        SafetyMonitor(p.model_copy(update={"steps": [bolus]}))
    with pytest.raises(SafetyConfigError, match="no steps"):
        SafetyMonitor(p.model_copy(update={"steps": []}))
    with pytest.raises(SafetyConfigError, match="concentration"):
        SafetyMonitor(p.model_copy(update={"concentration_mg_per_ml": 0.0}))


def test_rate_commands_are_checked_against_the_step_rate_and_hard_limit() -> None:
    m = SafetyMonitor(make_program([(600.0, 60.0), (1200.0, 30.0)], max_rate=100.0))
    assert m.check_command("set_rate", 60.0, plan_t=10, delivered_ml=0) is None
    assert m.check_command("set_rate", 61.0, plan_t=10, delivered_ml=0) is None  # within 2 %
    b = m.check_command("set_rate", 62.0, plan_t=10, delivered_ml=0)
    assert b is not None and b.kind is BreachKind.RATE_EXCEEDED and b.value == 62.0
    # Past the boundary (beyond the timing slack) only the lower rate is allowed.
    b = m.check_command("set_rate", 60.0, plan_t=700, delivered_ml=0)
    assert b is not None and b.kind is BreachKind.RATE_EXCEEDED
    assert b.limit == pytest.approx(30.6)
    # Just before the boundary the next segment's rate is allowed (command latency).
    assert m.check_command("set_rate", 30.0, plan_t=599.0, delivered_ml=0) is None
    b = m.check_command("set_rate", 150.0, plan_t=10, delivered_ml=0)
    assert b is not None and "pump limit" in b.message and b.limit == 100.0
    for bad in (-1.0, math.nan, math.inf, "fast"):
        b = m.check_command("set_rate", bad, plan_t=10, delivered_ml=0)
        assert b is not None


def test_volume_to_dispense_must_be_capped_at_the_remaining_plan() -> None:
    m = SafetyMonitor(make_program())  # 35 mL
    assert m.check_command("set_volume_limit", 35.0, plan_t=0, delivered_ml=0) is None
    assert m.check_command("set_volume_limit", 20.0, plan_t=0, delivered_ml=15.0) is None
    for vtbi, delivered in ((35.5, 0.0), (20.5, 15.0), (0.0, 0.0)):
        b = m.check_command("set_volume_limit", vtbi, plan_t=0, delivered_ml=delivered)
        assert b is not None and b.kind is BreachKind.VOLUME_LIMIT, (vtbi, delivered)


def test_diameter_direction_and_run_preconditions() -> None:
    m = SafetyMonitor(make_program())
    assert m.check_command("set_diameter", 26.59, plan_t=0, delivered_ml=0) is None
    b = m.check_command("set_diameter", 14.5, plan_t=0, delivered_ml=0)
    assert b is not None and b.kind is BreachKind.COMMAND_REFUSED
    b = m.check_command("set_direction", Direction.WITHDRAW, plan_t=0, delivered_ml=0)
    assert b is not None and b.kind is BreachKind.COMMAND_REFUSED
    b = m.check_command("run", None, plan_t=0, delivered_ml=0)
    assert b is not None and b.kind is BreachKind.VOLUME_LIMIT  # no VTBI yet
    m.note_command("set_volume_limit", 35.0, sent=35.0)
    b = m.check_command("run", None, plan_t=0, delivered_ml=0)
    assert b is not None and "rate" in b.message
    m.note_command("set_rate", 52.5, sent=52.5)
    assert m.check_command("run", None, plan_t=0, delivered_ml=0) is None
    b = m.check_command("run", None, plan_t=0, delivered_ml=35.0)
    assert b is not None and b.kind is BreachKind.TOTAL_REACHED and not b.fault
    m.note_command("run")
    b = m.check_command("clear_counters", None, plan_t=0, delivered_ml=0)
    assert b is not None and b.kind is BreachKind.COMMAND_REFUSED
    assert m.check_command("stop", None, plan_t=0, delivered_ml=99) is None
    b = m.check_command("purge", None, plan_t=0, delivered_ml=0)
    assert b is not None and b.kind is BreachKind.COMMAND_REFUSED


def test_readback_must_match_what_was_sent() -> None:
    m = SafetyMonitor(make_program())
    b = m.note_command("set_rate", 50.0, sent=52.5)
    assert b is not None and b.kind is BreachKind.READBACK_MISMATCH
    assert m.note_command("set_rate", 52.50, sent=52.5) is None
    b = m.note_command("set_volume_limit", 30.0, sent=35.0)
    assert b is not None and b.kind is BreachKind.READBACK_MISMATCH
    b = m.note_command("set_diameter", 26.0, sent=26.59)
    assert b is not None


def test_a_sample_on_plan_passes() -> None:
    m = started_monitor()
    for t in (1.0, 60.0, 600.0, 1200.0, 2399.0):
        v = 52.5 * t / 3600.0
        assert m.check_sample(running(52.5, round(v, 3)), delivered_ml=v, plan_t=t, now=t) == []


def test_over_infusion_stops_at_once() -> None:
    m = started_monitor()
    # 600 s in: planned 8.75 mL; tolerance max(0.05, 2 %) plus 2 s of slack.
    bs = m.check_sample(running(52.5, 9.3), delivered_ml=9.3, plan_t=600, now=600)
    assert kinds(bs)[0] is BreachKind.OVER_INFUSION and bs[0].fault
    m2 = started_monitor()
    assert m2.check_sample(running(52.5, 8.9), delivered_ml=8.9, plan_t=600, now=600) == []


def test_over_the_planned_total_is_over_infusion_whatever_the_time() -> None:
    m = started_monitor()
    bs = m.check_sample(running(52.5, 35.2, PumpState.STOPPED), delivered_ml=35.2, plan_t=5000,
                        now=5000)
    assert kinds(bs)[0] is BreachKind.OVER_INFUSION


def test_dose_cap_is_checked_independently_of_volume() -> None:
    p = make_program()
    p = p.model_copy(update={"limits": p.limits.model_copy(update={"max_total_dose_mg": 20.0})})
    m = SafetyMonitor(p)
    bs = m.check_sample(running(52.5, 25.0), delivered_ml=25.0, plan_t=1800, now=1800)
    assert BreachKind.DOSE_EXCEEDED in kinds(bs)


def test_under_infusion_needs_to_persist_for_the_window() -> None:
    m = started_monitor(under_window_s=15.0)
    short = 5.0  # planned ~8.75 mL at 600 s; 5 mL is far below
    assert m.check_sample(running(52.5, short), delivered_ml=short, plan_t=600, now=600) == []
    assert m.check_sample(running(52.5, short), delivered_ml=short, plan_t=610, now=610) == []
    bs = m.check_sample(running(52.5, short), delivered_ml=short, plan_t=615, now=615)
    assert kinds(bs) == [BreachKind.UNDER_INFUSION]
    # Recovery resets the window.
    m2 = started_monitor(under_window_s=15.0)
    m2.check_sample(running(52.5, short), delivered_ml=short, plan_t=600, now=600)
    ok = 52.5 * 610 / 3600
    assert m2.check_sample(running(52.5, ok), delivered_ml=ok, plan_t=610, now=610) == []
    # The counter stalls at `ok`: it falls out of tolerance again at ~625 s, a new window.
    for t in (616, 630, 644):
        assert m2.check_sample(running(52.5, ok), delivered_ml=ok, plan_t=t, now=t) == [], t
    assert kinds(m2.check_sample(running(52.5, ok), delivered_ml=ok, plan_t=645,
                                 now=645)) == [BreachKind.UNDER_INFUSION]


def test_rate_changed_behind_the_controllers_back() -> None:
    m = started_monitor()
    v = 52.5 * 600 / 3600
    bs = m.check_sample(running(105.0, v), delivered_ml=v, plan_t=600, now=600)
    assert kinds(bs)[:2] == [BreachKind.RATE_EXCEEDED, BreachKind.READBACK_MISMATCH]
    bs = m.check_sample(running(26.0, v), delivered_ml=v, plan_t=601, now=601)
    assert kinds(bs) == [BreachKind.READBACK_MISMATCH]


def test_pump_alarm_and_unexpected_states() -> None:
    m = started_monitor()
    stall = Alarm(AlarmKind.STALL, "S")
    bs = m.check_sample(running(52.5, 1.0, PumpState.ALARM, stall), delivered_ml=1.0, plan_t=69,
                        now=69)
    assert kinds(bs)[0] is BreachKind.PUMP_ALARM and bs[0].value == "stall"
    assert bs[0].source == "pump"
    m = started_monitor()
    bs = m.check_sample(running(52.5, 1.0, PumpState.STOPPED), delivered_ml=1.0, plan_t=69, now=69)
    assert kinds(bs) == [BreachKind.UNEXPECTED_STATE]
    m.note_command("stop")
    bs = m.check_sample(running(52.5, 1.0), delivered_ml=1.0, plan_t=69, now=70)
    assert BreachKind.UNEXPECTED_STATE in kinds(bs)
    m = started_monitor()
    bs = m.check_sample(running(52.5, 1.0, PumpState.WITHDRAWING), delivered_ml=1.0, plan_t=69,
                        now=69)
    assert BreachKind.UNEXPECTED_STATE in kinds(bs)


def test_counter_going_backwards_is_a_mismatch() -> None:
    m = started_monitor()
    v = 52.5 * 600 / 3600
    assert m.check_sample(running(52.5, v), delivered_ml=v, plan_t=600, now=600) == []
    bs = m.check_sample(running(52.5, 0.0), delivered_ml=0.0, plan_t=601, now=601)
    assert BreachKind.READBACK_MISMATCH in kinds(bs)


def test_total_reached_while_running_is_a_stop_but_not_a_fault() -> None:
    m = started_monitor()
    # Exactly the total on a rounded display while running: the pump is about to stop itself.
    assert m.check_sample(running(52.5, 35.0), delivered_ml=35.0, plan_t=2399, now=2399) == []
    bs = m.check_sample(running(52.5, 35.01), delivered_ml=35.01, plan_t=2400, now=2400)
    assert kinds(bs) == [BreachKind.TOTAL_REACHED] and not bs[0].fault
    m = started_monitor()
    done = m.check_sample(running(52.5, 35.0, PumpState.STOPPED), delivered_ml=35.0, plan_t=2400,
                          now=2400)
    assert done == [] and m.is_complete(35.0)


def test_silence_window() -> None:
    m = started_monitor(no_status_s=5.0)
    m.check_sample(running(52.5, 0.0), delivered_ml=0.0, plan_t=0, now=0)
    m.note_status_failure(1.0)
    assert m.check_silence(4.9) is None
    b = m.check_silence(5.0)
    assert b is not None and b.kind is BreachKind.NO_STATUS and b.limit == 5.0
    m2 = started_monitor(no_status_s=5.0)
    m2.note_status_failure(10.0)  # never had a valid status: the clock starts at the failure
    assert m2.check_silence(14.0) is None and m2.check_silence(15.0) is not None


def test_large_volume_pumps_get_wider_tolerances() -> None:
    lvp = SafetyTolerances.for_pump_class(PumpClass.LARGE_VOLUME, under_window_s=30.0)
    assert lvp.volume_rel == 0.05 and lvp.under_window_s == 30.0
    assert SafetyTolerances.for_pump_class(PumpClass.SYRINGE).volume_rel == 0.02


@pytest.mark.parametrize(("value", "quantum"), [(0.5, 0.001), (5.0, 0.001), (35.0, 0.01),
                                                (150.0, 0.1), (1500.0, 1.0)])
def test_the_quantum_is_the_pumps_counter_resolution(value: float, quantum: float) -> None:
    """A New Era counter shows 4 digits: the monitor's step grows with the volume. A pump
    whose counter is a float steps by the program's resolution at any volume."""
    assert SafetyMonitor(make_program(), capabilities=NEWERA).quantum(value) == \
        pytest.approx(quantum)
    assert SafetyMonitor(make_program()).quantum(value) == 0.001


@settings(max_examples=200)
@given(st.floats(0.0, 2400.0), st.floats(-0.01, 0.01))
def test_property_on_plan_samples_never_breach(t: float, err: float) -> None:
    m = started_monitor()
    delivered = min(m.cap_ml - 0.02, m.plan.volume_at(t) * (1 + err))
    assert m.check_sample(running(52.5, delivered), delivered_ml=delivered, plan_t=t, now=t) == []


@settings(max_examples=200)
@given(st.floats(0.0, 3000.0), st.floats(0.001, 5.0))
def test_property_over_the_documented_tolerance_always_breaches(t: float, excess: float) -> None:
    """Above planned(t + slack) by more than max(0.05 mL, 2 %, 2 quanta) is always a stop."""
    m = started_monitor()
    planned = m.plan.volume_at(t + m.tolerances.timing_slack_s)
    tol = max(0.05, 0.02 * planned, 2 * NEWERA.counters.resolution.at(planned))
    delivered = planned + tol + excess
    bs = m.check_sample(running(52.5, delivered), delivered_ml=delivered, plan_t=t, now=t)
    assert kinds(bs)[0] is BreachKind.OVER_INFUSION


@settings(max_examples=100)
@given(st.floats(0.0, 1e5), st.floats(0.011, 100.0))
def test_property_beyond_the_total_always_breaches(t: float, excess: float) -> None:
    m = started_monitor()
    delivered = m.cap_ml + excess
    bs = m.check_sample(running(52.5, delivered, PumpState.STOPPED), delivered_ml=delivered,
                        plan_t=t, now=t)
    assert kinds(bs)[0] is BreachKind.OVER_INFUSION


@settings(max_examples=100)
@given(st.floats(0.0, 2400.0), st.floats(1.03, 10.0))
def test_property_commanded_rate_above_plan_is_refused(t: float, factor: float) -> None:
    m = SafetyMonitor(make_program([(600.0, 60.0), (1800.0, 30.0)], max_rate=1000.0))
    allowed = m.plan.max_rate_ml_h(t - 2.0, t + 2.0)
    b = m.check_command("set_rate", allowed * factor, plan_t=t, delivered_ml=0)
    assert b is not None and b.kind is BreachKind.RATE_EXCEEDED


def test_complete_when_the_counter_shows_the_floored_cap_of_a_float_counter() -> None:
    """A float counter (Modbus FLOAT32) shows the motor's last whole step below the volume
    cap, which holds the total floored to the cap's step: 5.05998 -> 5.059 -> 5.05897 mL."""
    from pumpctl.drivers.base import Counters, PumpCapabilities, Resolution, VolumeCap

    exact = Resolution(step_ml=0.001)
    caps = PumpCapabilities(counters=Counters(resolution=exact), volume_cap=VolumeCap(exact))
    m = SafetyMonitor(make_program([(300.0, 60.71981904)]), SafetyTolerances(), caps)
    assert math.isclose(m.cap_ml, 5.05998492)
    assert m.is_complete(5.05897)  # one motor step below the floored cap
    assert not m.is_complete(5.0579)  # more than a quantum below what the pump stops at


def test_complete_where_a_cap_set_on_an_off_grid_baseline_stops_the_pump() -> None:
    """A resumed run (or a pump re-capped after a pause it cannot make) sets its cap on a
    baseline off the cap's grid: 35 - 10.12301 = 24.87699, floored to 24.876, stops the pump
    at 34.99901 mL and the motor a step below that. Found by the resume-after-SIGKILL test
    on the generic Modbus map: "pump stopped before the planned total (34.999 of 35 mL)"."""
    from pumpctl.drivers.base import Counters, PumpCapabilities, Resolution, VolumeCap

    exact = Resolution(step_ml=0.001)
    caps = PumpCapabilities(counters=Counters(resolution=exact), volume_cap=VolumeCap(exact))
    m = SafetyMonitor(make_program([(2400.0, 52.5)]), SafetyTolerances(), caps)
    assert m.cap_ml == 35.0
    motor_stop = 10.12301 + 24.876 - 0.00014
    assert not m.is_complete(motor_stop)  # before the pump is known to stop there
    # The resume's cap, 24.876 mL on top of 10.12301: the monitor sees it set and read back.
    assert m.note_command("set_volume_limit", 24.876, sent=24.876,
                          delivered_ml=10.12301) is None
    assert m.is_complete(motor_stop)
    assert not m.is_complete(34.9975)  # still no more than a quantum below its own stop
    # A cap that would stop the pump lower than one step below the total does not make less
    # "complete": that is a short delivery, whatever the pump was told.
    m.pump_stops_at(30.0)
    assert not m.is_complete(30.0) and not m.is_complete(34.9975)


def test_a_rate_one_digit_step_above_the_plan_is_allowed_where_the_plan_cannot_be_written() -> None:
    """0.0352 mL/h, compiled in mL/h (three decimals, the unit the 600 mL/h step needs) as
    0.035 and 0.036 mL/h: the upper neighbour is 2.2 % above the plan, more than the 2 % rate
    tolerance, and allowed; two steps above is not. Where 2 % is more than a step, 2 % rules."""
    from pumpctl.plan.compile import compile_plan
    from pumpctl.plan.model import PlanFile

    plan = PlanFile.model_validate({
        "name": "two-rates", "drug": "saline", "syringe": "bd-plastipak-60",
        "steps": [{"label": "slow", "volume": "7.828e-05 mL/kg", "over": "4 min"},
                  {"label": "fast", "volume": "1 mL/kg", "over": "3 min"},
                  {"label": "rest", "volume": "0.001667 mL/kg", "over": "3 min"}],
        "monitoring": {"vitals_every": "15 min", "observe_after_end": "2 h"}})
    program = compile_plan(plan, weight_kg=30.0, override_reason="test")
    assert sorted({s.rate_ml_h for s in program.segments})[:2] == [0.035, 0.036]
    m = SafetyMonitor(program, SafetyTolerances(), NEWERA)
    assert 0.036 <= m.allowed_rate_ml_h(60.0) < 0.037
    assert math.isclose(m.allowed_rate_ml_h(300.0), 600.0 * 1.02)


def test_a_total_within_a_counter_step_of_zero_is_not_complete_at_zero() -> None:
    """0.0017 mL, capped at 0.001 mL (the cap's step): nothing counted is not complete;
    the motor's last step below the cap is."""
    m = SafetyMonitor(make_program([(600.0, 0.01)]), SafetyTolerances(), NEWERA)
    assert not m.is_complete(0.0)
    assert m.is_complete(0.000998)

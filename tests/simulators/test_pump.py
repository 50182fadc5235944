"""The protocol-free simulated pump, driven directly on a hand-turned clock: no engine, no
bytes, no New Era."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pumpctl.clock import ManualClock
from simulators.faults import Fault, FaultKind, parse_fault
from simulators.pump import (
    Motion,
    PumpAlarm,
    PumpSetup,
    Refusal,
    ReplyFault,
    SimPumpState,
    SimulatedPump,
)


def fresh(clock: ManualClock, **setup: float) -> SimulatedPump:
    """A pump just switched on, its power-up alarm acknowledged."""
    pump = SimulatedPump(clock, PumpSetup(**setup))  # type: ignore[arg-type]
    assert pump.acknowledge_alarm() is PumpAlarm.POWER_RESET
    return pump


def advance(pump: SimulatedPump, clock: ManualClock, until: float) -> None:
    """What a line's service task does: wake at each deadline up to `until`, and service."""
    while (deadline := pump.next_deadline()) is not None and deadline <= until:
        clock.now = max(clock.now, deadline)
        pump.service(clock.now)
    clock.now = until
    pump.service(until)


def test_building_and_driving_a_pump_imports_no_protocol() -> None:
    code = (
        "import sys\n"
        "from pumpctl.clock import ManualClock\n"
        "from simulators.pump import SimulatedPump\n"
        "pump = SimulatedPump(ManualClock())\n"
        "pump.acknowledge_alarm(); pump.set_rate(10.0); pump.run()\n"
        "print(sorted(m for m in sys.modules if 'newera' in m or 'modbus' in m\n"
        "             or m.startswith(('pumpctl.drivers', 'simulators.serve'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_power_up_alarm_must_be_acknowledged_before_running() -> None:
    clock = ManualClock()
    pump = SimulatedPump(clock)
    assert pump.state is SimPumpState.ALARM and pump.alarm is PumpAlarm.POWER_RESET
    assert pump.set_rate(30.0) is None  # settings may change; running may not
    assert pump.run() is Refusal.ALARM_PENDING and not pump.moving
    assert pump.acknowledge_alarm() is PumpAlarm.POWER_RESET
    assert pump.acknowledge_alarm() is None
    assert pump.state is SimPumpState.STOPPED
    assert pump.run() is None and pump.state is SimPumpState.INFUSING


def test_a_phase_stops_at_its_volume_target_and_a_pause_keeps_what_is_left() -> None:
    clock = ManualClock()
    pump = fresh(clock)
    assert pump.set_rate(60.0) is None and pump.set_volume_target(1.0) is None
    assert pump.run() is None
    assert pump.set_volume_target(2.0) is Refusal.BUSY  # not while running
    assert pump.set_diameter(20.0) is Refusal.BUSY
    clock.now = 30.0
    pump.pause()
    assert pump.state is SimPumpState.PAUSED
    assert pump.set_direction(Motion.WITHDRAW) is Refusal.BUSY  # nor while paused
    infused, _ = pump.counters_ml()
    assert infused == pytest.approx(0.5, abs=0.001)
    clock.now = 100.0
    assert pump.run() is None  # resumes the phase: 0.5 mL left, not a new 1 mL
    clock.now = 200.0
    assert pump.state is SimPumpState.STOPPED
    infused, _ = pump.counters_ml()
    assert infused == pytest.approx(1.0, abs=0.001)
    assert pump.run() is None  # a new phase: another 1 mL
    clock.now = 300.0
    assert pump.counters_ml()[0] == pytest.approx(2.0, abs=0.001)


def test_refusals_name_the_reason() -> None:
    clock = ManualClock()
    pump = fresh(clock)
    low, high = pump.rate_limits_ml_h()
    assert pump.set_rate(high * 1.01) is Refusal.OUT_OF_RANGE
    assert pump.set_rate(-1.0) is Refusal.OUT_OF_RANGE
    assert pump.rate_ml_h == 0.0  # unchanged
    assert pump.set_diameter(0.05) is Refusal.OUT_OF_RANGE
    assert pump.set_volume_target(float("nan")) is Refusal.OUT_OF_RANGE
    assert pump.run() is Refusal.OUT_OF_RANGE  # rate 0 is below the lowest rate
    assert pump.set_rate(low) is None and pump.run() is None
    assert pump.clear_counters(infused=True) is Refusal.BUSY
    pump.stop()
    assert pump.clear_counters(infused=True, withdrawn=True) is None


def test_the_host_watchdog_stops_the_pump_when_requests_stop() -> None:
    clock = ManualClock()
    pump = fresh(clock)
    alarms: list[PumpAlarm] = []
    pump.add_alarm_listener(alarms.append)
    pump.set_watchdog(5)
    pump.set_rate(10.0)
    pump.run()
    for t in (3.0, 6.0, 9.0):  # fed every 3 s: never fires
        clock.now = t
        pump.service(t)
        pump.feed_watchdog(t)
    assert pump.watchdog_deadline() == 14.0
    pump.service(13.9)
    assert pump.moving and not alarms
    clock.now = 14.0
    pump.service(14.0)
    assert not pump.moving and alarms == [PumpAlarm.WATCHDOG]
    assert pump.state is SimPumpState.ALARM
    assert pump.watchdog_deadline() is None  # re-armed by the next valid request
    pump.feed_watchdog(15.0)
    assert pump.watchdog_deadline() == 20.0
    pump.set_watchdog(0)
    assert pump.watchdog_deadline() is None


def test_a_power_cut_keeps_settings_and_loses_motion_counters_and_running_changes() -> None:
    clock = ManualClock()
    pump = fresh(clock)
    events: list[str] = []
    pump.add_power_up_listener(lambda: events.append("power up"))
    pump.add_alarm_listener(lambda alarm: events.append(alarm.value))
    pump.set_rate(20.0)  # set while stopped: stored
    pump.run()
    pump.set_rate(40.0)  # set while running: not stored
    pump.inject(Fault(FaultKind.POWER_RESET, at_s=60.0, params={"off": 10.0}))
    advance(pump, clock, 59.9)
    assert pump.powered and pump.moving
    advance(pump, clock, 60.0)
    assert not pump.powered and not pump.moving and pump.counters_ml() == (0.0, 0.0)
    assert pump.next_deadline() == 70.0 and events == []
    advance(pump, clock, 70.0)
    assert pump.powered and events == ["power up", "power_reset"]
    assert pump.rate_ml_h == 20.0 and pump.alarm is PumpAlarm.POWER_RESET


@pytest.mark.parametrize(("fault", "alarm"), [("occlusion@0s", PumpAlarm.STALL),
                                              ("syringe-empty@0s", PumpAlarm.SYRINGE_EMPTY)])
def test_stalls_raise_their_alarm_and_stop_the_motor(fault: str, alarm: PumpAlarm) -> None:
    clock = ManualClock()
    pump = fresh(clock)
    pump.set_rate(52.5)
    pump.run()
    clock.now = 60.0
    pump.apply(parse_fault(fault))
    advance(pump, clock, 120.0)  # 52.5 mL/h stalls about 33 s after an occlusion
    assert not pump.moving and pump.state is SimPumpState.ALARM
    assert [a for _, a in pump.alarm_log] == [PumpAlarm.POWER_RESET, alarm]


def test_reply_faults_are_counted_down_for_the_engine() -> None:
    clock = ManualClock()
    pump = fresh(clock)
    assert pump.wire.take_reply_fault() is None
    pump.apply(parse_fault("drop-replies@0s:count=2"))
    assert [pump.wire.take_reply_fault() for _ in range(3)] == [ReplyFault(drop=True)] * 2 + [None]
    pump.apply(parse_fault("corrupt-bytes@0s:count=1,index=3,mask=1"))
    pump.apply(parse_fault("delay-replies@0s:count=2,delay=1.5"))
    assert pump.wire.take_reply_fault() == ReplyFault(corrupt=(3, 1), delay_s=1.5)
    assert pump.wire.take_reply_fault() == ReplyFault(delay_s=1.5)
    assert pump.wire.take_reply_fault() is None
    pump.apply(parse_fault("corrupt-bytes@0s:count=1,inbound=1"))
    assert [pump.wire.take_inbound_corruption() for _ in range(2)] == [True, False]
    pump.apply(parse_fault("ignore-first-command@0s"))
    assert [pump.take_ignored_command() for _ in range(2)] == [True, False]
    pump.power_cut()  # the quirk comes back with every power-up
    assert pump.take_ignored_command()

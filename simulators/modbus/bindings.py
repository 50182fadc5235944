"""What each register of a map means to a simulated pump, read from the map's operations.

A map says which register does what (`operations:`): the rate set point, the state word, the
run coil, the alarm bits. Those registers are bound here to a `SimulatedPump`: a read gives
the pump's live value (rate, state, counters, alarms) in the register's unit, a write calls
the pump's setter or action. Every other register the map names is plain storage: it keeps
what was written (its words as they came, so a client reads back its own word order) and
starts at 0, or at the value the map gives it (the identify register's first enum value, the
firmware of `pump.firmware`).

Choices the maps leave open (docs/simulators.md, "The Modbus simulator"):
- `select` writes (Vindum's rate unit and mode, ISCO's flow unit and constant-flow coils) gate
  a run: a run while one of them does not hold its value is refused, so a client that forgets
  them is caught, as it would drive the real pump in another unit.
- A map with `run_with_target` (Vindum volume mode) applies the volume target only to that
  run; its plain run goes on until stopped. Without one, the target applies to every run
  (generic).
- An alarm is shown on the first alarm source of its kind; one with no source of its kind
  on the first source of kind `unknown` (a catch-all error word); a power-up alarm the map
  cannot show at all is not latched (the pump just comes back stopped). A map with no
  `acknowledge` clears the pending alarm when the next run is asked for (ISCO: "the alarm
  coils clear with their cause").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pumpctl.drivers.base import AlarmKind
from pumpctl.drivers.modbus.pumpmap import (
    RATE_UNITS,
    AlarmSource,
    PumpMap,
    Register,
    ValueType,
    Write,
)
from simulators.physics import Motion
from simulators.pump import PumpAlarm, Refusal, SimulatedPump

Number = float | int | bool


class Refused(StrEnum):
    """Why the pump did not take a write. `code` is what a command-response register
    (Vindum IR 0) shows for it; the map's `error_code` is the exception otherwise."""

    OUT_OF_RANGE = "out_of_range"  # outside the map's or the pump's limits
    BUSY = "busy"  # not while the motor runs (a diameter, a direction)
    ALARM_PENDING = "alarm_pending"  # acknowledge the alarm first
    NOT_SELECTED = "not_selected"  # a run before the map's `select` writes

    @property
    def code(self) -> int:
        return _CODES[self]


_CODES = {Refused.OUT_OF_RANGE: 1, Refused.BUSY: 2, Refused.ALARM_PENDING: 3,
          Refused.NOT_SELECTED: 4}
_FROM_PUMP = {Refusal.OUT_OF_RANGE: Refused.OUT_OF_RANGE, Refusal.BUSY: Refused.BUSY,
              Refusal.ALARM_PENDING: Refused.ALARM_PENDING}

Reader = Callable[[], Number]
Setter = Callable[[float], "Refused | None"]
Action = Callable[[], "Refused | None"]


def _refused(refusal: Refusal | None) -> Refused | None:
    return None if refusal is None else _FROM_PUMP[refusal]


@dataclass
class Bindings:
    """The live registers of one map on one pump: `readers` (name -> live value),
    `setters` (name -> setting), `actions` (name -> written value -> action)."""

    readers: dict[str, Reader]
    setters: dict[str, Setter]
    actions: dict[str, dict[int, Action]]
    on_direction_change: Callable[[], None]


class PumpBinder:
    """Builds the `Bindings` of `pump_map` over `pump`; `stored(name)` reads a storage
    register (for the `select` writes a run checks), `direction_changed` is called when a
    write really reverses the pump (the map's busy period)."""

    def __init__(self, pump_map: PumpMap, pump: SimulatedPump, *,
                 stored: Callable[[str], Number | None],
                 direction_changed: Callable[[], None]) -> None:
        self.map = pump_map
        self.pump = pump
        self._stored = stored
        self._direction_changed = direction_changed
        ops = pump_map.operations
        self.rate_factor = RATE_UNITS[ops.rate.unit or "mL/h"]  # mL/h per unit of the map
        self._sources = ops.alarms

    # ---- the whole table ------------------------------------------------------------------

    def bind(self) -> Bindings:
        ops = self.map.operations
        pump = self.pump
        readers: dict[str, Reader] = {}
        setters: dict[str, Setter] = {}
        actions: dict[str, dict[int, Action]] = {}

        factor = self.rate_factor
        setters[ops.rate.register] = lambda v: _refused(pump.set_rate(v * factor))
        readers[ops.rate.readback_register] = lambda: pump.rate_ml_h / factor
        if ops.rate_actual is not None:
            actual = self._rate_factor_of(self.map.register(ops.rate_actual))
            readers[ops.rate_actual] = \
                lambda: pump.model.rate_ml_h / actual if pump.moving else 0.0
        if ops.volume_target is not None:
            setters[ops.volume_target.register] = \
                lambda v: _refused(pump.set_volume_target(v))
            readers[ops.volume_target.readback_register] = lambda: pump.volume_target_ml
        if ops.diameter is not None:
            setters[ops.diameter.register] = lambda v: _refused(pump.set_diameter(v))
            readers[ops.diameter.readback_register] = lambda: pump.diameter_mm
        if ops.direction is not None:
            d = ops.direction
            setters[d.register] = self._set_direction
            readers[d.register] = \
                lambda: d.infuse if pump.direction is Motion.INFUSE else d.withdraw
        if ops.watchdog is not None:
            setters[ops.watchdog.register] = self._set_watchdog
            readers[ops.watchdog.register] = lambda: pump.watchdog_s
        state = ops.state
        if state.register is not None:
            readers[state.register] = self._state_value
        if state.running is not None:
            readers[state.running] = lambda: pump.moving
        infused, withdrawn = ops.counters.infused, ops.counters.withdrawn
        readers[infused] = lambda: pump.counters_ml()[0]
        if withdrawn is not None:
            readers[withdrawn] = lambda: pump.counters_ml()[1]
        for name in {s.register for s in self._sources}:
            readers[name] = self._alarm_reader(self.map.register(name))

        def act(write: Write | None, action: Action) -> None:
            if write is not None:
                actions.setdefault(write.register, {})[int(write.value)] = action

        act(ops.run, lambda: self.run(with_target=False))
        act(ops.run_with_target, lambda: self.run(with_target=True))
        act(ops.stop, self._stop)
        act(ops.pause, self._pause)
        act(ops.acknowledge, self._acknowledge)
        act(ops.clear_counters,
            lambda: _refused(pump.clear_counters(infused=True, withdrawn=True)))
        return Bindings(readers, setters, actions, self._direction_changed)

    def _alarm_reader(self, reg: Register) -> Reader:
        return lambda: self._alarm_value(reg)

    def _rate_factor_of(self, reg: Register) -> float:
        """mL/h per unit of a rate register: its own unit if it names one, else the map's."""
        return RATE_UNITS.get(reg.unit or "", self.rate_factor)

    # ---- settings and actions -------------------------------------------------------------

    def _set_direction(self, value: float) -> Refused | None:
        d = self.map.operations.direction
        assert d is not None
        if value not in (d.infuse, d.withdraw):
            return Refused.OUT_OF_RANGE
        motion = Motion.INFUSE if value == d.infuse else Motion.WITHDRAW
        before = self.pump.direction
        refused = _refused(self.pump.set_direction(motion))
        if refused is None and motion is not before:
            self._direction_changed()
        return refused

    def _set_watchdog(self, value: float) -> Refused | None:
        w = self.map.operations.watchdog
        assert w is not None
        if value != int(value) or not (value == 0 or w.min_s <= value <= w.max_s):
            return Refused.OUT_OF_RANGE
        self.pump.set_watchdog(int(value))
        return None

    def run(self, *, with_target: bool) -> Refused | None:
        ops = self.map.operations
        for write in ops.rate.select:
            if self._stored(write.register) != write.value:
                return Refused.NOT_SELECTED
        pump = self.pump
        if pump.alarm is not None and ops.acknowledge is None:
            pump.acknowledge_alarm()  # no way to acknowledge: the alarm clears with a new run
        if with_target or ops.run_with_target is None:
            return _refused(pump.run())
        # A plain run of a map that has a volume mode: no target for this phase.
        target, pump.volume_target_ml = pump.volume_target_ml, 0.0
        try:
            return _refused(pump.run())
        finally:
            pump.volume_target_ml = target

    def _stop(self) -> Refused | None:
        self.pump.stop()
        return None

    def _pause(self) -> Refused | None:
        self.pump.pause()
        return None

    def _acknowledge(self) -> Refused | None:
        self.pump.acknowledge_alarm()
        return None

    # ---- readings -------------------------------------------------------------------------

    def _state_value(self) -> int:
        values = self.map.operations.state.values
        pump = self.pump
        for wanted in (pump.state.value, pump.motion_state.value):
            for key, state in values.items():
                if state.value == wanted:
                    return key
        return 0

    def showable(self, alarm: PumpAlarm) -> bool:
        """Whether some alarm source of the map can show `alarm`."""
        return any(s.kind.value == alarm.value for s in self._sources)

    def _shown_source(self) -> AlarmSource | None:
        """The source the pending alarm shows on (None: no alarm, or nowhere to show it)."""
        alarm = self.pump.alarm
        if alarm is None:
            return None
        for source in self._sources:
            if source.kind.value == alarm.value:
                return source
        for source in self._sources:
            if source.kind is AlarmKind.UNKNOWN:
                return source
        return None

    def _alarm_value(self, reg: Register) -> Number:
        source = self._shown_source()
        if source is None or source.register != reg.name:
            return 0
        if source.bit is not None:
            return 1 << source.bit
        if source.value is not None:
            return source.value
        # "Non-zero": a value (or bit) no other source of this register claims.
        if reg.value_type is ValueType.BOOL:
            return 1
        mine = [s for s in self._sources if s.register == reg.name]
        if any(s.bit is not None for s in mine):
            claimed_bits = {s.bit for s in mine}
            return 1 << next(b for b in range(32) if b not in claimed_bits)
        claimed = {s.value for s in mine}
        return next(v for v in range(1, 1 << 16) if v not in claimed)

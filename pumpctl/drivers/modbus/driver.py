"""`PumpDriver` for one Modbus pump, driven entirely by its register map.

Nothing here knows a vendor: every register, value and operation comes from the map
(`pumpmap`), so a lab's own pump needs a YAML file, not code. Rules this driver keeps, so the
controller can trust what it returns:
- every setting is read back and compared (to the precision of the register: a FLOAT32 holds
  0.1 as 0.100000001); a difference is `ReadbackMismatch`. Action registers read back 0, so an
  action is checked by its effect (run: moving; stop: stopped; clear: counters at 0);
- where the map has a command-response register (Vindum IR 0) it is read after every write:
  a non-zero code means the pump refused the write;
- an exception reply with the map's refused-value code (3) is `PumpOutOfRange`; other codes,
  and bytes that are no reply, `PumpProtocolError` (a bad CRC `PumpChecksumError`); silence
  `PumpTimeout`. Reads are retried; writes are sent once and settled by the read-back;
- alarms are sticky here, as in the New Era driver: kept until `acknowledge_alarm()`, and
  settings and runs are refused meanwhile;
- with a watchdog register armed, a heartbeat keeps the pump fed while this process lives;
- a map that cannot reset its counters (ISCO D) gets a zero kept here: `clear_counters`
  remembers the counter's reading and `status` reports from it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping

from pumpctl.drivers.base import (
    Alarm,
    AlarmKind,
    Direction,
    PumpAlarmError,
    PumpCapabilities,
    PumpError,
    PumpIdentity,
    PumpNotApplicable,
    PumpOutOfRange,
    PumpProtocolError,
    PumpState,
    PumpStatus,
    PumpTimeout,
    ReadbackMismatch,
    RunOutline,
)
from pumpctl.drivers.modbus import codec
from pumpctl.drivers.modbus.capabilities import capabilities
from pumpctl.drivers.modbus.link import ModbusExceptionReply, ModbusLink
from pumpctl.drivers.modbus.pumpmap import RATE_UNITS, PumpMap, Register, Write
from pumpctl.drivers.modbus.reads import RegisterReader
from pumpctl.drivers.modbus.watchdog import Watchdog

log = logging.getLogger(__name__)

# Alarms a pump is expected to hold when a session starts (it was powered up, or the previous
# controller's watchdog stopped it): acknowledged at open, recorded as `alarm_at_open`.
_BENIGN_AT_OPEN = (AlarmKind.POWER_RESET, AlarmKind.WATCHDOG)
_LOST = (PumpTimeout, PumpProtocolError)  # a write whose reply did not come back usable
Value = float | int | bool


class ModbusPumpDriver(Watchdog):
    """One pump (unit id) on a `ModbusLink`, as its map describes it. Get it from
    `ModbusLine.pump(unit)`."""

    def __init__(self, link: ModbusLink, unit: int, pump_map: PumpMap, *,
                 watchdog_s: int | None = None) -> None:
        self.link = link
        self.unit = unit
        self.address = unit
        self.map = pump_map
        self.reader = RegisterReader(link, unit, pump_map)
        self._capabilities = capabilities(pump_map)
        ops = pump_map.operations
        self._rate_factor = RATE_UNITS[ops.rate.unit or "mL/h"]  # mL/h per map rate unit
        self._want_watchdog_s = watchdog_s
        self.watchdog_s = 0
        self.identity: PumpIdentity | None = None
        self.alarm: Alarm | None = None  # sticky until acknowledge_alarm()
        self.alarm_at_open: Alarm | None = None
        # An alarm acknowledged here that a map without `acknowledge` keeps showing until the
        # pump's next run: not taken as a new alarm meanwhile.
        self._acknowledged: Alarm | None = None
        self._opened = False
        self._selected = False  # the rate's select writes are known to hold
        self._target_ml = 0.0
        self._busy_until = 0.0
        self._zero = (0.0, 0.0)  # counter readings taken as zero (maps that cannot clear)
        self._heartbeat: asyncio.Task[None] | None = None
        self.heartbeats = 0
        self.heartbeat_error: PumpError | None = None
        self._status_names = self._names_for_status()

    @property
    def capabilities(self) -> PumpCapabilities:
        return self._capabilities

    @property
    def retried(self) -> int:
        """Reads repeated on this pump's line because a reply was lost, late or corrupt."""
        return self.link.retried

    # ---- plumbing -----------------------------------------------------------------------------

    def _converted(self, exc: ModbusExceptionReply) -> PumpError:
        if exc.code == self.map.error_code:
            return PumpOutOfRange(str(exc))
        return exc

    async def _read(self, names: tuple[str, ...] | list[str]) -> dict[str, Value]:
        try:
            return await self.reader.read(names)
        except ModbusExceptionReply as exc:
            raise self._converted(exc) from None

    def _check_value(self, reg: Register, value: Value) -> list[int]:
        """The words for `value`, or `PumpOutOfRange` naming register, value and limit."""
        if reg.min is not None and value < reg.min:
            raise PumpOutOfRange(f"{reg.name} {value:g}{codec.unit_text(reg)} is below its minimum "
                                 f"{reg.min:g} ({self.map.name} map)")
        if reg.max is not None and value > reg.max:
            raise PumpOutOfRange(f"{reg.name} {value:g}{codec.unit_text(reg)} is above its maximum "
                                 f"{reg.max:g} ({self.map.name} map)")
        try:
            return codec.encode(reg, value, self.map.word_order)
        except ValueError as exc:
            raise PumpOutOfRange(str(exc)) from None

    async def _send(self, name: str, value: Value) -> bool:
        """Write one register; False if the reply was lost (the caller's check settles it)."""
        reg = self.map.register(name)
        words = self._check_value(reg, value)
        try:
            await self.link.write(self.unit, reg.kind, reg.address, words)
        except ModbusExceptionReply as exc:
            raise self._converted(exc) from None
        except _LOST as exc:
            log.info("no usable reply to writing %s = %s (%s); checking", name, value, exc)
            return False
        await self._command_response(name, value)
        return True

    async def _command_response(self, name: str, value: Value) -> None:
        response = self.map.command_response
        if response is None:
            return
        code = await self.reader.one(response.register)
        if code != response.ok:
            raise PumpOutOfRange(f"unit {self.unit} refused {name} = {value:g}: "
                                 f"{response.register} is {code} (0 = accepted)")

    async def _set(self, name: str, value: Value, *, readback: str | None = None,
                   what: str | None = None) -> Value:
        """Write a setting and read it back; returns what the pump holds."""
        reg = self.map.register(name)
        await self._send(name, value)
        back_reg = self.map.register(readback or name)
        read = (await self._read((back_reg.name,)))[back_reg.name]
        if not codec.same(reg, value, back_reg, read):
            raise ReadbackMismatch(what or name, f"{value:g}{codec.unit_text(reg)}",
                                   f"{read:g}{codec.unit_text(back_reg)}")
        return read

    async def _action(self, write: Write) -> bool:
        reg = self.map.register(write.register)
        if reg.access.readable:
            await self._set(write.register, write.value)
            return True
        return await self._send(write.register, write.value)

    def _refuse_in_alarm(self, what: str) -> None:
        if self.alarm is not None:
            raise PumpAlarmError(self.alarm, f"pump {self.unit} is in alarm "
                                 f"({self.alarm.kind.value}): acknowledge it before {what}")

    # ---- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Find the pump, take over an alarm it holds, identify it, and arm (or keep fed) its
        watchdog if the map has one."""
        if self._opened:
            return
        try:
            values = await self._read(self._status_names)
        except PumpTimeout:
            raise PumpTimeout(f"no pump answers at unit {self.unit} ({self.map.name} map, "
                              f"{self.link.timeout_s:g} s per request)") from None
        found = self._alarm_in(values)
        self._selected = self._selects_hold(values)
        if found is not None:
            self.alarm_at_open = found
            if found.kind in _BENIGN_AT_OPEN and self.map.operations.acknowledge is not None:
                await self._action(self.map.operations.acknowledge)
            else:
                self.alarm = found  # a stall or error from before we came: decide explicitly
        self.identity = await self.identify()
        self._opened = True
        op = self.map.operations.watchdog
        if op is not None:
            self.watchdog_s = int((await self._read((op.register,)))[op.register])
            if self._want_watchdog_s is not None and self._want_watchdog_s != self.watchdog_s:
                await self.set_watchdog(self._want_watchdog_s)
            elif self.watchdog_s:
                self._start_heartbeat()

    async def close(self) -> None:
        """Stop the heartbeat; the pump is left as it is (an armed watchdog then fires)."""
        await self.stop_heartbeat()

    # ---- queries ------------------------------------------------------------------------------

    async def identify(self) -> PumpIdentity:
        ident = self.map.operations.identify
        model = self.map.pump.model or self.map.title
        if ident is None:
            return PumpIdentity(model=model, firmware=self.map.pump.firmware, address=self.unit,
                                raw=f"map {self.map.name}")
        names = [n for n in (ident.model, *ident.firmware_registers) if n is not None]
        values = await self._read(names) if names else {}
        raw = ", ".join(f"{n}={values[n]!r}" for n in names)
        if ident.model is not None:
            shown = codec.shown(self.map.register(ident.model), values[ident.model])
            model = f"{ident.model_text} (type {shown})" if ident.model_text else shown
        elif ident.model_text:
            model = ident.model_text
        firmware = ".".join(codec.shown(self.map.register(n), values[n])
                            for n in ident.firmware_registers) or self.map.pump.firmware
        return PumpIdentity(model=model, firmware=firmware, address=self.unit, raw=raw)

    def _names_for_status(self) -> tuple[str, ...]:
        ops = self.map.operations
        names = {ops.rate.readback_register, ops.counters.infused}
        names |= {w.register for w in ops.rate.select
                  if self.map.register(w.register).readable}
        names |= {a.register for a in ops.alarms}
        for name in (ops.state.register, ops.state.running, ops.counters.withdrawn):
            if name is not None:
                names.add(name)
        if ops.direction is not None:
            names.add(ops.direction.register)
        return tuple(sorted(names))

    def _alarm_in(self, values: Mapping[str, Value]) -> Alarm | None:
        for source in self.map.operations.alarms:
            raw = values[source.register]
            if source.value is not None:
                active = raw == source.value
            elif source.bit is not None:
                active = bool(int(raw) >> source.bit & 1)
            else:
                active = bool(raw)
            if active:
                message = source.message
                if source.value is None:
                    message = f"{message} (0x{int(raw):x})".strip()
                return Alarm(source.kind, source.code, message)
        return None

    def _selects_hold(self, values: Mapping[str, Value]) -> bool:
        return all(values.get(w.register, w.value) == w.value
                   for w in self.map.operations.rate.select)

    def _unselected(self, values: Mapping[str, Value]) -> str:
        return ", ".join(f"{w.register} is {values[w.register]:g}, the {self.map.name} map "
                         f"selects {w.value:g}" for w in self.map.operations.rate.select
                         if w.register in values and values[w.register] != w.value)

    def _rate_in(self, values: Mapping[str, Value]) -> float | None:
        """The set rate in mL/h; None while the selection writes do not hold (the number is
        then in a unit or mode the map does not describe)."""
        self._selected = self._selects_hold(values)
        if not self._selected:
            return None
        return float(values[self.map.operations.rate.readback_register]) * self._rate_factor

    def _direction_in(self, values: Mapping[str, Value]) -> Direction | None:
        op = self.map.operations.direction
        if op is None:
            return Direction.INFUSE  # a pump that only delivers
        raw = values[op.register]
        return Direction.INFUSE if raw == op.infuse else \
            Direction.WITHDRAW if raw == op.withdraw else None

    def _state_in(self, values: Mapping[str, Value]) -> PumpState:
        op = self.map.operations.state
        if op.register is not None:
            raw = values[op.register]
            state = op.values.get(int(raw))
            if state is None:
                raise PumpProtocolError(f"unit {self.unit}: {op.register} is {raw}, which the "
                                        f"{self.map.name} map gives no state")
            return state
        assert op.running is not None
        if not values[op.running]:
            return PumpState.STOPPED
        direction = self._direction_in(values)
        return PumpState.WITHDRAWING if direction is Direction.WITHDRAW else PumpState.INFUSING

    async def status(self) -> PumpStatus:
        values = await self._read(self._status_names)
        ops = self.map.operations
        found = self._alarm_in(values)
        if found is None:
            self._acknowledged = None
        elif self._acknowledged is not None and found.code == self._acknowledged.code:
            found = None
        if found is not None and self._opened and self.alarm is None:
            log.info("pump %d alarm: %s %s", self.unit, found.code, found.message)
            self.alarm = found
        state = self._state_in(values)
        if self.alarm is not None:
            state = PumpState.ALARM
        rate = self._rate_in(values)
        if rate is None:
            if state.is_moving:
                # Pumping at a rate in a unit pumpctl did not choose (set at the pump's own
                # panel): reporting its number as mL/h would be a guess. The controller stops.
                raise PumpProtocolError(f"pump {self.unit} is {state.value} with its rate "
                                        f"in another unit or mode: {self._unselected(values)}")
            rate = 0.0  # stopped before any selection: moot (and a NaN cannot be journaled)
        infused = float(values[ops.counters.infused]) - self._zero[0]
        withdrawn = 0.0 if ops.counters.withdrawn is None else \
            float(values[ops.counters.withdrawn]) - self._zero[1]
        return PumpStatus(state=state, rate_ml_h=rate, infused_ml=infused,
                          withdrawn_ml=withdrawn, alarm=self.alarm,
                          direction=self._direction_in(values))

    # Queries of single settings, for the bench CLI (`pumpctl pump`): None where the map has
    # no such register.

    async def rate(self) -> float | None:
        """The set rate, mL/h (None while the map's unit/mode selection does not hold)."""
        op = self.map.operations.rate
        names = [op.readback_register, *(w.register for w in op.select
                                         if self.map.register(w.register).readable)]
        return self._rate_in(await self._read(names))

    async def volume_limit(self) -> float | None:
        op = self.map.operations.volume_target
        return None if op is None else float(await self._one(op.readback_register))

    async def diameter(self) -> float | None:
        op = self.map.operations.diameter
        return None if op is None else float(await self._one(op.readback_register))

    async def direction(self) -> Direction | None:
        op = self.map.operations.direction
        if op is None:
            return Direction.INFUSE
        return self._direction_in(await self._read((op.register,)))

    async def dispensed(self) -> tuple[float, float]:
        """Infused and withdrawn mL since the counters were last cleared."""
        status = await self.status()
        return status.infused_ml, status.withdrawn_ml

    async def watchdog(self) -> int | None:
        op = self.map.operations.watchdog
        return None if op is None else int(await self._one(op.register))

    async def _one(self, name: str) -> Value:
        return (await self._read((name,)))[name]

    async def rate_actual(self) -> float | None:
        """The rate the pump reports it is pumping at (mL/h), where the map has one."""
        name = self.map.operations.rate_actual
        if name is None:
            return None
        return float((await self._read((name,)))[name]) * self._rate_factor

    # ---- settings -----------------------------------------------------------------------------

    async def _select(self) -> None:
        """The writes that put the rate register in the map's unit and mode (e.g. ISCO: flow
        unit mL/h, constant flow; Vindum: rate unit mL/h, independent mode)."""
        for write in self.map.operations.rate.select:
            await self._action(write)
        self._selected = True

    async def prepare(self, outline: RunOutline) -> Mapping[str, object]:
        """Check every rate of the run against the map, then select the rate unit and mode."""
        problem = self.capabilities.rates.problem(outline.rates_ml_h)
        if problem is not None:
            raise PumpOutOfRange(problem)
        reg = self.map.register(self.map.operations.rate.register)
        top = self.map.pump.max_rate_ml_h
        for rate in outline.rates_ml_h:
            if top is not None and rate > top:
                raise PumpOutOfRange(f"rate {rate:g} mL/h is above the pump's maximum "
                                     f"{top:g} mL/h ({self.map.name} map)")
            self._check_value(reg, rate / self._rate_factor)
        self._refuse_in_alarm("prepare")
        await self._select()
        return {"rate_unit": self.map.operations.rate.unit, "map": self.map.name,
                "word_order": self.map.word_order.value}

    async def set_diameter(self, mm: float) -> float:
        """Set the syringe diameter where the map has a register for it. A pump with a fixed
        cylinder (Vindum, ISCO) has none: `mm` is returned unchanged and nothing is sent."""
        op = self.map.operations.diameter
        if op is None:
            return mm
        self._refuse_in_alarm("setting the diameter")
        return float(await self._set(op.register, mm, readback=op.readback, what="diameter"))

    async def set_rate(self, ml_h: float) -> float:
        if not (math.isfinite(ml_h) and ml_h >= 0):
            raise PumpOutOfRange(f"rate {ml_h} mL/h must be a number >= 0")
        self._refuse_in_alarm("setting the rate")
        if not self._selected:
            await self._select()
        op = self.map.operations.rate
        read = await self._set(op.register, ml_h / self._rate_factor, readback=op.readback,
                               what="rate")
        return float(read) * self._rate_factor

    async def set_volume_limit(self, ml: float) -> float:
        op = self.map.operations.volume_target
        if op is None:
            raise PumpNotApplicable(f"the {self.map.name} map has no volume target: the "
                                    "controller stops this pump at the planned total itself")
        if not (math.isfinite(ml) and ml >= 0):
            raise PumpOutOfRange(f"volume {ml} mL must be a number >= 0")
        self._refuse_in_alarm("setting the volume")
        read = float(await self._set(op.register, ml, readback=op.readback, what="volume"))
        self._target_ml = read
        return read

    async def set_direction(self, direction: Direction) -> Direction:
        op = self.map.operations.direction
        if op is None:
            if direction is Direction.INFUSE:
                return direction  # the only way this pump moves
            raise PumpNotApplicable(f"the {self.map.name} map cannot withdraw")
        self._refuse_in_alarm("setting the direction")
        before = (await self._read((op.register,)))[op.register]
        value = op.infuse if direction is Direction.INFUSE else op.withdraw
        await self._set(op.register, value, what="direction")
        busy = self.map.busy_after_direction_change_s
        if busy and before != value:
            # Vindum: after a change between delivering and refilling the pump needs tens of
            # seconds; a start sent meanwhile can drop the link. The next run waits it out.
            self._busy_until = self.link.clock.monotonic() + busy
        return direction

    # ---- motion -------------------------------------------------------------------------------

    async def run(self) -> None:
        self._refuse_in_alarm("run")
        wait = self._busy_until - self.link.clock.monotonic()
        if wait > 0:
            await self.link.clock.sleep(wait)
        ops = self.map.operations
        write = ops.run_with_target if ops.run_with_target is not None and self._target_ml > 0 \
            else ops.run
        await self._send(write.register, write.value)
        self._acknowledged = None  # a cause that is still there shows again now
        status = await self.status()
        if status.state is PumpState.ALARM and self.alarm is not None:
            raise PumpAlarmError(self.alarm, f"pump {self.unit} went into alarm "
                                 f"({self.alarm.kind.value}) instead of starting")
        if not status.state.is_moving:
            raise PumpProtocolError(f"pump {self.unit} did not start: state "
                                    f"{status.state.value} after {write.register} = "
                                    f"{write.value:g}")

    async def pause(self) -> None:
        op = self.map.operations.pause
        if op is None:
            raise PumpNotApplicable(f"the {self.map.name} map has no pause")
        await self._send(op.register, op.value)
        if (await self.status()).state.is_moving:
            raise PumpProtocolError(f"pump {self.unit} still moving after pause")

    async def stop(self) -> None:
        """Stop whatever the state (allowed in alarm); repeated when a reply is lost, since a
        stop is always safe to send again."""
        last: PumpError | None = None
        stop = self.map.operations.stop
        for _ in range(3):
            try:
                await self._send(stop.register, stop.value)
                if not self._state_in(await self._read(self._status_names)).is_moving:
                    return
            except _LOST as exc:
                last = exc
        raise PumpProtocolError(f"pump {self.unit} did not confirm stopped after "
                                f"{stop.register} = {stop.value:g}"
                                + (f" ({last})" if last else ""))

    async def clear_counters(self) -> None:
        self._refuse_in_alarm("clearing the counters")
        ops = self.map.operations
        names = tuple(n for n in (ops.counters.infused, ops.counters.withdrawn) if n)
        if ops.clear_counters is None:
            values = await self._read(names)
            self._zero = (float(values[names[0]]),
                          float(values[names[1]]) if len(names) > 1 else 0.0)
            return
        await self._action(ops.clear_counters)
        self._zero = (0.0, 0.0)
        values = await self._read(names)
        if any(abs(float(v)) > codec.step(self.map.register(n), 1.0) for n, v in values.items()):
            raise ReadbackMismatch("counters", "0 mL", ", ".join(f"{n} {v:g}"
                                                                 for n, v in values.items()))

    async def acknowledge_alarm(self) -> None:
        """Clear the alarm at the pump (where the map can) and here; if its cause is still
        there, the pump is still in alarm and this says so. A map without `acknowledge`
        (ISCO) keeps its alarm bits until the pump's next run: the alarm acknowledged here is
        not taken as new until then, and if it is still there when the pump starts, the run
        fails with it."""
        op = self.map.operations.acknowledge
        if op is not None:
            await self._action(op)
        self.alarm = None
        self.alarm_at_open = None
        values = await self._read(self._status_names)
        still = self._alarm_in(values)
        if still is not None and op is None:
            self._acknowledged = still
            return
        if still is not None:
            self.alarm = still
            raise PumpAlarmError(still, f"pump {self.unit} is still in alarm after acknowledge: "
                                 f"{still.code} {still.message}".rstrip())

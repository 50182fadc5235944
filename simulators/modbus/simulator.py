"""Simulated Modbus pumps serving any register map: the Modbus protocol engine.

`ModbusSimulator` is a `simulators.line.SimLine`: its pumps are protocol-free
`SimulatedPump`s (the physics, faults and alarms of the New Era simulator), one per unit id,
each behind a `ModbusUnit` that serves the map. It frames what clients send as the map's
line does, or as told:
- `framer="socket"` (Modbus TCP, MBAP): each connection is its own conversation, with its own
  framer, and the reply goes back to the connection that asked;
- `framer="rtu"`: one framer for the line, whoever sent the bytes, frames delimited by
  silence (t3.5 at the line's baud), and every client hears every reply, as on a serial line
  (also what a serial device server passes through as RTU over TCP).

Unit id 0 on RTU is a broadcast: writes are carried out by every unit, and nobody answers. A
request for a unit id nobody answers at gets silence (what a scan relies on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pumpctl.clock import Clock
from pumpctl.drivers.modbus.pumpmap import PumpMap, WordOrder
from simulators.line import SimLine
from simulators.modbus.faults import AnyFault, ModbusFault
from simulators.modbus.unit import ModbusUnit
from simulators.modbus.wire import (
    MbapFramer,
    Request,
    RtuFramer,
    frame_reply,
    reframe,
    silence_s,
)
from simulators.physics import RateLimits
from simulators.pump import PumpSetup, SimulatedPump

Framer = Literal["socket", "rtu"]
MAX_UNIT = 247


@dataclass
class UnitConfig:
    """One simulated pump: its unit id and the pump as it comes out of the box."""

    unit_id: int = 1
    setup: PumpSetup = field(default_factory=PumpSetup)


def map_rate_limits(pump_map: PumpMap) -> RateLimits:
    """The pump's rate range: the map's own figures where it gives them, else a syringe
    pump's (the project's syringe-pump profile, from the diameter), from 0 (a Modbus rate
    register takes 0)."""
    facts = pump_map.pump
    if facts.max_rate_ml_h is not None:
        low, high = facts.min_rate_ml_h or 0.0, facts.max_rate_ml_h
        return lambda _diameter_mm: (low, high)
    from simulators.newera.simulator import profile_rate_limits

    syringe = profile_rate_limits()
    return lambda diameter_mm: (facts.min_rate_ml_h or 0.0, syringe(diameter_mm)[1])


class ModbusSimulator(SimLine):
    """Simulated pumps serving `pump_map` at unit ids (`units`: a count from the map's unit
    id, or explicit configs). `word_order` overrides the map's; `framer` its line's."""

    def __init__(self, clock: Clock, pump_map: PumpMap,
                 units: int | Sequence[UnitConfig] = 1, *, framer: Framer | None = None,
                 word_order: WordOrder | None = None, baud: int | None = None,
                 rate_limits: RateLimits | None = None) -> None:
        first = pump_map.line.unit or 1
        configs = ([UnitConfig(first + i) for i in range(units)] if isinstance(units, int)
                   else list(units))
        ids = [c.unit_id for c in configs]
        if not configs:
            raise ValueError("a simulator needs at least one pump")
        if len(set(ids)) != len(ids) or not all(1 <= i <= MAX_UNIT for i in ids):
            raise ValueError(f"unit ids {ids}: each 1-{MAX_UNIT}, no two alike")
        if word_order is not None:
            pump_map = pump_map.with_word_order(WordOrder(word_order))
        self.map = pump_map
        self.framer: Framer = framer or pump_map.line.framer
        limits = rate_limits if rate_limits is not None else map_rate_limits(pump_map)
        super().__init__(clock, [SimulatedPump(clock, c.setup, rate_limits=limits)
                                 for c in configs], baud=baud, name=f"modbus-sim-{pump_map.name}")
        self.units = {c.unit_id: ModbusUnit(c.unit_id, pump, pump_map, time_base=self._time_base)
                      for c, pump in zip(configs, self.pumps, strict=True)}
        self.first_unit = ids[0]  # where a fault without `pump=` goes
        self._rtu = RtuFramer(silence_s(baud)) if self.framer == "rtu" else None
        self._mbap: dict[int, MbapFramer] = {}

    @property
    def default_address(self) -> int:  # type: ignore[override]
        """The first unit id (the base class's name for where a fault goes by default)."""
        return self.first_unit

    @property
    def rtu(self) -> bool:
        return self._rtu is not None

    def use_framer(self, framer: Framer) -> None:
        """Frame as `framer` from now on (a pty carries RTU, a TCP port MBAP or RTU): for a
        simulator built before it is known how it will be served. Framing state is reset."""
        self.framer = framer
        self._rtu = RtuFramer(silence_s(self.baud)) if framer == "rtu" else None
        self._mbap.clear()

    def unit(self, unit_id: int) -> ModbusUnit:
        try:
            return self.units[unit_id]
        except KeyError:
            raise KeyError(f"no simulated pump at unit id {unit_id}") from None

    def pump(self, address: int) -> SimulatedPump:
        """The protocol-free pump behind unit id `address`."""
        return self.unit(address).pump

    def inject(self, fault: AnyFault) -> None:
        """A fault of either family, for the unit its `pump=` names (default: the first)."""
        address = fault.pump_address
        unit = self.unit(self.first_unit if address is None else address)
        if isinstance(fault, ModbusFault):
            unit.inject(fault)
        else:
            unit.pump.inject(fault)

    # ---- bytes in --------------------------------------------------------------------------

    def disconnect(self, token: int) -> None:
        self._mbap.pop(token, None)
        super().disconnect(token)

    def handle(self, token: int, data: bytes, now: float) -> None:
        if self._rtu is not None:
            requests = self._rtu.feed(data, now - self._wire_time(len(data)), now)
        else:
            framer = self._mbap.get(token)
            if framer is None:
                framer = self._mbap[token] = MbapFramer()
            requests = framer.feed(data)
        for request in requests:
            self._dispatch(request, token, now)

    def _dispatch(self, request: Request, token: int, now: float) -> None:
        if request.unit == 0 and self.rtu:
            for unit in self.units.values():
                unit.answer(request, now)  # a broadcast: carried out, never answered
            return
        addressed = self.units.get(request.unit)
        if addressed is None:
            return
        reply = addressed.answer(request, now)
        if reply is None:
            return
        self._send_reply(addressed, frame_reply(request, reply), None if self.rtu else token)

    # ---- bytes out -------------------------------------------------------------------------

    def _send_reply(self, unit: ModbusUnit, frame: bytes, to: int | None) -> None:
        fault = unit.pump.wire.take_reply_fault()
        delay = 0.0
        if fault is not None:
            if fault.drop:
                return
            if fault.corrupt is not None:
                index, mask = fault.corrupt
                damaged = bytearray(frame)
                damaged[min(index, len(frame) - 1)] ^= mask
                frame = bytes(damaged)
            delay = fault.delay_s
        if unit.take_glue():
            other = unit.unit_id % MAX_UNIT + 1
            frame += reframe(frame, unit=other, rtu=self.rtu)
        if unit.take_split():
            half = len(frame) // 2
            self.send(frame[:half], delay=delay, to=to)
            self.send(frame[half:], delay=delay + unit.split_gap_s, to=to)
            return
        self.send(frame, delay=delay, to=to)

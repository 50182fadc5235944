"""Reading several registers of a map in as few requests as the map allows.

A status poll needs the state, the counters, the set rate and the alarm registers: one
request each would be four to eight round trips per poll, each costing a frame time on a
serial line. Registers of one kind that lie close together are read in one request when
every address between them is one the pump answers (inside a register or a documented
`block` of the map: Vindum answers its gaps with 0, so the field IOC reads HR 0-45 at once);
elsewhere they are read apart, because a pump answers an undocumented address with
exception 2. The plan is made once per set of registers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pumpctl.drivers.modbus import codec
from pumpctl.drivers.modbus.link import MAX_READ, ModbusLink
from pumpctl.drivers.modbus.pumpmap import PumpMap, Register, RegisterKind


@dataclass(frozen=True)
class _Span:
    kind: RegisterKind
    start: int
    count: int
    registers: tuple[Register, ...]


class RegisterReader:
    """Reads named registers of one map for one unit, merging requests (see module doc)."""

    def __init__(self, link: ModbusLink, unit: int, pump_map: PumpMap) -> None:
        self.link = link
        self.unit = unit
        self.map = pump_map
        self._plans: dict[frozenset[str], tuple[_Span, ...]] = {}

    def plan(self, names: Iterable[str]) -> tuple[_Span, ...]:
        key = frozenset(names)
        cached = self._plans.get(key)
        if cached is not None:
            return cached
        regs = sorted((self.map.register(n) for n in key), key=lambda r: (r.kind, r.address))
        spans: list[_Span] = []
        for reg in regs:
            last = spans[-1] if spans else None
            if last is not None and last.kind is reg.kind and self._joinable(last, reg):
                end = max(last.start + last.count, reg.span.stop)
                spans[-1] = _Span(reg.kind, last.start, end - last.start,
                                  (*last.registers, reg))
            else:
                spans.append(_Span(reg.kind, reg.address, len(reg.span), (reg,)))
        plan = tuple(spans)
        self._plans[key] = plan
        return plan

    def _joinable(self, span: _Span, reg: Register) -> bool:
        end = span.start + span.count
        if reg.span.stop - span.start > MAX_READ[reg.kind]:
            return False
        return all(self.map.readable(reg.kind, a) for a in range(end, reg.address))

    async def read(self, names: Iterable[str]) -> dict[str, float | int | bool]:
        """The engineering values of the named registers."""
        values: dict[str, float | int | bool] = {}
        order = self.map.word_order
        for span in self.plan(names):
            words = await self.link.read(self.unit, span.kind, span.start, span.count)
            for reg in span.registers:
                offset = reg.address - span.start
                values[reg.name] = codec.decode(reg, words[offset:offset + len(reg.span)],
                                                order)
        return values

    async def one(self, name: str) -> float | int | bool:
        return (await self.read((name,)))[name]

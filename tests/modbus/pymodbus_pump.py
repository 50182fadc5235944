"""A minimal generic-map pump served by pymodbus's own TCP server (not the project's simulator).

The driver is tested against a Modbus server it shares no code with: pymodbus's
`ModbusTcpServer` with a `SimDevice` datastore holds the registers, and a small model behind
its `action` hook gives them the generic map's meaning (docs/modbus.md): FLOAT32 values,
commands in HR 8, state and counters in the input registers, exception 3 for a refused value
and exception 2 (from the datastore itself) outside the map. Floats are packed here with
`struct`, not with the codec under test.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

MAX_RATE_ML_H = 1000.0


def words(value: float, order: str) -> list[int]:
    raw = struct.pack(">f", value)
    hi, lo = int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")
    return [hi, lo] if order == "big" else [lo, hi]


def value_of(pair: list[int], order: str) -> float:
    hi, lo = (pair[0], pair[1]) if order == "big" else (pair[1], pair[0])
    return float(struct.unpack(">f", hi.to_bytes(2, "big") + lo.to_bytes(2, "big"))[0])


@dataclass
class GenericPump:
    """The generic map's pump, as plain numbers."""

    order: str = "big"
    diameter: float = 26.7
    rate: float = 0.0
    volume: float = 0.0
    direction: int = 0
    watchdog: int = 0
    state: int = 0
    alarm: int = 0
    infused: float = 0.0
    withdrawn: float = 0.0
    rate_quantum: float | None = None  # a pump that rounds rates (read-back mismatch)
    writes: list[tuple[int, list[int]]] = field(default_factory=list)

    def holding(self) -> list[int]:
        o = self.order
        return [*words(self.diameter, o), *words(self.rate, o), *words(self.volume, o),
                self.direction, self.watchdog, 0]

    def inputs(self) -> list[int]:
        o = self.order
        actual = self.rate if self.state in (1, 2) else 0.0
        return [self.state, self.alarm, *words(actual, o), *words(self.infused, o),
                *words(self.withdrawn, o), *words(0.0, o), 0x5043, 102]

    def write(self, address: int, values: list[int]) -> ExcCodes | None:
        self.writes.append((address, list(values)))
        regs = self.holding()
        regs[address:address + len(values)] = values
        o = self.order
        diameter, rate, volume = (value_of(regs[i:i + 2], o) for i in (0, 2, 4))
        if not 0.1 <= diameter <= 80 or not 0 <= rate <= MAX_RATE_ML_H or volume < 0 \
                or not math.isfinite(rate) or regs[6] not in (0, 1):
            return ExcCodes.ILLEGAL_VALUE
        command = regs[8] if address <= 8 < address + len(values) else 0
        if command not in (0, 1, 2, 3, 4):
            return ExcCodes.ILLEGAL_VALUE
        if command == 1 and self.alarm:
            return ExcCodes.ILLEGAL_VALUE  # an alarm must be acknowledged first
        if self.rate_quantum:
            rate = round(rate / self.rate_quantum) * self.rate_quantum
        self.diameter, self.rate, self.volume = diameter, rate, volume
        self.direction, self.watchdog = regs[6], regs[7]
        if command == 1:
            self.state = 2 if self.direction else 1
        elif command == 2:
            self.state = 0
        elif command == 3:
            self.infused = self.withdrawn = 0.0
        elif command == 4:
            self.alarm = 0
            self.state = 0 if self.state == 4 else self.state
        return None

    async def action(self, function_code: int, start: int, address: int, count: int,
                     registers: list[int], values: list[int] | list[bool] | None,
                     ) -> ExcCodes | None:
        """pymodbus's hook: reads see the model, writes change it (or are refused)."""
        if function_code in (6, 16) and values is not None:
            return self.write(address, [int(v) for v in values])
        if function_code == 3:
            registers[:9] = self.holding()
        elif function_code == 4:
            registers[:12] = self.inputs()
        return None


@dataclass
class Served:
    pump: GenericPump
    port: int
    scheme: str = "modbus+tcp"

    def url(self, query: str = "") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}?map=generic&timeout=0.5" + \
            (f"&{query}" if query else "")


def _blocks() -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
    return ([SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=9, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=12, values=0, datatype=DataType.REGISTERS)])


@contextlib.asynccontextmanager
async def serve_generic(order: str = "big", units: tuple[int, ...] = (1,), *,
                        rtu: bool = False) -> AsyncIterator[Served]:
    """pymodbus's TCP server on 127.0.0.1 (a free port) with the generic pump at `units`
    (`rtu`: RTU frames over TCP, as a serial device server passes them). Requests to other
    unit ids get no reply, as on a serial line (pymodbus itself would answer them with an
    exception)."""
    pump = GenericPump(order=order)
    devices = [SimDevice(unit, simdata=_blocks(), action=pump.action) for unit in units]

    unit_at = 0 if rtu else 6  # the unit id's byte: RTU's first, after MBAP's header

    def silent_for_others(sending: bool, packet: bytes) -> bytes:
        if sending and len(packet) > unit_at and packet[unit_at] not in units:
            return b""
        return packet

    server = ModbusTcpServer(devices, address=("127.0.0.1", 0),
                             framer=FramerType.RTU if rtu else FramerType.SOCKET,
                             trace_packet=silent_for_others)
    await server.serve_forever(background=True)
    assert server.transport is not None
    port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield Served(pump, port, "modbus+rtu+tcp" if rtu else "modbus+tcp")
    finally:
        await server.shutdown()

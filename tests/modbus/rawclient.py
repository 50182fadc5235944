"""A Modbus client made of bytes, for testing the simulator against the standard itself.

Frames are built here by hand (struct, a bit-by-bit CRC-16/MODBUS), not with pymodbus, which
the simulator uses: a mistake shared by both would otherwise pass unseen.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pumpctl.clock import LoopClock
from pumpctl.drivers.modbus.pumpmap import load_map
from simulators.modbus import ModbusSimulator
from simulators.modbus.faults import parse_modbus_fault
from simulators.serve import memory_link


def crc16(data: bytes) -> bytes:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), low byte first on the wire."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def rtu(unit: int, pdu: bytes) -> bytes:
    body = bytes([unit]) + pdu
    return body + crc16(body)


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def read(fc: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", fc, address, count)


def write_coil(address: int, on: bool) -> bytes:
    return struct.pack(">BHH", 5, address, 0xFF00 if on else 0)


def write_register(address: int, value: int) -> bytes:
    return struct.pack(">BHH", 6, address, value)


def write_registers(address: int, words: Sequence[int]) -> bytes:
    return struct.pack(">BHHB", 16, address, len(words), 2 * len(words)) + \
        b"".join(struct.pack(">H", w) for w in words)


def f32_words(value: float, order: str = "big") -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo] if order == "big" else [lo, hi]


def words_f32(words: Sequence[int], order: str = "big") -> float:
    hi, lo = (words[0], words[1]) if order == "big" else (words[1], words[0])
    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


def registers_of(reply_pdu: bytes) -> list[int]:
    """The words of an FC 3/4 reply PDU."""
    assert reply_pdu[0] in (3, 4), reply_pdu.hex()
    count = reply_pdu[1] // 2
    return list(struct.unpack(f">{count}H", reply_pdu[2:2 + 2 * count]))


def bits_of(reply_pdu: bytes, count: int) -> list[int]:
    assert reply_pdu[0] in (1, 2), reply_pdu.hex()
    data = reply_pdu[2:2 + reply_pdu[1]]
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]


def exception_of(reply_pdu: bytes) -> int | None:
    """The exception code of a reply PDU, or None for a normal reply."""
    return reply_pdu[1] if reply_pdu[0] & 0x80 else None


@dataclass
class Client:
    """One connection to a simulator, in memory. `ask` sends one request and returns the
    reply PDU (None: no reply within `timeout_s`)."""

    sim: ModbusSimulator
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    unit: int = 1
    tid: int = 0

    @property
    def is_rtu(self) -> bool:
        return self.sim.rtu

    def frame(self, pdu: bytes, unit: int | None = None) -> bytes:
        unit = self.unit if unit is None else unit
        if self.is_rtu:
            return rtu(unit, pdu)
        self.tid = (self.tid + 1) & 0xFFFF
        return mbap(self.tid, unit, pdu)

    async def ask(self, pdu: bytes, *, unit: int | None = None,
                  timeout_s: float = 1.0) -> bytes | None:
        self.writer.write(self.frame(pdu, unit))
        return await self.reply(timeout_s=timeout_s)

    async def reply(self, *, timeout_s: float = 1.0) -> bytes | None:
        """The next reply's PDU, checked for its framing (CRC, or MBAP header and tid)."""
        try:
            async with asyncio.timeout(timeout_s):
                if self.is_rtu:
                    return await self._rtu_reply()
                head = await self.reader.readexactly(7)
                tid, protocol, length, _unit = struct.unpack(">HHHB", head)
                assert protocol == 0 and tid == self.tid, head.hex()
                return await self.reader.readexactly(length - 1)
        except TimeoutError:
            return None

    async def _rtu_reply(self) -> bytes:
        head = await self.reader.readexactly(2)
        fc = head[1]
        if fc & 0x80:
            rest = await self.reader.readexactly(3)
        elif fc in (1, 2, 3, 4, 17):
            count = await self.reader.readexactly(1)
            rest = count + await self.reader.readexactly(count[0] + 2)
        else:
            rest = await self.reader.readexactly(6)
        frame = head + rest
        assert crc16(frame[:-2]) == frame[-2:], f"bad CRC in {frame.hex()}"
        return frame[1:-2]

    async def read_words(self, fc: int, address: int, count: int) -> list[int]:
        reply = await self.ask(read(fc, address, count))
        assert reply is not None and exception_of(reply) is None, reply
        return registers_of(reply)

    async def read_f32(self, fc: int, address: int, order: str = "big") -> float:
        return words_f32(await self.read_words(fc, address, 2), order)

    async def read_bits(self, fc: int, address: int, count: int = 1) -> list[int]:
        reply = await self.ask(read(fc, address, count))
        assert reply is not None and exception_of(reply) is None, reply
        return bits_of(reply, count)

    async def write_f32(self, address: int, value: float, order: str = "big") -> bytes | None:
        return await self.ask(write_registers(address, f32_words(value, order)))


@asynccontextmanager
async def client_of(map_name: str, *, framer: str | None = None, faults: Sequence[str] = (),
                    word_order: str | None = None, baud: int | None = None,
                    units: int = 1) -> AsyncIterator[Client]:
    """A started simulator of `map_name` and a client connected to it in memory."""
    from pumpctl.drivers.modbus.pumpmap import WordOrder

    sim = ModbusSimulator(LoopClock(), load_map(map_name), units,
                          framer="rtu" if framer == "rtu" else
                          "socket" if framer == "socket" else None,
                          word_order=WordOrder(word_order) if word_order else None, baud=baud)
    async with sim:
        for text in faults:
            sim.inject(parse_modbus_fault(text))
        reader, writer = memory_link(sim)
        try:
            yield Client(sim, reader, writer, unit=sim.first_unit)
        finally:
            writer.close()

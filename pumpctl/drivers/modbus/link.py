"""One Modbus connection (RTU or TCP framing) shared by the pumps on it: one request in flight.

This is a small asyncio client protocol rather than pymodbus's own client, for three reasons:
- it runs over ANY asyncio transport: a serial port or pty opened exclusively by
  `pumpctl.drivers.open.connect_transport`, a TCP socket (`socket://`), an RTU device server,
  or the simulator's in-memory transport, so the same driver runs on hardware, over TCP, over
  a pty and in virtual time (pymodbus's clients open their own connections);
- its timeout and retries are the URL's, and a timeout is a loop timer, so it passes in
  virtual time, and over a real descriptor it tells a `VirtualTimeLoop` that a reply is on
  its way (`expect_reply`), as the New Era bus does;
- each failure becomes the project's own error at once: an exception reply names the
  function, address and code, a bad CRC is a `PumpChecksumError`, silence a `PumpTimeout`.

The bytes themselves are pymodbus's: its framers (`FramerSocket` MBAP, `FramerRTU` with CRC)
build and split frames, and its PDU classes encode requests and decode replies, so what goes
on the wire is what the library (and any third-party client) speaks.

Requests are serialised with a lock: RTU has no transaction ids, and a Modbus server answers
one request at a time anyway. A reply is taken only if it matches the request in flight (unit
id, function code, transaction id over TCP, and for reads the number of values; for writes
the echoed address): a reply that arrives after its request timed out is dropped, not taken
as the answer to the next one. A unit that did not answer holds the line for one timeout at a
time: its next request first waits, off the line, up to one more timeout for the reply it
still owes, so requests to the other units on the line go on meanwhile (as the New Era bus
does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pymodbus.framer.rtu import FramerRTU
from pymodbus.framer.socket import FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from pumpctl.clock import Clock, LoopClock, VirtualTimeLoop
from pumpctl.drivers.base import PumpChecksumError, PumpError, PumpProtocolError, PumpTimeout
from pumpctl.drivers.modbus.pumpmap import RegisterKind

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 0.5
Framer = Literal["socket", "rtu"]

FUNCTIONS = {1: "read coils", 2: "read discrete inputs", 3: "read holding registers",
             4: "read input registers", 5: "write single coil", 6: "write single register",
             15: "write multiple coils", 16: "write multiple registers"}
EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
              4: "server device failure", 5: "acknowledge", 6: "server device busy",
              10: "gateway path unavailable", 11: "gateway target did not respond"}
_READS: dict[RegisterKind, type[ModbusPDU]] = {
    RegisterKind.COIL: ReadCoilsRequest, RegisterKind.DISCRETE: ReadDiscreteInputsRequest,
    RegisterKind.HOLDING: ReadHoldingRegistersRequest,
    RegisterKind.INPUT: ReadInputRegistersRequest}
MAX_READ = {RegisterKind.COIL: 2000, RegisterKind.DISCRETE: 2000, RegisterKind.HOLDING: 125,
            RegisterKind.INPUT: 125}
_MAX_BUFFER = 1024  # bytes that never make a frame are garbage, not a frame still arriving
_RETRYABLE = (PumpTimeout, PumpChecksumError)


class ModbusExceptionReply(PumpProtocolError):
    """The pump answered with a Modbus exception (the driver turns the map's refused-value
    code into `PumpOutOfRange`)."""

    def __init__(self, unit: int, function: int, address: int, code: int) -> None:
        self.unit, self.function, self.address, self.code = unit, function, address, code
        what = FUNCTIONS.get(function, "function")
        super().__init__(f"unit {unit} answered {what} (FC {function}) at address {address} "
                         f"with exception {code} ({EXCEPTIONS.get(code, 'unknown code')})")


class _Garbled(PumpProtocolError):
    """Bytes that are not a reply (retried like a timeout)."""


@dataclass
class _InFlight:
    unit: int
    tid: int
    request: ModbusPDU
    future: asyncio.Future[ModbusPDU]
    misfit: str | None = None  # the last reply from this unit that did not answer it

    def describe(self) -> str:
        fc = self.request.function_code
        return f"{FUNCTIONS.get(fc, f'FC {fc}')} at {self.request.address} from unit {self.unit}"


@dataclass
class _Owed:
    """A reply a unit still owes to a request we stopped waiting for."""

    until: float  # loop time after which it is no longer expected
    arrived: asyncio.Event


def _expire(future: asyncio.Future[ModbusPDU]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class ModbusLink(asyncio.Protocol):
    """Modbus requests and replies on one transport (see the module docstring)."""

    def __init__(self, framer: Framer, *, clock: Clock | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = 1) -> None:
        self.framer_name: Framer = framer
        self._framer = (FramerRTU if framer == "rtu" else FramerSocket)(DecodePDU(False))
        self.clock: Clock = clock or LoopClock()
        self.timeout_s = timeout_s
        self.retries = retries
        self._transport: asyncio.BaseTransport | None = None
        self._buffer = bytearray()
        self._lock = asyncio.Lock()
        self._flight: _InFlight | None = None
        self._tid = 0
        self._lost: str | None = None
        self._owed: dict[int, _Owed] = {}
        self.closed_event = asyncio.Event()
        self.last_sent_at: dict[int, float] = {}  # unit -> clock time (heartbeats read it)
        self.requests = 0
        self.retried = 0  # reads repeated because a reply was lost, late or corrupt
        self.stale = 0  # replies that answered nothing in flight (late or misdirected)
        self.garbled = 0

    # ---- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def attach(self, transport: asyncio.BaseTransport) -> None:
        """The transport, for a protocol connected before it knew it (memory transports)."""
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = f"connection lost: {exc}" if exc else "connection closed by the other end"
        self.closed_event.set()
        flight = self._flight
        if flight is not None and not flight.future.done():
            flight.future.set_exception(PumpProtocolError(
                f"{self._lost} while waiting for {flight.describe()}"))

    async def close(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.closed_event.wait()

    # ---- receiving ----------------------------------------------------------------------------

    def _parse(self) -> None:
        while self._buffer:
            used, unit, tid, payload = self._framer.decode(bytes(self._buffer))
            if not used:
                if self._hopeless():
                    self._fail(_Garbled(f"bytes that make no Modbus frame: "
                                        f"{bytes(self._buffer[:16]).hex(' ')}"))
                    self._buffer.clear()
                return
            raw = bytes(self._buffer[:used])
            del self._buffer[:used]
            if not payload:  # the RTU framer drops a frame whose CRC does not match
                self._fail(PumpChecksumError(f"reply with a bad CRC: {raw[:16].hex(' ')}"))
                continue
            pdu = self._framer.decoder.decode(payload)
            if pdu is None:
                self._fail(_Garbled(f"reply that is no Modbus PDU: {payload[:16].hex(' ')}"))
                continue
            pdu.dev_id, pdu.transaction_id = unit, tid
            self._deliver(pdu)

    def _hopeless(self) -> bool:
        """Bytes the framer waits on that can never complete a frame."""
        if len(self._buffer) > _MAX_BUFFER:
            return True
        # MBAP: a protocol id other than 0 is never Modbus (pymodbus would wait forever).
        return self.framer_name == "socket" and len(self._buffer) >= 4 \
            and self._buffer[2:4] != b"\0\0"

    def _fail(self, error: PumpError) -> None:
        flight = self._flight
        self.garbled += 1
        if flight is not None and not flight.future.done():
            flight.future.set_exception(error)
        else:
            log.debug("garbled bytes with no request waiting: %s", error)

    def _deliver(self, pdu: ModbusPDU) -> None:
        owed = self._owed.get(pdu.dev_id)
        if owed is not None:
            owed.arrived.set()  # whatever this reply answers, that unit is talking again
        flight = self._flight
        if flight is None or flight.future.done() or pdu.dev_id != flight.unit or (
                self.framer_name == "socket" and pdu.transaction_id != flight.tid):
            self.stale += 1
            log.debug("dropped a reply nobody was waiting for: %s", pdu)
            return
        request = flight.request
        if pdu.isError() and pdu.function_code & 0x7F == request.function_code:
            flight.future.set_result(pdu)
            return
        problem = self._mismatch(request, pdu)
        if problem is None:
            flight.future.set_result(pdu)
            return
        flight.misfit = problem  # a late answer to an earlier request: keep waiting
        self.stale += 1
        log.debug("reply %s does not answer %s: %s", pdu, flight.describe(), problem)

    @staticmethod
    def _mismatch(request: ModbusPDU, reply: ModbusPDU) -> str | None:
        fc = request.function_code
        if reply.function_code != fc:
            return f"function code {reply.function_code} instead of {fc}"
        if fc in (3, 4) and len(reply.registers) != request.count:
            return f"{len(reply.registers)} registers instead of {request.count}"
        if fc in (1, 2) and len(reply.bits) < request.count:
            return f"{len(reply.bits)} bits instead of {request.count}"
        if fc in (5, 6, 16) and reply.address != request.address:
            return f"an echo of address {reply.address} instead of {request.address}"
        if fc == 6 and list(reply.registers) != list(request.registers):
            return f"an echo of {list(reply.registers)} instead of {list(request.registers)}"
        if fc == 5 and list(reply.bits[:1]) != list(request.bits[:1]):
            return f"an echo of {reply.bits[:1]} instead of {request.bits[:1]}"
        if fc == 16 and reply.count != request.count:
            return f"an echo of {reply.count} registers instead of {request.count}"
        return None

    # ---- requests -----------------------------------------------------------------------------

    async def request(self, unit: int, pdu: ModbusPDU, *,
                      timeout_s: float | None = None) -> ModbusPDU:
        """Send one request and wait for its reply (no retries here); an exception reply
        raises `ModbusExceptionReply`."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        await self._wait_owed(unit)
        async with self._lock:
            if self._transport is None or self._lost is not None or \
                    self._transport.is_closing():
                raise PumpProtocolError(self._lost or "the Modbus connection is closed")
            self._buffer.clear()  # whatever is left is a stale reply's remains
            self._tid = self._tid % 0xFFFF + 1
            pdu.dev_id, pdu.transaction_id = unit, self._tid
            wire = self._framer.buildFrame(pdu)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[ModbusPDU] = loop.create_future()
            flight = self._flight = _InFlight(unit, self._tid, pdu, future)
            self.requests += 1
            try:
                assert isinstance(self._transport, asyncio.WriteTransport)
                self._transport.write(wire)
                self.last_sent_at[unit] = self.clock.monotonic()
                if not future.done():  # (an in-memory simulator answers inside write())
                    timer = loop.call_later(timeout, _expire, future)
                    # In virtual time, a reply crossing a real pty or socket gets real time to
                    # arrive before its deadline is reached (pumpctl.clock.VirtualTimeLoop).
                    virtual = loop if isinstance(loop, VirtualTimeLoop) else None
                    held = virtual.expect_reply(loop.time() + timeout) if virtual else None
                    try:
                        await future
                    except asyncio.CancelledError:
                        # Our caller gave up (its own deadline, a stop): the reply is still owed.
                        if future.cancelled() or not future.done():
                            self._owed[unit] = _Owed(loop.time() + timeout, asyncio.Event())
                        raise
                    except TimeoutError:
                        self._owed[unit] = _Owed(loop.time() + timeout, asyncio.Event())
                        if flight.misfit is not None:
                            raise PumpProtocolError(
                                f"no reply to {flight.describe()} within {timeout:g} s, only "
                                f"one that does not answer it ({flight.misfit})") from None
                        raise PumpTimeout(f"no reply to {flight.describe()} within "
                                          f"{timeout:g} s") from None
                    finally:
                        timer.cancel()
                        if virtual is not None and held is not None:
                            virtual.reply_settled(held)
                reply = future.result()
            finally:
                self._flight = None
        if reply.isError():
            raise ModbusExceptionReply(unit, pdu.function_code, pdu.address,
                                       reply.exception_code)
        return reply

    async def _wait_owed(self, unit: int) -> None:
        """Wait (without holding the line) for a reply `unit` still owes, at most until it is
        no longer expected."""
        owed = self._owed.get(unit)
        if owed is None:
            return
        remaining = owed.until - asyncio.get_running_loop().time()
        if remaining > 0 and not owed.arrived.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await owed.arrived.wait()
        if self._owed.get(unit) is owed:
            del self._owed[unit]

    async def read(self, unit: int, kind: RegisterKind, address: int, count: int, *,
                   timeout_s: float | None = None,
                   attempts: int | None = None) -> list[int]:
        """`count` values (words, or 0/1 for bits) from `address`; repeated on silence, a bad
        CRC or garbled bytes (a read changes nothing, so repeating it is safe)."""
        tries = 1 + self.retries if attempts is None else attempts
        last: PumpError | None = None
        for attempt in range(tries):
            if attempt:
                self.retried += 1
            try:
                reply = await self.request(unit, _READS[kind](address=address, count=count),
                                           timeout_s=timeout_s)
            except (*_RETRYABLE, _Garbled) as exc:
                last = exc
                continue
            if kind.is_bit:
                return [int(b) for b in reply.bits[:count]]
            return list(reply.registers)
        assert last is not None
        raise last

    async def write(self, unit: int, kind: RegisterKind, address: int,
                    words: Sequence[int]) -> None:
        """Write one value (sent once: the caller reads back to find out what happened). A
        coil takes FC 5, one word FC 6, two words FC 16 (one value per request, which is all
        a Vindum pump accepts)."""
        pdu: ModbusPDU
        if kind is RegisterKind.COIL:
            pdu = WriteSingleCoilRequest(address=address, bits=[bool(words[0])])
        elif len(words) == 1:
            pdu = WriteSingleRegisterRequest(address=address, registers=list(words))
        else:
            pdu = WriteMultipleRegistersRequest(address=address, registers=list(words))
        await self.request(unit, pdu)

"""One New Era serial line shared by several pumps: one request in flight, replies matched.

The bus owns the byte stream (a serial port, pty or TCP socket via pyserial-asyncio-fast, or
an in-memory pipe in tests). Incoming bytes are split into frames as they arrive, either
straight from the transport through a `LineProtocol` (what `open_line` and the embedded
simulator use: no reader task, so a reply costs no extra event-loop turn), or by a reader
task from an asyncio stream pair (`from_streams`). The one request in flight gets the frame
from its address, and anything else is either an unsolicited alarm packet (safe mode sends
one when an alarm occurs) or a stale reply that arrived after we stopped waiting for it (the
request timed out or its caller was cancelled); the next request to that pump waits for the
straggler first, so it is never taken as that request's answer.
Timeouts are loop timers, so they run in virtual time under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from pumpctl.clock import Clock, LoopClock, VirtualTimeLoop
from pumpctl.drivers.base import Alarm, PumpError, PumpProtocolError, PumpTimeout
from pumpctl.drivers.newera import codec
from pumpctl.drivers.newera.codec import Frame, Reply

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1.0


class Framing(Enum):
    """Which reply framing a request accepts."""

    BASIC = "basic"
    SAFE = "safe"
    EITHER = "either"  # mode probes and SAF commands, whose reply framing depends on the pump


@dataclass
class _InFlight:
    address: int
    request: str
    framing: Framing
    future: asyncio.Future[Reply]
    shape: re.Pattern[str] | None  # what its answer's data looks like (codec.answer_shape)
    misfit: str | None = None  # the last reply from its pump that was not its answer


@dataclass
class _Straggler:
    """A reply still owed to a request we stopped waiting for."""

    until: float  # loop time after which we stop expecting it
    arrived: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


AlarmListener = Callable[[int, Alarm], None]


class _Expired(Exception):
    """Internal: the request's deadline passed before its reply came."""


def _expire(future: asyncio.Future[Reply]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class LineWriter(Protocol):
    """The sending half of a line: an asyncio transport or StreamWriter."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class LineProtocol(asyncio.Protocol):
    """Hands the bytes a transport receives to its bus as they arrive.

    Bytes (or a loss of the connection) that come before the bus is attached are kept and
    handed over on `attach`.
    """

    def __init__(self) -> None:
        self._bus: NewEraBus | None = None
        self._early = bytearray()
        self._lost: list[Exception | None] = []
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def attach(self, bus: NewEraBus) -> None:
        self._bus = bus
        if self._early:
            data, self._early = bytes(self._early), bytearray()
            bus.data_received(data)
        if self._lost:
            bus.connection_lost(self._lost[0])

    def data_received(self, data: bytes) -> None:
        if self._bus is None:
            self._early += data
        else:
            self._bus.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._bus is None:
            self._lost.append(exc)
        else:
            self._bus.connection_lost(exc)


class NewEraBus:
    """Requests and replies on a New Era line: one request in flight, replies matched to it.

    The bus knows addresses, not pumps: `NewEraLine` (pumpctl.drivers.newera.line) owns a bus
    and the drivers of the pumps on it.
    """

    def __init__(self, reader: asyncio.StreamReader | None, writer: LineWriter, *,
                 clock: Clock | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = 1, protocol: LineProtocol | None = None) -> None:
        """`reader` None: bytes are pushed in through `protocol` (or `data_received`)."""
        self._reader = reader
        self._writer = writer
        self._protocol = protocol
        self.clock: Clock = clock or LoopClock()
        self.timeout_s = timeout_s
        self.retries = retries
        self._parser = codec.ReplyParser()
        self._lock = asyncio.Lock()
        self._in_flight: _InFlight | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._eof = False
        # A reply still owed to a request we stopped waiting for (timeout or cancellation).
        # Keyed by address: replies carry their pump's address, so only the next request to
        # that same pump could mistake one for its own answer.
        self._stragglers: dict[int, _Straggler] = {}
        self._dup_guard: dict[int, tuple[str, float]] = {}
        self._alarm_listeners: list[AlarmListener] = []
        self.last_sent_at: dict[int, float] = {}
        self._encoded: dict[tuple[int, str, bool], tuple[bytes, str, re.Pattern[str] | None]] = {}
        self.stale_replies = 0
        self.misfits = 0  # replies from the right pump that were not the answer (also stale)
        self.quiet_waits = 0  # requests that first waited for a straggling reply
        self.garbled = 0
        self.requests = 0

    @classmethod
    def from_streams(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                     clock: Clock | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                     retries: int = 1) -> NewEraBus:
        """A bus reading an asyncio stream pair with a reader task."""
        return cls(reader, writer, clock=clock, timeout_s=timeout_s, retries=retries)

    @classmethod
    def from_transport(cls, transport: LineWriter, protocol: LineProtocol, *,
                       clock: Clock | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                       retries: int = 1) -> NewEraBus:
        """A bus on a transport whose protocol is `protocol` (bytes handled as they arrive)."""
        bus = cls(None, transport, clock=clock, timeout_s=timeout_s, retries=retries,
                  protocol=protocol)
        protocol.attach(bus)
        return bus

    def add_alarm_listener(self, listener: AlarmListener) -> None:
        """Called with (address, alarm) for alarm packets nobody asked for."""
        self._alarm_listeners.append(listener)

    @property
    def closed(self) -> bool:
        return self._closed or self._eof

    async def close(self) -> None:
        """Close the stream (does not touch the pumps; `NewEraLine.close` stops the drivers'
        heartbeats first)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            if isinstance(self._writer, asyncio.StreamWriter):
                await self._writer.wait_closed()
            elif self._protocol is not None:
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._protocol.closed)

    # ---- requests ---------------------------------------------------------------------------

    async def transact(self, address: int, command: str, data: str = "", *, safe: bool,
                       framing: Framing | None = None, reply_address: int | None = None,
                       timeout_s: float | None = None) -> Reply:
        """Send one request and wait for its reply frame (no retries here)."""
        wire, request, shape = self._encode(address, command, data, safe)
        expect = framing or (Framing.SAFE if safe else Framing.BASIC)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        target = address if reply_address is None else reply_address
        while True:
            # A reply this pump still owes is waited for without holding the line, so requests
            # to the other pumps on it go on meanwhile.
            while target in self._stragglers:
                await self._wait_for_straggler(target)
            # acquire/release rather than `async with`: two coroutine calls fewer per request.
            await self._lock.acquire()
            if target not in self._stragglers:
                break  # (a request to this pump that held the line before us may have left one)
            self._lock.release()
        try:
            if self.closed:
                raise PumpProtocolError(f"connection closed; cannot send {request!r}")
            if self._reader is not None:
                self._ensure_reader()
            self._parser.reset()
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Reply] = loop.create_future()
            flight = self._in_flight = _InFlight(target, request, expect, future, shape)
            self.requests += 1
            try:
                self._writer.write(wire)
                self.last_sent_at[address] = self.clock.monotonic()
                if future.done():  # answered during write() (an in-memory simulator)
                    return future.result()
                # A timer that fails the future, rather than asyncio.timeout(): the same
                # deadline for a fraction of the cost, on the hot path of every poll.
                timer = loop.call_later(timeout, _expire, future)
                # In virtual time, a reply crossing a real pty or socket gets real time to
                # arrive before its deadline is reached (pumpctl.clock.VirtualTimeLoop).
                held = loop.expect_reply(loop.time() + timeout) \
                    if isinstance(loop, VirtualTimeLoop) else None
                try:
                    return await future
                except _Expired:
                    self._expect_straggler(target, timeout)
                    if flight.misfit is not None:
                        raise PumpProtocolError(
                            f"pump {target} answered {request!r} only with {flight.misfit!r}, "
                            f"which is not its answer, within {timeout:g} s") from None
                    raise PumpTimeout(f"no reply from pump {target} to {request!r} "
                                      f"within {timeout:g} s") from None
                except asyncio.CancelledError:
                    # Our caller gave up (its own deadline, a stop): the reply is still owed.
                    # (Cancelling the task cancels the future it awaited, so "cancelled" is
                    # what an unanswered request looks like here.)
                    if future.cancelled() or not future.done():
                        self._expect_straggler(target, timeout)
                    raise
                finally:
                    timer.cancel()
                    if held is not None:
                        loop.reply_settled(held)  # type: ignore[attr-defined]
            finally:
                self._in_flight = None
        finally:
            self._lock.release()

    def _expect_straggler(self, address: int, timeout: float) -> None:
        """The protocol has no sequence numbers and replies do not repeat their command: a
        reply we stopped waiting for, arriving during the next request to the same pump, would
        be taken as that request's answer. So that request first waits until the reply has come
        (and been dropped), or one more `timeout` has passed. Requests to other pumps on the
        line go ahead: a reply names its pump, so they cannot mistake it."""
        deadline = asyncio.get_running_loop().time() + timeout
        self._stragglers[address] = _Straggler(deadline)

    async def _wait_for_straggler(self, address: int) -> None:
        straggler = self._stragglers[address]
        remaining = straggler.until - asyncio.get_running_loop().time()
        if remaining > 0 and not straggler.arrived.done():
            self.quiet_waits += 1
            # Only a wait: if we are cancelled here, nothing was sent, and the straggler is
            # still expected by whoever sends next.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await asyncio.shield(straggler.arrived)
        if self._stragglers.get(address) is straggler:
            del self._stragglers[address]

    def _encode(self, address: int, command: str, data: str,
                safe: bool) -> tuple[bytes, str, re.Pattern[str] | None]:
        """Wire bytes, printable text and answer shape of a request. Requests without data
        (the status queries sent on every poll) are remembered, so they are framed once."""
        key = (address, command, safe)
        if not data:
            cached = self._encoded.get(key)
            if cached is not None:
                return cached
        payload = codec.request_payload(address, command, data)
        encoded = (codec.frame_safe(payload) if safe else codec.frame_basic(payload),
                   payload.decode(), codec.answer_shape(command, bool(data)))
        if not data:
            self._encoded[key] = encoded
        return encoded

    # ---- receiving --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Bytes from the line: every complete frame is dispatched at once."""
        if not self._parser.pending:
            reply = codec.parse_basic_frame(data)
            if reply is not None:  # the usual read: exactly one good basic reply
                self._on_reply(reply, data[1:-1], safe=False)
                return
        for item in self._parser.feed(data):
            self._on_item(item)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(f"connection lost: {exc}" if exc else "connection closed by the other end")

    def _ensure_reader(self) -> None:
        if self._task is None and self._reader is not None:
            self._task = asyncio.get_running_loop().create_task(
                self._read_loop(self._reader), name="newera-bus-reader")

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                data = await reader.read(4096)
            except (OSError, ConnectionError) as exc:
                self._lost(f"connection lost: {exc}")
                return
            if not data:
                self._lost("connection closed by the other end")
                return
            self.data_received(data)

    def _lost(self, why: str) -> None:
        self._eof = True
        flight = self._in_flight
        if flight is not None and not flight.future.done():
            flight.future.set_exception(PumpProtocolError(f"{why} while waiting for "
                                                          f"{flight.request!r}"))

    def _fail_in_flight(self, error: PumpError) -> None:
        flight = self._in_flight
        if flight is not None and not flight.future.done():
            flight.future.set_exception(error)
        else:
            self.garbled += 1
            log.debug("garbled bytes with no request waiting: %s", error)

    def _on_item(self, item: Frame | PumpError) -> None:
        if isinstance(item, PumpError):
            self._fail_in_flight(item)
            return
        try:
            reply = codec.parse_reply(item.payload, safe=item.safe)
        except PumpError as exc:
            self._fail_in_flight(exc)
            return
        self._on_reply(reply, item.payload, safe=item.safe)

    def _on_reply(self, reply: Reply, payload: bytes, *, safe: bool) -> None:
        """A decoded reply frame (`payload`: its bytes between the framing, for messages)."""
        if reply.alarm is not None:
            guard = self._dup_guard.pop(reply.address, None)
            now = self.clock.monotonic()
            if guard is not None and guard[0] == reply.alarm.code and now <= guard[1]:
                return  # the second copy of an alarm (auto packet and reply crossed)
        flight = self._in_flight
        if flight is not None and not flight.future.done() and reply.address == flight.address:
            if flight.framing is Framing.SAFE and not safe:
                flight.future.set_exception(PumpProtocolError(
                    f"basic-framed reply {payload!r} to {flight.request!r} in safe mode"))
                return
            if flight.framing is Framing.BASIC and safe:
                flight.future.set_exception(PumpProtocolError(
                    f"safe-framed reply {payload!r} to {flight.request!r} in basic mode"))
                return
            if reply.alarm is not None and safe:
                # In safe mode the pump also sends the alarm on its own; if that packet and
                # this reply crossed, the other copy follows: drop it when it comes.
                self._dup_guard[reply.address] = (reply.alarm.code,
                                                  self.clock.monotonic() + self.timeout_s)
            shape = flight.shape
            if (shape is None or reply.alarm is not None or reply.error is not None
                    or shape.fullmatch(reply.data)):
                flight.future.set_result(reply)
                return
            # From the right pump, but not the answer to this request: a late answer to an
            # earlier one (an alarm or a `?` error answers anything, so those are taken).
            flight.misfit = reply.data
            self.misfits += 1
            log.debug("reply %r does not answer %r: taken as a late one", payload,
                      flight.request)
        elif reply.alarm is not None:
            for listener in list(self._alarm_listeners):
                listener(reply.address, reply.alarm)
            if safe:
                return  # in safe mode the pump sends alarms unasked: it may owe one yet
        self.stale_replies += 1
        log.debug("dropped a reply nobody was waiting for: %r", payload)
        straggler = self._stragglers.get(reply.address)
        if straggler is not None and not straggler.arrived.done():
            straggler.arrived.set_result(None)  # the owed reply came: that pump is clear

"""A line of simulated pumps: the part of every protocol engine that is not the protocol.

`SimLine` is the base class of the protocol engines (`simulators.newera.NewEraSimulator`;
the Modbus engines next). It implements `simulators.serve.SimEngine`, so memory, pty and TCP
serving work for every engine alike, and it owns:
- the pumps, protocol-free `SimulatedPump`s, and the clock they run on;
- a service task that wakes at the earliest `next_deadline()` of any pump (or when a pump is
  poked), so scheduled faults, the host watchdog, power coming back, a syringe running empty
  or a stall happen with no request;
- the clients: `connect(sink) -> token`, `disconnect(token)`;
- bytes in, `receive(token, data)`: handed to the engine's `handle(token, data, now)`, at
  once without a baud rate, or when their last bit would have arrived at `baud` (8N1);
- bytes out, `send(frame, delay=, to=)`: to one client (`to=token`, e.g. a Modbus TCP reply)
  or to every client (a serial line, where everyone hears everything), paced like bytes in;
  with nobody connected they are dropped, as on a real line.

An engine writes two methods: `handle` (its framing and commands, replies through `send`)
and `pump(address)` (its addressing). Fault times count from `start()`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import ClassVar, Self

from pumpctl.clock import Clock
from simulators.faults import Fault
from simulators.pump import SimulatedPump
from simulators.serve.engine import Sink

BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit


class SimLine(abc.ABC):
    """Pumps on one line, served to any number of clients.

    `baud` paces the line (None: bytes move instantly, as in-process tests want).
    """

    # The address a fault without a `pump=` parameter goes to.
    default_address: ClassVar[int] = 0

    def __init__(self, clock: Clock, pumps: Sequence[SimulatedPump], *,
                 baud: int | None = None, name: str = "sim-line") -> None:
        if not pumps:
            raise ValueError("a simulator needs at least one pump")
        self.clock = clock
        self.baud = baud
        self.name = name
        self.pumps = list(pumps)
        for pump in self.pumps:
            pump.attach(wake=self._poke, time_base=self._time_base)
        self._sinks: dict[int, Sink] = {}
        self._next_sink = 0
        self.started_at: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rx_free_at = 0.0  # when the line from host to pumps is idle again
        self._tx_free_at = 0.0  # when the line from pumps to host is idle again
        self.bytes_in = 0
        self.bytes_out = 0

    # ---- what an engine writes --------------------------------------------------------------

    @abc.abstractmethod
    def pump(self, address: int) -> SimulatedPump:
        """The pump answering at `address` (KeyError if none)."""

    @abc.abstractmethod
    def handle(self, token: int, data: bytes, now: float) -> None:
        """Bytes from client `token`, whose last byte arrived at clock time `now`."""

    # ---- faults -----------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Schedule `fault` for the pump its `pump` parameter names (default:
        `default_address`), at its time after start; one whose time has passed applies at
        once."""
        address = fault.pump_address
        self.pump(self.default_address if address is None else address).inject(fault)

    def _time_base(self) -> float:
        """Fault times count from start(), or from now if not started yet."""
        return self.started_at if self.started_at is not None else self.clock.monotonic()

    # ---- lifecycle --------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the service task (needs a running loop; idempotent)."""
        if self._task is None:
            self.started_at = self.clock.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._service(),
                                                                name=self.name)

    async def start(self) -> None:
        self.ensure_started()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def _poke(self) -> None:
        self._wake.set()

    async def _service(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock.monotonic()
            for pump in self.pumps:
                pump.service(now)
            deadlines = [d for d in (p.next_deadline() for p in self.pumps) if d is not None]
            timeout = max(0.0, min(deadlines) - self.clock.monotonic()) if deadlines else None
            # asyncio.timeout rather than wait_for: on 3.11, wait_for swallows a cancellation
            # that lands just as the event is set, and aclose() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    # ---- clients ----------------------------------------------------------------------------

    def connect(self, sink: Sink) -> int:
        """Attach a client; returns a token for `receive`, `send(to=)` and `disconnect`."""
        self._next_sink += 1
        self._sinks[self._next_sink] = sink
        return self._next_sink

    def disconnect(self, token: int) -> None:
        self._sinks.pop(token, None)

    @property
    def connected(self) -> bool:
        return bool(self._sinks)

    def _wire_time(self, nbytes: int) -> float:
        return nbytes * BITS_PER_BYTE / self.baud if self.baud else 0.0

    def receive(self, token: int, data: bytes) -> None:
        """Bytes from client `token`. With a baud rate, they are handled when their last bit
        would have arrived on a real line."""
        self.bytes_in += len(data)
        now = self.clock.monotonic()
        if not self.baud:
            self.handle(token, data, now)
            return
        self._rx_free_at = max(now, self._rx_free_at) + self._wire_time(len(data))
        asyncio.get_running_loop().call_later(self._rx_free_at - now, self._handle_late,
                                              token, data)

    def _handle_late(self, token: int, data: bytes) -> None:
        self.handle(token, data, self.clock.monotonic())

    def send(self, frame: bytes, *, delay: float = 0.0, to: int | None = None) -> None:
        """Put bytes on the line towards client `to`, or every client (dropped when nobody is
        listening, as a real line would). With a baud rate, they arrive when their last bit
        would."""
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._send_now, frame, to)
            return
        self._send_now(frame, to)

    def _send_now(self, frame: bytes, to: int | None) -> None:
        if not self.baud:
            self._deliver(frame, to)
            return
        now = self.clock.monotonic()
        self._tx_free_at = max(now, self._tx_free_at) + self._wire_time(len(frame))
        asyncio.get_running_loop().call_later(self._tx_free_at - now, self._deliver, frame, to)

    def _deliver(self, frame: bytes, to: int | None) -> None:
        self.bytes_out += len(frame)
        if to is not None:
            sink = self._sinks.get(to)
            if sink is not None:
                sink(frame)
            return
        for sink in list(self._sinks.values()):
            sink(frame)

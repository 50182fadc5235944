"""A line of simulated New Era pumps: bytes in from a host, bytes out to it.

`NewEraSimulator` owns the serial line: it splits what the host sends into packets, hands each
to the pump(s) it addresses, and puts their replies back on the line, optionally paced at the
configured baud rate (so round trips over a pty or in virtual time take the time a real line
takes). A background task on the simulator's clock fires whatever is due without a command:
scheduled faults, the safe-mode watchdog, a syringe running empty, a stall.

How the bytes reach a host (memory pipe, pty, TCP) is `simulators.serve`'s job; this module
only needs an output callback per connected client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from types import TracebackType

from pumpctl.clock import Clock
from simulators.faults import Fault
from simulators.newera.unit import NewEraUnit, SimPumpConfig
from simulators.newera.wire import Packet, RequestFramer, split_command
from simulators.physics import RateLimits
from simulators.pump import SimulatedPump

__all__ = ["NewEraSimulator", "NewEraUnit", "SimPumpConfig", "profile_rate_limits"]

Sink = Callable[[bytes], None]
BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit


def profile_rate_limits(profile: str = "newera-ne1000") -> RateLimits:
    """Rate limits from the project's pump profile, so `?OOR` agrees with the plan compiler."""
    from pumpctl.plan.library import load_pump_profile

    loaded = load_pump_profile(profile)
    return loaded.rate_limits_ml_h


class NewEraSimulator:
    """Simulated pumps sharing one serial line.

    `pumps` is a count (addresses 0..n-1, default settings) or explicit configs. `baud`
    paces the line (None: bytes move instantly). Fault times are seconds after `start()`.
    """

    def __init__(self, clock: Clock, pumps: int | Sequence[SimPumpConfig] = 1, *,
                 baud: int | None = None, profile: str = "newera-ne1000",
                 rate_limits: RateLimits | None = None) -> None:
        self.clock = clock
        configs = ([SimPumpConfig(address=i) for i in range(pumps)] if isinstance(pumps, int)
                   else list(pumps))
        if not configs:
            raise ValueError("a simulator needs at least one pump")
        limits = rate_limits if rate_limits is not None else profile_rate_limits(profile)
        self.baud = baud
        # The protocol-free pumps, and the New Era face each shows at its address.
        self.pumps = [SimulatedPump(clock, cfg.setup(), rate_limits=limits, wake=self._poke,
                                    time_base=self._time_base) for cfg in configs]
        self.units = [NewEraUnit(pump, cfg, emit=self.send)
                      for pump, cfg in zip(self.pumps, configs, strict=True)]
        self._framer = RequestFramer()
        self._sinks: dict[int, Sink] = {}
        self._next_sink = 0
        self.started_at: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rx_free_at = 0.0  # when the line from host to pumps is idle again
        self._tx_free_at = 0.0  # when the line from pumps to host is idle again
        self.bytes_in = 0
        self.bytes_out = 0

    # ---- pumps and faults -------------------------------------------------------------------

    def unit(self, address: int) -> NewEraUnit:
        """The New Era pump answering at `address` now."""
        for unit in self.units:
            if unit.address == address:
                return unit
        raise KeyError(f"no simulated pump at address {address}")

    def pump(self, address: int) -> SimulatedPump:
        """The protocol-free pump behind `address` (physics, faults, alarms, counters)."""
        return self.unit(address).pump

    def inject(self, fault: Fault) -> None:
        """Schedule `fault` for the pump its `pump` parameter names (default address 0), at
        its time after start; one whose time has passed applies at once."""
        self.pump(fault.pump_address or 0).inject(fault)

    def _time_base(self) -> float:
        """Fault times count from start(), or from now if not started yet."""
        return self.started_at if self.started_at is not None else self.clock.monotonic()

    # ---- lifecycle --------------------------------------------------------------------------

    def ensure_started(self) -> None:
        if self._task is None:
            self.started_at = self.clock.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._service(),
                                                                name="newera-sim")

    async def start(self) -> None:
        self.ensure_started()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> NewEraSimulator:
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

    # ---- the line ---------------------------------------------------------------------------

    def connect(self, sink: Sink) -> int:
        """Attach a client; returns a token for `disconnect`."""
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

    def receive(self, data: bytes) -> None:
        """Bytes from the host. With a baud rate, they are handled when their last bit would
        have arrived on a real line."""
        self.bytes_in += len(data)
        if not self.baud:
            now = self.clock.monotonic()
            for packet in self._framer.feed(data, now):
                self._dispatch(packet, now)
            return
        now = self.clock.monotonic()
        self._rx_free_at = max(now, self._rx_free_at) + self._wire_time(len(data))
        asyncio.get_running_loop().call_later(self._rx_free_at - now, self._handle, data)

    def _handle(self, data: bytes) -> None:
        now = self.clock.monotonic()
        for packet in self._framer.feed(data, now):
            self._dispatch(packet, now)

    def _dispatch(self, packet: Packet, now: float) -> None:
        command = split_command(packet.text)
        if command is None:
            return
        system = command.name.startswith("*")
        address = command.address if command.address is not None else 0
        for unit in list(self.units):
            if not system and unit.address != address:
                continue
            result = unit.on_packet(packet, command, now)
            if result is not None:
                frame, delay = result
                self.send(frame, delay=delay)

    def send(self, frame: bytes, *, delay: float = 0.0) -> None:
        """Put bytes on the line towards the host (dropped when nobody is listening, as a real
        line would). With a baud rate, they arrive when their last bit would."""
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.send, frame)
            return
        if not self.baud:
            self._deliver(frame)
            return
        now = self.clock.monotonic()
        self._tx_free_at = max(now, self._tx_free_at) + self._wire_time(len(frame))
        asyncio.get_running_loop().call_later(self._tx_free_at - now, self._deliver, frame)

    def _deliver(self, frame: bytes) -> None:
        self.bytes_out += len(frame)
        for sink in list(self._sinks.values()):
            sink(frame)

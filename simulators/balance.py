"""A simulated MT-SICS balance that weighs what a simulated pump really delivers.

The mass on the pan is the beaker plus the liquid that left the pump's line (the physics
model's delivered volume, with its lag and ripple, never the pump's step counter) times the
liquid's density, minus what evaporated; each reading adds the balance's noise and is
rounded to its resolution. The balance judges a reading stable when the noise-free mass has
stayed within `stable_band_g` for `settle_s` (it samples it every half settle time, as a real
balance's stability detector follows its own measurement cycle): so `SI` answers `S D` while
the pump is moving liquid onto the pan, and `S`, `Z` and `T` wait for a stable reading and give
up with `S I` / `Z I` / `T I` after `stable_timeout_s`.

The byte handling is the engine interface of `simulators.serve` (`SimEngine`: `connect`,
`disconnect`, `receive`, `connected`, `ensure_started`, `start`, `aclose`), so serving puts it
on a pty, a TCP port or an in-memory pipe unchanged. Behaviour where MT-SICS leaves room is in
docs/balance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType

from pumpctl.clock import Clock
from pumpctl.drivers.balance.driver import LineReceiver, MtSicsBalance
from simulators.serve.engine import Sink

MAX_COMMAND = 64  # a longer line is a transmission error


@dataclass(frozen=True)
class SimBalanceConfig:
    density_g_ml: float = 0.998
    resolution_g: float = 0.0001  # 0.1 mg: an analytical balance
    noise_g: float = 0.0  # standard deviation of each reading (drafts, vibration)
    evaporation_g_min: float = 0.0  # lost from the beaker
    capacity_g: float = 220.0
    container_g: float = 0.0  # what stands on the pan at power-on besides the liquid (beaker)
    zero_range_g: float = 4.4  # Z/ZI allowed within this of the power-on zero (2 % of 220 g)
    settle_s: float = 1.0
    stable_band_g: float = 0.0002  # two digits
    stable_timeout_s: float = 3.0
    reply_delay_s: float = 0.05  # a reading is ready on the next measurement cycle
    model: str = "pumpctl-sim"
    serial_number: str = "0000000001"
    seed: int = 0


class BalanceSimulator:
    """One balance. `delivered_ml` is the volume that has left the pump's line so far."""

    def __init__(self, clock: Clock, delivered_ml: Callable[[], float] | None = None,
                 config: SimBalanceConfig | None = None) -> None:
        self.clock = clock
        self.config = config or SimBalanceConfig()
        self._delivered_ml = delivered_ml or (lambda: 0.0)
        self._rng = random.Random(self.config.seed)
        self._sinks: dict[int, Sink] = {}
        self._next_sink = 0
        self._rx = bytearray()
        self._queue: deque[tuple[str, float]] = deque()  # commands waiting, with arrival time
        self._history: deque[tuple[float, float]] = deque()  # (time, noise-free gross)
        self._zero_g = 0.0  # gross reading taken as zero
        self._tare_g = 0.0
        self._t0 = clock.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.muted = False  # a fault: commands are read but never answered
        self.commands: list[str] = []  # every command line received, for tests

    # ---- the mass on the pan ----------------------------------------------------------------

    def gross_g(self, now: float | None = None) -> float:
        """Noise-free mass on the pan."""
        t = self.clock.monotonic() if now is None else now
        c = self.config
        return (c.container_g + c.density_g_ml * self._delivered_ml()
                - c.evaporation_g_min * (t - self._t0) / 60.0)

    def _reading_g(self) -> float:
        noise = self._rng.gauss(0.0, self.config.noise_g) if self.config.noise_g else 0.0
        return self.gross_g() + noise

    def _sample(self) -> None:
        now = self.clock.monotonic()
        self._history.append((now, self.gross_g(now)))
        while self._history and self._history[0][0] < now - 2 * self.config.settle_s:
            self._history.popleft()

    def stable(self) -> bool:
        """The noise-free mass has stayed within the band for the settle time."""
        self._sample()
        now = self.clock.monotonic()
        window = [g for t, g in self._history if t >= now - self.config.settle_s - 1e-9]
        span = self._history[-1][0] - min(t for t, _ in self._history)
        if span < self.config.settle_s - 1e-9:
            return False
        return max(window) - min(window) <= self.config.stable_band_g

    def _display(self, grams: float) -> str:
        res = self.config.resolution_g
        decimals = max(0, round(-math.log10(res)))
        value = round(grams / res) * res
        return f"{value:>10.{decimals}f} g"

    # ---- lifecycle (the engine interface of simulators.serve) -------------------------------

    def connect(self, sink: Sink) -> int:
        self._next_sink += 1
        self._sinks[self._next_sink] = sink
        return self._next_sink

    def disconnect(self, token: int) -> None:
        self._sinks.pop(token, None)

    @property
    def connected(self) -> bool:
        return bool(self._sinks)

    async def start(self) -> None:
        self.ensure_started()

    def ensure_started(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._service(),
                                                                name="balance-sim")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> BalanceSimulator:
        self.ensure_started()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def _service(self) -> None:
        """The balance's measurement cycle: sample the mass for the stability detector and
        serve a command waiting for a stable reading. Idle (no timer) while nothing waits
        and nobody is connected."""
        tick = self.config.settle_s / 2
        while True:
            self._wake.clear()
            self._sample()
            self._serve_queue()
            if self._queue or self._sinks:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(tick):
                        await self._wake.wait()
            else:
                await self._wake.wait()

    # ---- bytes ------------------------------------------------------------------------------

    def receive(self, token: int, data: bytes) -> None:
        # One line for every client, as on a serial line: their bytes interleave.
        self._rx += data
        while (end := self._rx.find(b"\n")) >= 0:
            line = bytes(self._rx[:end]).rstrip(b"\r")
            del self._rx[:end + 1]
            self._command(line)
        if len(self._rx) > MAX_COMMAND:
            self._rx.clear()
            self._reply("ET")
        self._wake.set()

    def _command(self, line: bytes) -> None:
        if not line.strip():
            return
        if len(line) > MAX_COMMAND or not line.isascii() or not line.decode().isprintable():
            self._reply("ET")
            return
        text = line.decode("ascii").strip()
        self.commands.append(text)
        if text == "@":  # a reset drops whatever was waiting
            self._queue.clear()
        self._queue.append((text, self.clock.monotonic()))
        self._serve_queue()

    def _reply(self, text: str) -> None:
        if self.muted:
            return
        frame = text.encode("ascii") + b"\r\n"
        delay = self.config.reply_delay_s
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._deliver, frame)
        else:
            self._deliver(frame)

    def _deliver(self, frame: bytes) -> None:
        for sink in list(self._sinks.values()):
            sink(frame)

    # ---- commands ---------------------------------------------------------------------------

    def _serve_queue(self) -> None:
        while self._queue:
            text, arrived = self._queue[0]
            if not self._execute(text, arrived):
                return  # waiting for a stable reading
            self._queue.popleft()

    def _execute(self, text: str, arrived: float) -> bool:
        """Answer one command; False while it waits for a stable reading."""
        name, _, rest = text.partition(" ")
        handlers: dict[str, Callable[[], str | None]] = {
            "SI": self._weigh_now, "S": self._weigh_stable, "Z": self._zero_stable,
            "ZI": self._zero_now, "T": self._tare_stable, "TI": self._tare_now,
            "TAC": self._clear_tare, "@": self._reset, "I2": self._model, "I4": self._serial}
        handler = handlers.get(name)
        if handler is None:
            self._reply("ES")
            return True
        if rest.strip():
            self._reply("EL")  # none of these commands takes a parameter here
            return True
        reply = handler()
        if reply is None:  # needs a stable reading
            if self.clock.monotonic() - arrived < self.config.stable_timeout_s:
                return False
            reply = f"{'S' if name == 'S' else name} I"
        self._reply(reply)
        return True

    def _range(self, ident: str, gross: float) -> str | None:
        if gross > self.config.capacity_g:
            return f"{ident} +"
        if gross < -self.config.zero_range_g:
            return f"{ident} -"
        return None

    def _weigh(self, stable: bool) -> str:
        gross = self._reading_g()
        return self._range("S", gross) or (
            f"S {'S' if stable else 'D'} {self._display(gross - self._zero_g - self._tare_g)}")

    def _weigh_now(self) -> str:
        return self._weigh(self.stable())

    def _weigh_stable(self) -> str | None:
        return self._weigh(True) if self.stable() else None

    def _zero(self, ident: str, flag: str) -> str:
        gross = self._reading_g()
        if abs(gross) > self.config.zero_range_g:
            return f"{ident} {'+' if gross > 0 else '-'}"
        self._zero_g = gross
        self._tare_g = 0.0
        return f"{ident} {flag}"

    def _zero_stable(self) -> str | None:
        return self._zero("Z", "A") if self.stable() else None

    def _zero_now(self) -> str:
        return self._zero("ZI", "S" if self.stable() else "D")

    def _tare(self, ident: str, flag: str) -> str:
        gross = self._reading_g()
        out = self._range(ident, gross)
        if out:
            return out
        self._tare_g = gross - self._zero_g
        return f"{ident} {flag} {self._display(self._tare_g)}"

    def _tare_stable(self) -> str | None:
        return self._tare("T", "S") if self.stable() else None

    def _tare_now(self) -> str:
        return self._tare("TI", "S" if self.stable() else "D")

    def _clear_tare(self) -> str:
        self._tare_g = 0.0
        return "TAC A"

    def _reset(self) -> str:
        self._tare_g = 0.0
        return f'I4 A "{self.config.serial_number}"'

    def _model(self) -> str:
        c = self.config
        return f'I2 A "{c.model} {self._display(c.capacity_g).strip()}"'

    def _serial(self) -> str:
        return f'I4 A "{self.config.serial_number}"'


@contextlib.asynccontextmanager
async def embedded_balance(clock: Clock, delivered_ml: Callable[[], float] | None = None,
                           config: SimBalanceConfig | None = None, *,
                           timeout_s: float | None = None,
                           ) -> AsyncIterator[tuple[BalanceSimulator, MtSicsBalance]]:
    """A simulated balance and an `MtSicsBalance` driver talking to it through an in-memory
    pipe (the bytes are the real MT-SICS bytes; no OS resources)."""
    from simulators.serve import memory_transport

    sim = BalanceSimulator(clock, delivered_ml, config)
    async with sim:
        receiver = LineReceiver()
        transport = memory_transport(sim, receiver)
        balance = MtSicsBalance(transport, receiver, where="simulated balance",
                                **({"timeout_s": timeout_s} if timeout_s else {}))
        try:
            yield sim, balance
        finally:
            await balance.close()

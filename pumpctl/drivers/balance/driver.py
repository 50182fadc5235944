"""An MT-SICS balance over any asyncio transport (serial port, TCP, or a simulator in memory).

One command in flight at a time (MT-SICS answers in order and does not repeat a sequence
number), each with its own deadline on the loop's clock, so timeouts run in virtual time under
test. A reply that arrives after its request gave up is owed: the next request first waits
for it (at most one more timeout) and drops it, so it is never taken as the next answer.

`MtSicsBalance.volume_sensor(density)` is the controller's independent `VolumeSensor`:
what arrived in the beaker, in mL, from the mass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from pumpctl.drivers.balance import mtsics
from pumpctl.drivers.balance.mtsics import (
    BalanceError,
    BalanceProtocolError,
    BalanceTimeout,
    Weight,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 2.0  # an immediate command (SI, ZI, TI, I2 …)
# A balance waits for a stable reading before answering S, Z and T, and gives up with `I`
# after its own timeout (a few seconds on most models); the host waits longer than that.
STABLE_TIMEOUT_S = 15.0


class LineReceiver(asyncio.Protocol):
    """Splits a byte stream into CR LF lines for the driver (bytes before the driver attaches
    are kept)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.lines: deque[bytes] = deque()
        self.arrived = asyncio.Event()
        self.lost: Exception | None = None
        self.closed = False

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[:end + 1]
            self.lines.append(line)
        if len(self._buffer) > mtsics.MAX_LINE:  # no line end in sight: not a balance
            self.lines.append(bytes(self._buffer[:mtsics.MAX_LINE]))
            self._buffer.clear()
        if self.lines:
            self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        self.arrived.set()


class MtSicsBalance:
    """One balance on one line."""

    def __init__(self, transport: asyncio.BaseTransport, receiver: LineReceiver, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 stable_timeout_s: float = STABLE_TIMEOUT_S, where: str = "balance") -> None:
        self._transport = transport
        self._rx = receiver
        self.timeout_s = timeout_s
        self.stable_timeout_s = stable_timeout_s
        self.where = where
        self._lock = asyncio.Lock()
        self._owed_until: float | None = None  # loop time until which a late reply may come

    # ---- the line ---------------------------------------------------------------------------

    async def _next_line(self, deadline: float) -> bytes:
        loop = asyncio.get_running_loop()
        while not self._rx.lines:
            if self._rx.closed:
                raise BalanceError(f"{self.where}: connection closed"
                                   + (f" ({self._rx.lost})" if self._rx.lost else ""))
            self._rx.arrived.clear()
            async with asyncio.timeout_at(deadline):
                await self._rx.arrived.wait()
            if loop.time() >= deadline and not self._rx.lines:
                raise TimeoutError
        return self._rx.lines.popleft()

    async def _drop_owed(self) -> None:
        if self._owed_until is not None:
            with contextlib.suppress(TimeoutError):
                line = await self._next_line(self._owed_until)
                log.info("%s: dropped a late reply %r", self.where, line)
            self._owed_until = None
        while self._rx.lines:  # nothing is owed: whatever is here was not asked for
            log.warning("%s: dropped unsolicited %r", self.where, self._rx.lines.popleft())

    async def request(self, command: str, *, timeout_s: float | None = None) -> bytes:
        """Send one command, return its reply line (without CR LF)."""
        data = mtsics.encode(command)
        wait = self.timeout_s if timeout_s is None else timeout_s
        async with self._lock:
            await self._drop_owed()
            if self._rx.closed:
                raise BalanceError(f"{self.where}: connection closed")
            assert isinstance(self._transport, asyncio.WriteTransport)
            self._transport.write(data)
            deadline = asyncio.get_running_loop().time() + wait
            try:
                return await self._next_line(deadline)
            except TimeoutError:
                self._owed_until = deadline + wait
                raise BalanceTimeout(f"{self.where}: no reply to {command} within {wait:g} s"
                                     ) from None
            except asyncio.CancelledError:
                self._owed_until = asyncio.get_running_loop().time() + wait
                raise

    # ---- commands ---------------------------------------------------------------------------

    async def weigh_now(self) -> Weight:
        """`SI`: the weight now, stable or not."""
        return mtsics.parse_weight("SI", await self.request("SI"))

    async def weigh_stable(self) -> Weight:
        """`S`: the next stable weight (the balance answers `S I` if none comes in time)."""
        return mtsics.parse_weight("S", await self.request("S", timeout_s=self.stable_timeout_s))

    async def zero_stable(self) -> None:
        """`Z`: zero once the reading is stable."""
        mtsics.parse_done("Z", await self.request("Z", timeout_s=self.stable_timeout_s))

    async def zero_now(self) -> bool:
        """`ZI`: zero now; True if the reading was stable."""
        return mtsics.parse_done("ZI", await self.request("ZI"), ok=("S", "D")) == "S"

    async def tare_stable(self) -> Weight:
        """`T`: tare once stable; returns the tare weight."""
        return mtsics.parse_weight("T", await self.request("T", timeout_s=self.stable_timeout_s))

    async def tare_now(self) -> Weight:
        """`TI`: tare now; returns the tare weight (stable flag as measured)."""
        return mtsics.parse_weight("TI", await self.request("TI"))

    async def clear_tare(self) -> None:
        """`TAC`."""
        mtsics.parse_done("TAC", await self.request("TAC"))

    async def reset(self) -> str:
        """`@`: reset (tare cleared, pending commands dropped); returns the serial number."""
        return mtsics.parse_text("@", await self.request("@"))

    async def model(self) -> str:
        """`I2`: model and weighing range as the balance states them."""
        return mtsics.parse_text("I2", await self.request("I2"))

    async def serial_number(self) -> str:
        """`I4`."""
        return mtsics.parse_text("I4", await self.request("I4"))

    async def close(self) -> None:
        self._transport.close()

    def volume_sensor(self, density_g_ml: float,
                      evaporation_g_min: float = 0.0) -> BalanceVolumeSensor:
        return BalanceVolumeSensor(self, density_g_ml, evaporation_g_min)


class BalanceVolumeSensor:
    """The controller's `VolumeSensor` on a balance: volume = mass change / density.

    `zero()` remembers the present reading rather than zeroing the balance, so nothing on
    the balance's display changes under an operator's eyes, and a dynamic reading (the pump
    may already be moving) is fine. Evaporation, when measured, is added back per minute of
    the loop's clock since `zero()`.
    """

    def __init__(self, balance: MtSicsBalance, density_g_ml: float,
                 evaporation_g_min: float = 0.0) -> None:
        if not 0.5 <= density_g_ml <= 3.0:
            raise BalanceError(f"density {density_g_ml} g/mL: must be 0.5-3 g/mL")
        self.balance = balance
        self.density_g_ml = density_g_ml
        self.evaporation_g_min = evaporation_g_min
        self._zero_g: float | None = None
        self._zero_at = 0.0

    async def zero(self) -> None:
        self._zero_g = (await self.balance.weigh_now()).grams
        self._zero_at = asyncio.get_running_loop().time()

    async def read_ml(self) -> float:
        if self._zero_g is None:
            raise BalanceProtocolError(f"{self.balance.where}: read before zero()")
        grams = (await self.balance.weigh_now()).grams - self._zero_g
        minutes = (asyncio.get_running_loop().time() - self._zero_at) / 60.0
        return (grams + self.evaporation_g_min * minutes) / self.density_g_ml

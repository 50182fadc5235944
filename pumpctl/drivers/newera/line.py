"""One New Era serial line and the pumps on it.

The bus (`NewEraBus`) pairs requests with replies on the byte stream and knows addresses only;
a driver (`NewEraDriver`) speaks for one pump through the bus. The line owns both: it hands
out one driver per address, finds the addresses that answer, and on `close()` stops every
driver's heartbeat before it closes the stream, so no heartbeat writes to a closed port.
Keeping that ownership here is what lets the bus and the driver not know each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pumpctl.clock import Clock
from pumpctl.drivers.base import PumpError, PumpOutOfRange, PumpTimeout
from pumpctl.drivers.newera import codec
from pumpctl.drivers.newera.bus import DEFAULT_TIMEOUT_S, Framing, LineProtocol, NewEraBus
from pumpctl.drivers.newera.driver import NewEraDriver


class NewEraLine:
    """The pumps on one New Era line; `pump(address)` gives the driver for one of them."""

    def __init__(self, bus: NewEraBus) -> None:
        self.bus = bus
        self._drivers: dict[int, NewEraDriver] = {}

    @classmethod
    def from_transport(cls, transport: asyncio.WriteTransport, protocol: LineProtocol, *,
                       clock: Clock | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                       retries: int = 1) -> NewEraLine:
        """A line on a transport whose protocol is `protocol` (bytes handled as they arrive)."""
        return cls(NewEraBus.from_transport(transport, protocol, clock=clock,
                                            timeout_s=timeout_s, retries=retries))

    @property
    def clock(self) -> Clock:
        return self.bus.clock

    def pump(self, address: int, *, safe_s: int | None = None) -> NewEraDriver:
        """The driver for the pump at `address` (one per address; `safe_s` arms the watchdog
        at `open()`, None leaves the pump's mode as found)."""
        if not 0 <= address <= codec.MAX_ADDRESS:
            raise PumpOutOfRange(f"address {address} is outside 0-{codec.MAX_ADDRESS}")
        driver = self._drivers.get(address)
        if driver is None:
            driver = NewEraDriver(self.bus, address, safe_s=safe_s, on_moved=self._moved)
            self._drivers[address] = driver
        return driver

    def _moved(self, driver: NewEraDriver, old: int, new: int) -> None:
        """A driver's pump took a new address (`*ADR`): `pump(new)` now returns it."""
        if self._drivers.get(old) is driver:
            del self._drivers[old]
        self._drivers[new] = driver

    async def scan(self, addresses: Sequence[int] = range(codec.MAX_ADDRESS + 1), *,
                   timeout_s: float = 0.1, attempts: int = 1) -> list[int]:
        """Addresses that answer a safe-framed `SAF` query (a harmless read in either mode).

        `attempts=2` also finds units that ignore the first command after power-up, at twice
        the cost for every silent address."""
        found = []
        for address in addresses:
            for _ in range(attempts):
                try:
                    await self.bus.transact(address, "SAF", safe=True, framing=Framing.EITHER,
                                            timeout_s=timeout_s)
                except PumpTimeout:
                    continue
                except PumpError:
                    pass  # something answered, even if garbled
                found.append(address)
                break
        return found

    async def close(self) -> None:
        """Stop every driver's heartbeat, then close the stream (the pumps are not touched:
        a pump whose watchdog is armed then stops itself)."""
        for driver in list(self._drivers.values()):
            await driver.stop_heartbeat()
        await self.bus.close()

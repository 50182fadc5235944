"""One Modbus connection and the pumps (unit ids) on it.

The link (`ModbusLink`) pairs requests with replies and knows unit ids only; a driver
(`ModbusPumpDriver`) speaks for one pump through it with its map. The line owns both: it hands
out one driver per unit id (several share an RTU line or a device server), finds the unit ids
that answer, and on `close()` stops every driver's heartbeat before it closes the connection,
so no heartbeat writes to a closed port.
"""

from __future__ import annotations

from collections.abc import Sequence

from pumpctl.clock import Clock
from pumpctl.drivers.base import PumpError, PumpOutOfRange, PumpTimeout
from pumpctl.drivers.modbus.driver import ModbusPumpDriver
from pumpctl.drivers.modbus.link import ModbusExceptionReply, ModbusLink
from pumpctl.drivers.modbus.pumpmap import MAX_UNIT, MIN_UNIT, PumpMap

DEFAULT_SCAN = range(1, 17)  # a full 1-247 scan costs 247 timeouts for silent ids
GATEWAY_NOBODY = (10, 11)  # exception codes a gateway answers for a unit that is not there


class ModbusLine:
    """The pumps on one Modbus connection; `pump(unit)` gives the driver for one of them."""

    def __init__(self, link: ModbusLink, pump_map: PumpMap) -> None:
        self.link = link
        self.map = pump_map
        self._drivers: dict[int, ModbusPumpDriver] = {}

    @property
    def clock(self) -> Clock:
        return self.link.clock

    def pump(self, address: int, *, watchdog_s: int | None = None,
             pump_map: PumpMap | None = None) -> ModbusPumpDriver:
        """The driver for unit id `address` (one per unit; `watchdog_s` arms the map's watchdog
        at `open()`, None leaves it as found; `pump_map` for a pump of another kind)."""
        if not MIN_UNIT <= address <= MAX_UNIT:
            raise PumpOutOfRange(f"unit id {address} is outside {MIN_UNIT}-{MAX_UNIT}")
        driver = self._drivers.get(address)
        if driver is None:
            driver = ModbusPumpDriver(self.link, address, pump_map or self.map,
                                      watchdog_s=watchdog_s)
            self._drivers[address] = driver
        return driver

    async def scan(self, addresses: Sequence[int] = DEFAULT_SCAN, *, timeout_s: float = 0.1,
                   attempts: int = 1) -> list[int]:
        """Unit ids that answer a read of the map's state register (an exception reply or
        garbled bytes still mean something is there; a gateway's "no path" or "target did
        not respond", exceptions 10 and 11, mean nothing is)."""
        state = self.map.operations.state
        reg = self.map.register(state.register or state.running or "")
        found = []
        for unit in addresses:
            if not MIN_UNIT <= unit <= MAX_UNIT:
                raise PumpOutOfRange(f"unit id {unit} is outside {MIN_UNIT}-{MAX_UNIT}")
            try:
                await self.link.read(unit, reg.kind, reg.address, len(reg.span),
                                     timeout_s=timeout_s, attempts=attempts)
            except PumpTimeout:
                continue
            except ModbusExceptionReply as exc:
                if exc.code in GATEWAY_NOBODY:
                    continue
            except PumpError:
                pass  # something answered, even if not as expected
            found.append(unit)
        return found

    async def close(self) -> None:
        """Stop every driver's heartbeat, then close the connection (the pumps are not
        touched: a pump whose watchdog is armed then stops itself)."""
        for driver in list(self._drivers.values()):
            await driver.stop_heartbeat()
        await self.link.close()

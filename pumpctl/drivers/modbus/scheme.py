"""Modbus pump URLs, registered in `pumpctl.drivers.open`'s scheme registry.

    modbus+tcp://127.0.0.1:502?unit=1&map=isco-d             Modbus TCP (MBAP framing)
    modbus+rtu:///dev/ttyUSB0?baud=38400&parity=N&map=vindum-vp  RTU on a serial port or pty
    modbus+rtu+tcp://127.0.0.1:4001?unit=1&map=vindum-vp     RTU frames through a device server

Query parameters: `map` (required: a name in configs/modbus, or a path to a lab's own map),
`unit` (1-247; default the map's), `word_order` (big | little: overrides the map, for a pump
whose float word order the map is unsure of), `timeout` (seconds per request, 0.01-60),
`retries` (extra attempts for reads, 0-10), `watchdog` (seconds to arm at open, only for a
map with a watchdog register; absent: leave it as found), and for RTU on a serial port `baud`
and `parity` (N, E, O; default the map's). Timeouts and retries are ours, never a library's
defaults (pymodbus's stall about 12 s on a dead device).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pumpctl.clock import Clock
from pumpctl.drivers.base import PumpDriver
from pumpctl.drivers.open import (
    PumpLine,
    PumpTarget,
    PumpUrlError,
    Scheme,
    connect_transport,
    line_key,
    register_scheme,
    transport_url,
)
from pumpctl.drivers.url_query import int_param, query_params, timeout_param

if TYPE_CHECKING:  # the map loader (pydantic) and pymodbus load when a Modbus URL is used
    from pumpctl.drivers.modbus.pumpmap import PumpMap

BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
PARITIES = ("N", "E", "O")
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_TCP_PORT = 502
_PARAMS = ("map", "unit", "word_order", "timeout", "retries", "watchdog", "baud", "parity")
_SERIAL_ONLY = ("baud", "parity")


@dataclass(frozen=True)
class ModbusTarget:
    """A checked Modbus URL (a `PumpTarget`)."""

    scheme: str  # modbus+tcp, modbus+rtu, modbus+rtu+tcp
    pump_map: PumpMap = field(compare=False, repr=False)
    path: str = ""
    host: str = ""
    port: int = 0
    address: int = 1  # the unit id
    baud: int = 19200
    parity: str = "N"
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = 1
    watchdog: int | None = None

    @property
    def map_name(self) -> str:
        return self.pump_map.name

    @property
    def framer(self) -> Literal["socket", "rtu"]:
        return "socket" if self.scheme == "modbus+tcp" else "rtu"

    @property
    def watchdog_s(self) -> int | None:
        return self.watchdog

    @property
    def watchdog_param(self) -> str:
        return "watchdog"

    @property
    def line_key(self) -> str:
        return line_key(path=self.path, host=self.host, port=self.port)

    @property
    def serial_url(self) -> str:
        """What the transport opens."""
        return transport_url(path=self.path, host=self.host, port=self.port)

    def with_address(self, address: int) -> ModbusTarget:
        return dataclasses.replace(self, address=address)


def _load(params: dict[str, str], url: str) -> PumpMap:
    from pumpctl.drivers.modbus.pumpmap import MapError, load_map, map_names

    name = params.get("map")
    if not name:
        raise PumpUrlError(f"pump URL {url!r} needs map=NAME (known: {', '.join(map_names())}; "
                           "or a path to a map file)")
    order = params.get("word_order")
    if order is not None and order not in ("big", "little"):
        raise PumpUrlError(f"word_order={order!r} in {url!r} must be big (high word first, "
                           "ABCD) or little (low word first, CDAB)")
    try:
        return load_map(name, word_order=order)
    except MapError as exc:
        if exc.entry == "map":  # no such map: say so as a URL problem
            raise PumpUrlError(f"map={name!r} in {url!r}: {exc.problem}") from None
        raise


def parse_modbus_url(url: str) -> ModbusTarget:
    """Check a `modbus+tcp://`, `modbus+rtu://` or `modbus+rtu+tcp://` URL (one-line errors
    naming the parameter, its value and the limit)."""
    from pumpctl.drivers.modbus.pumpmap import MAX_UNIT, MIN_UNIT

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    params = query_params(url, parts.query, _PARAMS)
    pump_map = _load(params, url)
    if scheme != "modbus+rtu":
        for key in _SERIAL_ONLY:
            if key in params:
                raise PumpUrlError(f"{key}={params[key]!r} in {url!r}: only for a serial port "
                                   "(modbus+rtu://); a TCP link has no " + key)
    unit = int_param("unit", params.get("unit", str(pump_map.unit)), MIN_UNIT, MAX_UNIT, url)
    retries = int_param("retries", params.get("retries", "1"), 0, 10, url)
    timeout = timeout_param(params, url, DEFAULT_TIMEOUT_S)
    watchdog = None
    if "watchdog" in params:
        op = pump_map.operations.watchdog
        if op is None:
            raise PumpUrlError(f"watchdog={params['watchdog']!r} in {url!r}: the "
                               f"{pump_map.name} map has no watchdog register")
        watchdog = int_param("watchdog", params["watchdog"], 0, op.max_s, url)
        if 0 < watchdog < op.min_s:
            raise PumpUrlError(f"watchdog={watchdog} in {url!r} must be 0 (off) or "
                               f"{op.min_s}-{op.max_s} s")
    target = ModbusTarget(scheme, pump_map, address=unit, timeout_s=timeout, retries=retries,
                          watchdog=watchdog)
    if scheme == "modbus+rtu":
        path = parts.netloc + parts.path
        if not path:
            raise PumpUrlError(f"pump URL {url!r} names no serial port, e.g. "
                               "modbus+rtu:///dev/ttyUSB0?map=vindum-vp")
        baud = int_param("baud", params.get("baud", str(pump_map.baud)), 1, 10**7, url)
        if baud not in BAUD_RATES:
            raise PumpUrlError(f"baud={baud} in {url!r} is not one of "
                               f"{', '.join(map(str, BAUD_RATES))}")
        parity = params.get("parity", pump_map.parity).upper()
        if parity not in PARITIES:
            raise PumpUrlError(f"parity={params.get('parity')!r} in {url!r} must be N, E or O")
        return dataclasses.replace(target, path=path, baud=baud, parity=parity)
    try:
        port = parts.port
    except ValueError:
        raise PumpUrlError(f"pump URL {url!r}: the port must be 1-65535") from None
    if not parts.hostname:
        raise PumpUrlError(f"pump URL {url!r} needs a host, e.g. {scheme}://127.0.0.1:502")
    if port is None and scheme == "modbus+rtu+tcp":
        raise PumpUrlError(f"pump URL {url!r} needs the device server's port, e.g. "
                           f"{scheme}://127.0.0.1:4001")
    return dataclasses.replace(target, host=parts.hostname, port=port or DEFAULT_TCP_PORT)


def _as_modbus(target: PumpTarget) -> ModbusTarget:
    assert isinstance(target, ModbusTarget), target
    return target


@contextlib.asynccontextmanager
async def connect(target: PumpTarget, clock: Clock | None = None) -> AsyncIterator[PumpLine]:
    """The `ModbusLine` on the port or socket `target` names; closed on exit (heartbeats
    first)."""
    from pumpctl.drivers.modbus.line import ModbusLine
    from pumpctl.drivers.modbus.link import ModbusLink

    t = _as_modbus(target)
    link = ModbusLink(t.framer, clock=clock, timeout_s=t.timeout_s, retries=t.retries)
    transport = await connect_transport(t.serial_url, t.baud, link, parity=t.parity)
    link.attach(transport)
    line = ModbusLine(link, t.pump_map)
    try:
        yield line
    finally:
        await line.close()


def _driver(line: PumpLine, target: PumpTarget) -> PumpDriver:
    """The target's pump, with the watchdog its URL asks for armed at `open()`."""
    from pumpctl.drivers.modbus.line import ModbusLine

    assert isinstance(line, ModbusLine)
    t = _as_modbus(target)
    return line.pump(t.address, watchdog_s=t.watchdog, pump_map=t.pump_map)


def register() -> None:
    register_scheme(Scheme("modbus+tcp", "modbus+tcp://127.0.0.1:502?unit=1&map=isco-d",
                           parse_modbus_url, connect, _driver))
    register_scheme(Scheme("modbus+rtu",
                           "modbus+rtu:///dev/ttyUSB0?baud=38400&parity=N&unit=1&map=vindum-vp",
                           parse_modbus_url, connect, _driver))
    register_scheme(Scheme("modbus+rtu+tcp", "modbus+rtu+tcp://127.0.0.1:4001?unit=1&map=vindum-vp",
                           parse_modbus_url, connect, _driver))

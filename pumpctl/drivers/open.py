"""Pump URLs to opened drivers.

    newera:///dev/ttyUSB0?address=0&baud=19200&safe=5   serial port (or a pty link path)
    newera:///tmp/ne                                    defaults: address 0, 19200 baud
    newera+tcp://127.0.0.1:4001?address=1               a serial device server on TCP
    /tmp/ne                                             a bare path means newera:// that path

Query parameters: `address` (0-99), `baud` (300, 1200, 2400, 9600, 19200), `safe` (watchdog
seconds 0-255 to set at open; absent: keep the pump's mode), `timeout` (seconds per request),
`retries` (extra attempts for reads). A serial port or pty is opened exclusively (one owner;
`pumpctl.drivers.serial_port`); TCP goes through pyserial-asyncio-fast (`socket://`). A
relative path is allowed as `newera:relative/path`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from pumpctl.clock import Clock
from pumpctl.drivers.base import PumpError
from pumpctl.drivers.newera.bus import DEFAULT_TIMEOUT_S, LineProtocol, NewEraBus
from pumpctl.drivers.newera.driver import NewEraDriver
from pumpctl.errors import UsageError

BAUD_RATES = (300, 1200, 2400, 9600, 19200)
DEFAULT_BAUD = 19200
_PARAMS = ("address", "baud", "safe", "timeout", "retries")


class PumpUrlError(UsageError):
    """A pump URL that cannot be understood."""


class PumpConnectionError(PumpError):
    """The port or socket named by a pump URL cannot be opened."""


@dataclass(frozen=True)
class PumpUrl:
    scheme: str  # "newera" or "newera+tcp"
    path: str = ""  # serial device or pty link
    host: str = ""
    port: int = 0
    address: int = 0
    baud: int = DEFAULT_BAUD
    safe_s: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = 1

    @property
    def serial_url(self) -> str:
        """What pyserial opens."""
        return f"socket://{self.host}:{self.port}" if self.scheme == "newera+tcp" else self.path


def _int_param(name: str, text: str, low: int, high: int, url: str) -> int:
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise PumpUrlError(f"{name}={text!r} in {url!r} must be an integer {low}-{high}")
    return int(text)


def parse_pump_url(url: str) -> PumpUrl:
    """Parse and check a pump URL; a plain path is taken as a New Era serial port."""
    if "://" not in url and not url.startswith("newera:"):
        url = f"newera://{url}" if url.startswith("/") else f"newera:{url}"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("newera", "newera+tcp"):
        raise PumpUrlError(f"pump URL {url!r}: scheme {parts.scheme!r} is not newera:// "
                           "or newera+tcp://")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PARAMS:
            raise PumpUrlError(f"pump URL {url!r}: unknown parameter {key!r} "
                               f"(known: {', '.join(_PARAMS)})")
        params[key] = value
    address = _int_param("address", params.get("address", "0"), 0, 99, url)
    baud = _int_param("baud", params.get("baud", str(DEFAULT_BAUD)), 1, 10**7, url)
    if baud not in BAUD_RATES:
        raise PumpUrlError(f"baud={baud} in {url!r} is not one of "
                           f"{', '.join(map(str, BAUD_RATES))}")
    safe = _int_param("safe", params["safe"], 0, 255, url) if "safe" in params else None
    retries = _int_param("retries", params.get("retries", "1"), 0, 10, url)
    try:
        timeout = float(params.get("timeout", DEFAULT_TIMEOUT_S))
    except ValueError:
        timeout = math.nan
    if not 0.01 <= timeout <= 60:
        raise PumpUrlError(f"timeout={params.get('timeout')!r} in {url!r} must be 0.01-60 s")
    if scheme == "newera+tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or not port:
            raise PumpUrlError(f"pump URL {url!r} needs host:port, e.g. "
                               "newera+tcp://127.0.0.1:4001")
        return PumpUrl(scheme, host=parts.hostname, port=port, address=address, baud=baud,
                       safe_s=safe, timeout_s=timeout, retries=retries)
    path = parts.netloc + parts.path
    if not path:
        raise PumpUrlError(f"pump URL {url!r} names no serial port, e.g. newera:///dev/ttyUSB0")
    return PumpUrl(scheme, path=path, address=address, baud=baud, safe_s=safe,
                   timeout_s=timeout, retries=retries)


async def connect_transport(target: PumpUrl,
                            protocol: asyncio.Protocol) -> asyncio.BaseTransport:
    """Open the port or socket (8N1, no flow control), with `protocol` receiving its bytes.

    A serial port or pty is opened exclusively and read through the event loop, with no
    limit on how many one process holds (`pumpctl.drivers.serial_port`); a TCP link goes
    through pyserial-asyncio-fast's socket transport."""
    import serial
    import serial_asyncio_fast

    from pumpctl.drivers.serial_port import open_serial

    try:
        if target.scheme != "newera+tcp":
            return await open_serial(target.path, target.baud, protocol)
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            asyncio.get_running_loop(), lambda: protocol, url=target.serial_url,
            baudrate=target.baud, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE, xonxoff=False, rtscts=False)
        return transport
    except (serial.SerialException, OSError, ValueError) as exc:
        where = target.serial_url
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise PumpConnectionError(f"cannot open {where}: {reason}") from None


@contextlib.asynccontextmanager
async def open_bus(url: str | PumpUrl, *, clock: Clock | None = None) -> AsyncIterator[NewEraBus]:
    """A `NewEraBus` on the port named by `url` (for several pumps on one line, or `scan`)."""
    target = url if isinstance(url, PumpUrl) else parse_pump_url(url)
    protocol = LineProtocol()
    transport = await connect_transport(target, protocol)
    assert isinstance(transport, asyncio.WriteTransport)
    bus = NewEraBus.from_transport(transport, protocol, clock=clock,
                                   timeout_s=target.timeout_s, retries=target.retries)
    try:
        yield bus
    finally:
        await bus.close()


@contextlib.asynccontextmanager
async def open_driver(url: str | PumpUrl, *,
                      clock: Clock | None = None) -> AsyncIterator[NewEraDriver]:
    """An opened driver for the pump named by `url`; closed (heartbeat stopped, port closed)
    on exit. The pump itself is not stopped here: that is the caller's decision."""
    target = url if isinstance(url, PumpUrl) else parse_pump_url(url)
    async with open_bus(target, clock=clock) as bus:
        driver = bus.pump(target.address, safe_s=target.safe_s)
        await driver.open()
        try:
            yield driver
        finally:
            await driver.close()

"""New Era pump URLs, registered in `pumpctl.drivers.open`'s scheme registry.

    newera:///dev/ttyUSB0?address=0&baud=19200&safe=5   serial port (or a pty link path)
    newera:///tmp/ne                                    defaults: address 0, 19200 baud
    newera+tcp://127.0.0.1:4001?address=1               a serial device server on TCP
    /tmp/ne                                             a plain path means newera:// that path

Query parameters: `address` (0-99), `baud` (300, 1200, 2400, 9600, 19200), `safe` (watchdog
seconds 0-255 to set at open; absent: keep the pump's mode), `timeout` (seconds per request),
`retries` (extra attempts for reads). Bytes go through pyserial-asyncio-fast in both cases
(`socket://` for TCP). A relative path is allowed as `newera:relative/path`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from pumpctl.clock import Clock
from pumpctl.drivers.base import PumpDriver
from pumpctl.drivers.newera import codec
from pumpctl.drivers.newera.bus import DEFAULT_TIMEOUT_S, LineProtocol
from pumpctl.drivers.newera.line import NewEraLine
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

BAUD_RATES = (300, 1200, 2400, 9600, 19200)
DEFAULT_BAUD = 19200
_PARAMS = ("address", "baud", "safe", "timeout", "retries")


@dataclass(frozen=True)
class NewEraTarget:
    """A checked New Era URL (a `PumpTarget`)."""

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
    def watchdog_s(self) -> int | None:
        return self.safe_s

    @property
    def watchdog_param(self) -> str:
        return "safe"

    @property
    def line_key(self) -> str:
        return line_key(path=self.path, host=self.host, port=self.port)

    @property
    def serial_url(self) -> str:
        """What the transport opens."""
        return transport_url(path=self.path, host=self.host, port=self.port)

    def with_address(self, address: int) -> NewEraTarget:
        return dataclasses.replace(self, address=address)


def parse_newera_url(url: str) -> NewEraTarget:
    """Check a `newera://` or `newera+tcp://` URL (one-line errors naming the parameter)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    params = query_params(url, parts.query, _PARAMS)
    address = int_param("address", params.get("address", "0"), 0, codec.MAX_ADDRESS, url)
    baud = int_param("baud", params.get("baud", str(DEFAULT_BAUD)), 1, 10**7, url)
    if baud not in BAUD_RATES:
        raise PumpUrlError(f"baud={baud} in {url!r} is not one of "
                           f"{', '.join(map(str, BAUD_RATES))}")
    safe = int_param("safe", params["safe"], 0, 255, url) if "safe" in params else None
    retries = int_param("retries", params.get("retries", "1"), 0, 10, url)
    timeout = timeout_param(params, url, DEFAULT_TIMEOUT_S)
    if scheme == "newera+tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or not port:
            raise PumpUrlError(f"pump URL {url!r} needs host:port, e.g. "
                               "newera+tcp://127.0.0.1:4001")
        return NewEraTarget(scheme, host=parts.hostname, port=port, address=address, baud=baud,
                            safe_s=safe, timeout_s=timeout, retries=retries)
    path = parts.netloc + parts.path
    if not path:
        raise PumpUrlError(f"pump URL {url!r} names no serial port, e.g. newera:///dev/ttyUSB0")
    return NewEraTarget(scheme, path=path, address=address, baud=baud, safe_s=safe,
                        timeout_s=timeout, retries=retries)


def _as_newera(target: PumpTarget) -> NewEraTarget:
    assert isinstance(target, NewEraTarget), target
    return target


@contextlib.asynccontextmanager
async def connect(target: PumpTarget, clock: Clock | None = None) -> AsyncIterator[PumpLine]:
    """The `NewEraLine` on the port or socket `target` names; closed on exit (heartbeats
    first)."""
    t = _as_newera(target)
    protocol = LineProtocol()
    transport = await connect_transport(t.serial_url, t.baud, protocol)
    line = NewEraLine.from_transport(transport, protocol, clock=clock, timeout_s=t.timeout_s,
                                     retries=t.retries)
    try:
        yield line
    finally:
        await line.close()


def _driver(line: PumpLine, target: PumpTarget) -> PumpDriver:
    """The target's pump, with the watchdog its URL asks for armed at `open()`."""
    assert isinstance(line, NewEraLine)
    t = _as_newera(target)
    return line.pump(t.address, safe_s=t.safe_s)


def register() -> None:
    register_scheme(Scheme("newera", "newera:///dev/ttyUSB0?baud=19200&safe=5",
                           parse_newera_url, connect, _driver))
    register_scheme(Scheme("newera+tcp", "newera+tcp://127.0.0.1:4001?address=1",
                           parse_newera_url, connect, _driver))

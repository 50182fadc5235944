"""Balance URLs to opened balances.

    mtsics:///dev/ttyUSB1?baud=9600        serial port (or a simulator's pty link), 8N1
    mtsics+tcp://192.168.0.20:4001         a balance's Ethernet port or a serial device server

Query parameters: `baud` (1200-115200 standard rates; default 9600), `timeout` (seconds for
an immediate command, 0.05-60), `stable_timeout` (seconds for S, Z and T, 0.1-600). A serial
port is opened exclusively through `pumpctl.drivers.serial_port`, TCP through
pyserial-asyncio-fast (`socket://`), as for the New Era pumps.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import serial
import serial_asyncio_fast

from pumpctl.drivers.balance.driver import (
    DEFAULT_TIMEOUT_S,
    STABLE_TIMEOUT_S,
    LineReceiver,
    MtSicsBalance,
)
from pumpctl.drivers.balance.mtsics import BalanceError
from pumpctl.drivers.serial_port import PortBusy, open_serial
from pumpctl.errors import UsageError

BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
DEFAULT_BAUD = 9600
_PARAMS = ("baud", "timeout", "stable_timeout")
SCHEMES = ("mtsics", "mtsics+tcp")


class BalanceUrlError(UsageError):
    """A balance URL that cannot be understood."""


@dataclass(frozen=True)
class BalanceUrl:
    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0
    baud: int = DEFAULT_BAUD
    timeout_s: float = DEFAULT_TIMEOUT_S
    stable_timeout_s: float = STABLE_TIMEOUT_S

    @property
    def serial_url(self) -> str:
        return f"socket://{self.host}:{self.port}" if self.scheme == "mtsics+tcp" else self.path


def _seconds(params: dict[str, str], name: str, default: float, low: float, high: float,
             url: str) -> float:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise BalanceUrlError(f"{name}={text!r} in {url!r} must be {low:g}-{high:g} s")
    return value


def parse_balance_url(url: str) -> BalanceUrl:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BalanceUrlError(f"balance URL {url!r}: scheme {parts.scheme!r} is not mtsics:// "
                              "or mtsics+tcp://")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PARAMS:
            raise BalanceUrlError(f"balance URL {url!r}: unknown parameter {key!r} "
                                  f"(known: {', '.join(_PARAMS)})")
        params[key] = value
    baud_text = params.get("baud", str(DEFAULT_BAUD))
    if not baud_text.isdigit() or int(baud_text) not in BAUD_RATES:
        raise BalanceUrlError(f"baud={baud_text!r} in {url!r} is not one of "
                              f"{', '.join(map(str, BAUD_RATES))}")
    timeout = _seconds(params, "timeout", DEFAULT_TIMEOUT_S, 0.05, 60, url)
    stable = _seconds(params, "stable_timeout", STABLE_TIMEOUT_S, 0.1, 600, url)
    if scheme == "mtsics+tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or not port:
            raise BalanceUrlError(f"balance URL {url!r} needs host:port, e.g. "
                                  "mtsics+tcp://127.0.0.1:4002")
        return BalanceUrl(scheme, host=parts.hostname, port=port, baud=int(baud_text),
                          timeout_s=timeout, stable_timeout_s=stable)
    path = parts.netloc + parts.path
    if not path:
        raise BalanceUrlError(f"balance URL {url!r} names no serial port, e.g. "
                              "mtsics:///dev/ttyUSB1")
    return BalanceUrl(scheme, path=path, baud=int(baud_text), timeout_s=timeout,
                      stable_timeout_s=stable)


@contextlib.asynccontextmanager
async def open_balance(url: str | BalanceUrl) -> AsyncIterator[MtSicsBalance]:
    """An opened balance on the port or socket named by `url`; closed on exit."""
    target = url if isinstance(url, BalanceUrl) else parse_balance_url(url)
    receiver = LineReceiver()
    try:
        if target.scheme == "mtsics":  # exclusive, through the event loop (no select())
            transport: asyncio.BaseTransport = await open_serial(target.path, target.baud,
                                                                 receiver)
        else:
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                asyncio.get_running_loop(), lambda: receiver, url=target.serial_url,
                baudrate=target.baud, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE, xonxoff=False, rtscts=False)
    except PortBusy as exc:
        raise BalanceError(str(exc)) from None
    except (serial.SerialException, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise BalanceError(f"cannot open balance at {target.serial_url}: {reason}") from None
    balance = MtSicsBalance(transport, receiver, timeout_s=target.timeout_s,
                            stable_timeout_s=target.stable_timeout_s, where=target.serial_url)
    try:
        yield balance
    finally:
        await balance.close()

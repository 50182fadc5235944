"""Pump URLs to opened drivers, through a registry of URL schemes, and simulated pumps by kind.

A protocol package registers its own schemes: `pumpctl.drivers.newera` registers
`newera://` (a serial port or pty path) and `newera+tcp://` (a serial device server), and a
bare path means `newera://` that path. Everything that opens a pump goes through here: the
bench CLI (`pumpctl pump --port URL`), `pumpctl run --pump URL`, the HIL tests and benches.
So does `pumpctl run --sim`: a simulator kind registers how to build an embedded simulated
pump with its driver (and a delivered-volume sensor, when the simulator has one).

The packages that register are listed in `PROTOCOL_PACKAGES` and `SIMULATOR_PACKAGES` and
imported on first use (each has a `register()`), so a command that opens no pump pays for
none of them. An unknown scheme or kind is a one-line error listing the known ones.
A serial port or pty is opened exclusively (one owner; `pumpctl.drivers.serial_port`); TCP
goes through pyserial-asyncio-fast (`socket://`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from pumpctl.clock import Clock
from pumpctl.drivers.base import PumpDriver, PumpError
from pumpctl.drivers.sensors import VolumeSensor
from pumpctl.drivers.url_query import PumpUrlError as PumpUrlError  # re-exported
from pumpctl.errors import UsageError

# Modules with a `register()` that registers their schemes / simulator kinds.
PROTOCOL_PACKAGES = ("pumpctl.drivers.newera.scheme", "pumpctl.drivers.modbus.scheme")
SIMULATOR_PACKAGES = ("simulators.kinds",)
BARE_PATH_SCHEME = "newera"  # what a URL without a scheme (a plain path) is
DEFAULT_SIMULATOR = "newera"  # what `--sim` builds unless told otherwise


class PumpConnectionError(PumpError):
    """The port or socket named by a pump URL cannot be opened."""


class PumpTarget(Protocol):
    """A checked pump URL: which pump on which line, and what to do when opening it."""

    @property
    def scheme(self) -> str: ...

    @property
    def address(self) -> int:
        """The pump's address (New Era) or unit id (Modbus) on its line."""
        ...

    @property
    def watchdog_s(self) -> int | None:
        """The pump's own watchdog to arm at open, as the URL asks (None: leave it as found)."""
        ...

    @property
    def watchdog_param(self) -> str:
        """The URL parameter that sets that watchdog (`safe` for New Era), for messages."""
        ...

    @property
    def line_key(self) -> str:
        """What identifies the line itself, whichever URL names it: a device's real path, or
        `tcp:HOST:PORT`. Two runs on one line key would talk over each other."""
        ...

    def with_address(self, address: int) -> PumpTarget: ...


class PumpLine(Protocol):
    """A line (port, socket) and the pumps on it."""

    def pump(self, address: int) -> PumpDriver:
        """The (not yet opened) driver of the pump at `address`."""
        ...

    async def scan(self, addresses: Sequence[int], *, timeout_s: float,
                   attempts: int = 1) -> list[int]:
        """The addresses in `addresses` that answer."""
        ...

    async def close(self) -> None:
        """Stop whatever runs for the drivers (heartbeats) and close the line; the pumps
        themselves are left as they are."""
        ...


@dataclass(frozen=True)
class Scheme:
    """How one URL scheme is parsed and opened."""

    name: str  # "newera+tcp"
    example: str  # shown in errors: "newera+tcp://127.0.0.1:4001?address=1"
    parse: Callable[[str], PumpTarget]  # check the URL; PumpUrlError naming what is wrong
    connect: Callable[[PumpTarget, Clock | None], AbstractAsyncContextManager[PumpLine]]
    # The target's own pump on its line, as the URL asks (e.g. with its watchdog to arm).
    driver: Callable[[PumpLine, PumpTarget], PumpDriver] = \
        lambda line, target: line.pump(target.address)


@dataclass
class EmbeddedPump:
    """A simulated pump in this process, with its driver opened."""

    driver: PumpDriver
    sensor: VolumeSensor | None  # what actually left the line, from the simulator's physics
    # The same figure as a plain reading, for another simulated device in this process (a
    # simulated balance under the line); None if the kind has no physics.
    delivered_ml: Callable[[], float] | None = None


@dataclass(frozen=True)
class SimulatedSetup:
    """What a run asks of an embedded simulated pump."""

    clock: Clock
    diameter_mm: float
    faults: Sequence[str] = ()  # fault texts in the kind's own syntax (e.g. occlusion@10m)
    capacity_ml: float = 60.0  # the syringe's capacity
    contents_ml: float | None = None  # liquid in it at the start (None: full)
    physics: object = None  # the kind's own physics settings (None: its defaults)


@dataclass(frozen=True)
class SimulatorKind:
    """How one kind of simulated pump is built into a run (`pumpctl run --sim`)."""

    name: str  # "newera"
    check_faults: Callable[[Sequence[str]], None]  # UsageError naming a bad fault text
    start: Callable[[SimulatedSetup], AbstractAsyncContextManager[EmbeddedPump]]


_SCHEMES: dict[str, Scheme] = {}
_KINDS: dict[str, SimulatorKind] = {}
_loaded: set[str] = set()


def register_scheme(scheme: Scheme) -> None:
    """Called by a protocol package's `register()`; a scheme is registered once."""
    name = scheme.name.lower()
    if name in _SCHEMES and _SCHEMES[name] is not scheme:
        raise ValueError(f"pump URL scheme {name!r} is already registered")
    _SCHEMES[name] = scheme


def register_simulator(kind: SimulatorKind) -> None:
    """Called by a simulator package's `register()`."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"simulator kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind


def _load(packages: Sequence[str]) -> None:
    for name in packages:
        if name not in _loaded:
            importlib.import_module(name).register()
            _loaded.add(name)


def schemes() -> dict[str, Scheme]:
    """Every registered scheme, by name."""
    _load(PROTOCOL_PACKAGES)
    return dict(_SCHEMES)


def simulator_kinds() -> dict[str, SimulatorKind]:
    """Every registered simulator kind, by name."""
    _load(SIMULATOR_PACKAGES)
    return dict(_KINDS)


def parse_pump_url(url: str) -> PumpTarget:
    """Check a pump URL with its scheme's parser; a plain path is `newera://` that path."""
    known = schemes()
    text = url.strip()
    if "://" not in text and ":" not in text.split("/", 1)[0]:
        text = f"{BARE_PATH_SCHEME}://{text}" if text.startswith("/") else \
            f"{BARE_PATH_SCHEME}:{text}"
    scheme_name = urlsplit(text).scheme.lower()
    scheme = known.get(scheme_name)
    if scheme is None:
        names = ", ".join(f"{n}://" for n in sorted(known))
        raise PumpUrlError(f"pump URL {url!r}: unknown scheme {scheme_name!r} (known: {names}; "
                           f"a plain path means {BARE_PATH_SCHEME}://)")
    return scheme.parse(text)


def simulator_kind(name: str | None = None) -> SimulatorKind:
    """A registered simulator kind (None: the default), or a one-line error listing the
    known ones."""
    kinds = simulator_kinds()
    name = DEFAULT_SIMULATOR if name is None else name
    kind = kinds.get(name.strip().lower())
    if kind is None:
        raise UsageError(f"simulator kind {name!r} is not known (known: "
                         f"{', '.join(sorted(kinds))})")
    return kind


def _target(url: str | PumpTarget) -> PumpTarget:
    return parse_pump_url(url) if isinstance(url, str) else url


@contextlib.asynccontextmanager
async def open_line(url: str | PumpTarget, *,
                    clock: Clock | None = None) -> AsyncIterator[PumpLine]:
    """The line named by `url` (for several pumps on one line, or `scan`); closed on exit."""
    target = _target(url)
    async with schemes()[target.scheme].connect(target, clock) as line:
        yield line


@contextlib.asynccontextmanager
async def open_driver(url: str | PumpTarget, *,
                      clock: Clock | None = None) -> AsyncIterator[PumpDriver]:
    """An opened driver for the pump named by `url`; closed (heartbeat stopped, line closed)
    on exit. The pump itself is not stopped here: that is the caller's decision."""
    target = _target(url)
    scheme = schemes()[target.scheme]
    async with scheme.connect(target, clock) as line:
        driver = scheme.driver(line, target)
        await driver.open()
        try:
            yield driver
        finally:
            await driver.close()


def line_key(*, path: str = "", host: str = "", port: int = 0) -> str:
    """`PumpTarget.line_key` of a line on a serial device or pty (`path`) or a TCP socket:
    the device's real path (a pty link and its pty are one line), or `tcp:ADDRESS:PORT`. One
    rule for every scheme, so URLs of two protocols naming one line are seen as one line."""
    return os.path.realpath(path) if path else f"tcp:{_host_address(host)}:{port}"


def _host_address(host: str) -> str:
    """The address a TCP host name connects to, so that `localhost`, `127.1` and `127.0.0.1`
    name one line (two runs on one pump must see each other whatever they call it). An IPv4
    address is preferred where a name has both; a name that does not resolve stays a name
    (opening it fails later with its own error)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return host.lower()
    addresses = [str(info[4][0]) for info in infos]
    ipv4 = [a for a in addresses if ":" not in a]
    return (ipv4 or addresses or [host.lower()])[0]


def transport_url(*, path: str = "", host: str = "", port: int = 0) -> str:
    """What `connect_transport` opens for a serial device or pty (`path`) or a TCP socket."""
    return path or f"socket://{host}:{port}"


async def connect_transport(serial_url: str, baud: int, protocol: asyncio.Protocol, *,
                            parity: str = "N") -> asyncio.WriteTransport:
    """Open a serial port or pty, or `socket://host:port`, 8 data bits, `parity` (N by
    default), one stop bit, no flow control, with `protocol` receiving its bytes; one-line
    error if it cannot.

    A serial port or pty is opened exclusively and read through the event loop, with no limit
    on how many one process holds (`pumpctl.drivers.serial_port`: a second opener is told who
    holds it); a TCP link goes through pyserial-asyncio-fast's socket transport."""
    import serial
    import serial_asyncio_fast

    from pumpctl.drivers.serial_port import open_serial

    try:
        if not serial_url.startswith("socket://"):
            return await open_serial(serial_url, baud, protocol, parity=parity)
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            asyncio.get_running_loop(), lambda: protocol, url=serial_url,
            baudrate=baud, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE, xonxoff=False, rtscts=False)
    except (serial.SerialException, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise PumpConnectionError(f"cannot open {serial_url}: {reason}") from None
    assert isinstance(transport, asyncio.WriteTransport)
    return transport

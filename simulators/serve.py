"""Putting a simulator's line where a client can reach it: in memory, on a pty, on TCP.

- `memory_transport(sim, protocol)`: an asyncio transport wired straight to the simulator (no
  OS resources, no per-byte cost); `memory_bus(sim)` puts a `NewEraBus` on one, and
  `memory_link(sim)` gives an asyncio stream pair on one instead; `memory_line(sim)` is the
  `NewEraLine` (pumps and their drivers) on a memory bus.
- `PtyServer(sim, link)`: a pseudo-terminal with a symlink to its slave, so anything that
  opens a serial port by path (pyserial, nesp-lib, minicom) talks to the simulator.
- `TcpServer(sim, host, port)`: a raw TCP port, as a serial device server would offer.
- `embedded_newera(clock, ...)`: a simulator plus an opened `NewEraDriver` on a memory bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import tty
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pumpctl.clock import Clock
from pumpctl.drivers.newera.bus import DEFAULT_TIMEOUT_S, LineProtocol, NewEraBus
from pumpctl.drivers.newera.driver import NewEraDriver
from pumpctl.drivers.newera.line import NewEraLine
from pumpctl.errors import PumpctlError
from simulators.faults import Fault
from simulators.newera import NewEraSimulator, SimPumpConfig
from simulators.physics import PhysicsParams

log = logging.getLogger(__name__)


class SimulatorServeError(PumpctlError):
    """The simulator cannot be served where it was asked to (link path, port)."""

    exit_code = 2


# ---------------------------------------------------------------------------------------------
# In memory


class _PipeTransport(asyncio.Transport):
    """The client's end of an in-memory pipe to a simulator.

    A line without a baud rate takes no time, so the simulator handles a chunk inside the
    client's `write()`, and its reply reaches the client's protocol before `write()` returns
    (what a client awaits is then already there: no event-loop turns per request, which is
    most of a virtual-time run's cost). Two things a real port never does are kept out: a
    chunk written from inside a delivery (a client answering from `data_received`) waits for
    the next loop turn rather than re-entering the simulator, and so does everything written
    after it, to keep the order; and a simulator error goes to the loop's exception handler,
    not into the client's `write()`.
    """

    def __init__(self, sim: NewEraSimulator, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._sim = sim
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._busy = False
        self._queued: list[bytes] = []
        self._token = sim.connect(self._to_client)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if self._busy or self._queued:
            self._queued.append(bytes(data))
            if len(self._queued) == 1:
                self._loop.call_soon(self._drain)
            return
        self._to_sim(bytes(data))

    def _drain(self) -> None:
        while self._queued:
            self._to_sim(self._queued[0])
            del self._queued[0]

    def _to_sim(self, data: bytes) -> None:
        self._busy = True
        try:
            self._sim.receive(data)
        except Exception as exc:
            self._loop.call_exception_handler({
                "message": "simulator failed on bytes from a memory-link client",
                "exception": exc})
        finally:
            self._busy = False

    def _to_client(self, data: bytes) -> None:
        """The simulator's bytes; writes the client makes meanwhile are queued."""
        if self._closing:
            return
        busy, self._busy = self._busy, True
        try:
            self._protocol.data_received(data)
        finally:
            self._busy = busy

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._sim.disconnect(self._token)
            self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def memory_transport(sim: NewEraSimulator, protocol: asyncio.Protocol) -> asyncio.Transport:
    """The client end of an in-process byte pipe to `sim` (started if it is not yet): what the
    client writes is handled by the simulator at once (see `_PipeTransport`), and what the
    simulator sends is handed to `protocol.data_received` as it is sent, as a port's bytes
    would be (replies paced by a baud rate or delayed by a fault come later, on timers)."""
    transport = _PipeTransport(sim, protocol)
    protocol.connection_made(transport)
    sim.ensure_started()
    return transport


def memory_link(sim: NewEraSimulator) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An asyncio stream pair on a memory transport to `sim`."""
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport = memory_transport(sim, protocol)
    return reader, asyncio.StreamWriter(transport, protocol, reader, asyncio.get_running_loop())


def memory_bus(sim: NewEraSimulator, *, clock: Clock | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = 1) -> NewEraBus:
    """A `NewEraBus` on a memory transport to `sim`, reading replies as they are sent."""
    protocol = LineProtocol()
    transport = memory_transport(sim, protocol)
    return NewEraBus.from_transport(transport, protocol, clock=clock, timeout_s=timeout_s,
                                    retries=retries)


def memory_line(sim: NewEraSimulator, *, clock: Clock | None = None,
                timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = 1) -> NewEraLine:
    """The `NewEraLine` on a memory bus to `sim`: `pump(address)` gives a driver."""
    return NewEraLine(memory_bus(sim, clock=clock, timeout_s=timeout_s, retries=retries))


# ---------------------------------------------------------------------------------------------
# Pseudo-terminal


class PtyServer:
    """Serve `sim` on a new pty, reachable through the symlink `link_path`.

    Linux pty rules honoured here (see the facts file): the slave is raw (CRC bytes may be
    CR, XON or XOFF); with no client holding the slave open, reading the master fails with
    EIO and select keeps calling it readable, so we stop watching and look again every
    `poll_s`; nothing is written while no client is attached (the kernel would queue it for
    the next opener, which a real line never does); writes never block.
    """

    def __init__(self, sim: NewEraSimulator, link_path: str | Path, *,
                 poll_s: float = 0.05) -> None:
        self.sim = sim
        self.link_path = Path(link_path)
        self.poll_s = poll_s
        self.pty_name = ""
        self.client_attached = False
        self.dropped_bytes = 0
        self._master = -1
        self._token: int | None = None
        self._poll: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> PtyServer:
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            self.pty_name = os.ttyname(slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        try:
            self._make_link()
        except BaseException:
            os.close(master)
            raise
        self._token = self.sim.connect(self._write)
        self.sim.ensure_started()
        self._loop.add_reader(master, self._on_readable)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._master < 0:
            return
        if self._token is not None:
            self.sim.disconnect(self._token)
            self._token = None
        if self._poll is not None:
            self._poll.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self._master)
        os.close(self._master)
        self._master = -1
        with contextlib.suppress(OSError):
            if os.readlink(self.link_path) == self.pty_name:
                self.link_path.unlink()

    def _make_link(self) -> None:
        link = self.link_path
        if link.is_symlink():
            link.unlink()  # stale: left by a simulator that did not exit cleanly
        elif link.exists():
            raise SimulatorServeError(f"link path {link} exists and is not a symlink; "
                                      "refusing to replace it")
        if not link.parent.is_dir():
            raise SimulatorServeError(f"link path {link}: directory {link.parent} does not exist")
        os.symlink(self.pty_name, link)

    def _on_readable(self) -> None:
        self._read_some(watching=True)

    def _read_some(self, *, watching: bool) -> None:
        assert self._loop is not None
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            data = b""  # a client is there, it just has nothing to say
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            # No client holds the slave open: stop watching, look again a little later.
            self.client_attached = False
            if watching:
                self._loop.remove_reader(self._master)
            self._poll = self._loop.call_later(self.poll_s, self._read_some_polled)
            return
        self.client_attached = True
        if not watching:
            self._loop.add_reader(self._master, self._on_readable)
        if data:
            self.sim.receive(data)

    def _read_some_polled(self) -> None:
        self._poll = None
        if self._master >= 0:
            self._read_some(watching=False)

    def _write(self, frame: bytes) -> None:
        if not self.client_attached or self._master < 0:
            self.dropped_bytes += len(frame)
            return
        try:
            written = os.write(self._master, frame)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self.client_attached = False
            written = 0
        self.dropped_bytes += len(frame) - written


# ---------------------------------------------------------------------------------------------
# TCP


class TcpServer:
    """Serve `sim` on a TCP port (0: any free one, read `.port` after entering)."""

    def __init__(self, sim: NewEraSimulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpServer:
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise SimulatorServeError(f"cannot listen on {self.host}:{self.port}: "
                                      f"{exc.strerror or exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        self.sim.ensure_started()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        token = self.sim.connect(writer.write)
        try:
            while data := await reader.read(4096):
                self.sim.receive(data)
        except ConnectionError:
            pass
        finally:
            self.sim.disconnect(token)
            self._writers.discard(writer)
            writer.close()


# ---------------------------------------------------------------------------------------------
# Simulator + driver in one process


@contextlib.asynccontextmanager
async def embedded_newera(clock: Clock, *, diameter_mm: float = 26.59,
                          faults: Sequence[Fault] = (), safe_s: int = 0,
                          syringe_volume_ml: float = 60.0, capacity_ml: float = 60.0,
                          baud: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                          physics: PhysicsParams | None = None,
                          ) -> AsyncIterator[tuple[NewEraSimulator, NewEraDriver]]:
    """An in-process simulated pump and an opened `NewEraDriver` talking to it in memory.

    What `pumpctl run --sim` and the CI scenarios use. With `safe_s` > 0 the watchdog is armed
    and the driver's heartbeat runs. Faults are scheduled relative to the simulator's start.
    """
    config = SimPumpConfig(diameter_mm=diameter_mm, capacity_ml=capacity_ml,
                           syringe_volume_ml=syringe_volume_ml,
                           physics=physics if physics is not None else PhysicsParams())
    sim = NewEraSimulator(clock, [config], baud=baud)
    async with sim:
        for fault in faults:
            sim.inject(fault)
        line = memory_line(sim, clock=clock, timeout_s=timeout_s)
        driver = line.pump(0, safe_s=safe_s if safe_s else None)
        try:
            await driver.open()
            yield sim, driver
        finally:
            await line.close()

"""The simulator kinds the HIL scenarios run against: one entry per protocol.

A scenario takes `sim_kind` (parametrised by plugin.py) and runs once per entry of `KINDS`, so
adding a protocol to every scenario is adding one `SimKind` here: how to build its simulator
for some pumps, where its first pump answers, how to open the product's driver for its
pumps over memory, a pty or TCP, and how `pumpctl` serves it on a pty link for the scenarios
that need two processes. Everything else a scenario touches is protocol-free: the
`SimulatedPump` behind an address (physics model, faults, alarms) and the `PumpDriver` API.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from pumpctl.clock import Clock
from pumpctl.drivers.base import PumpDriver
from pumpctl.drivers.open import PumpLine
from simulators.line import SimLine
from simulators.pump import PumpSetup

Link = Literal["memory", "pty", "tcp"]
LINKS: tuple[Link, ...] = ("memory", "pty", "tcp")

# (simulator, clock, link, a directory for a pty link, how many pumps, watchdog seconds)
OpenDrivers = Callable[[SimLine, Clock, Link, Path, int, int | None],
                       AbstractAsyncContextManager[list[PumpDriver]]]


@dataclass(frozen=True)
class SimKind:
    name: str
    first_address: int  # where the first pump answers; the others follow it
    build: Callable[[Clock, Sequence[PumpSetup]], SimLine]  # not started yet
    open_drivers: OpenDrivers  # opened drivers for the first N pumps, closed on exit
    serve_args: Callable[[Path], list[str]]  # `pumpctl ...` serving one pump on a pty link
    url: Callable[[Path, int | None, float | None], str]  # (link, watchdog s, timeout s)
    # What the pump itself can do to stop: a host watchdog (it stops when its host falls
    # silent) and a volume target (it stops at the planned total). Scenarios that rely on
    # one skip kinds without it, saying so.
    watchdog: bool = True
    volume_cap: bool = True
    clears_counters: bool = True  # else a driver keeps its own zero (ISCO)
    shows_power_reset: bool = True  # else a power cut is seen as the counter going back
    alarm_kinds: frozenset[str] | None = None  # the alarms it can name (None: every kind)
    # A kind that runs only the in-process scenarios (virtual time, in memory), to keep CI's
    # time: the wall-clock ones (separate processes, real ptys and sockets) are the
    # framing's and the CLI's, already run on another kind of the same protocol.
    reduced: bool = False

    def names(self, alarm: str) -> str:
        """The alarm kind the pump reports for `alarm`: itself, or `unknown` when the pump
        has no word for it (a catch-all error register)."""
        return alarm if self.alarm_kinds is None or alarm in self.alarm_kinds else "unknown"

    def needs_watchdog(self, what: str) -> None:
        """Skip a scenario that relies on the pump's own watchdog, on a kind without one."""
        if not self.watchdog:
            import pytest

            pytest.skip(f"{self.name} has no host watchdog (docs/modbus.md): {what}")

    def address(self, index: int) -> int:
        return self.first_address + index

    def __str__(self) -> str:
        return self.name


# ---- New Era ---------------------------------------------------------------------------------

def _newera_build(clock: Clock, setups: Sequence[PumpSetup]) -> SimLine:
    from simulators.newera import NewEraSimulator, SimPumpConfig

    return NewEraSimulator(clock, [
        SimPumpConfig(address=i, diameter_mm=s.diameter_mm, capacity_ml=s.capacity_ml,
                      syringe_volume_ml=s.syringe_volume_ml, safe_s=s.watchdog_s,
                      physics=s.physics) for i, s in enumerate(setups)])


def _newera_url(link: Path, watchdog_s: int | None, timeout_s: float | None) -> str:
    params = {"safe": watchdog_s, "timeout": timeout_s}
    query = urlencode({k: f"{v:g}" for k, v in params.items() if v is not None})
    return f"newera://{link}" + (f"?{query}" if query else "")


@contextlib.asynccontextmanager
async def served_line(sim: SimLine, clock: Clock, link: Link, directory: Path, *,
                      memory_line: Callable[..., PumpLine], pty_url: Callable[[Path], str],
                      tcp_url: Callable[[int], str]) -> AsyncIterator[PumpLine]:
    """The line a driver reaches the simulator `sim` by: in memory (`memory_line`), or
    served on a pty or on TCP and opened through the URL registry (`pty_url`, `tcp_url`)."""
    from pumpctl.drivers.open import open_line
    from simulators.serve import PtyServer, TcpServer

    async with contextlib.AsyncExitStack() as stack:
        if link == "memory":
            line = memory_line(sim, clock=clock)
            stack.push_async_callback(line.close)
            yield line
            return
        if link == "pty":
            await stack.enter_async_context(PtyServer(sim, directory / "pty"))
            url = pty_url(directory / "pty")
        else:
            server = await stack.enter_async_context(TcpServer(sim))
            url = tcp_url(server.port)
        yield await stack.enter_async_context(open_line(url, clock=clock))


@contextlib.asynccontextmanager
async def opened(drivers: list[PumpDriver]) -> AsyncIterator[list[PumpDriver]]:
    """`drivers`, each opened, and closed again on the way out."""
    async with contextlib.AsyncExitStack() as stack:
        for driver in drivers:
            await driver.open()
            stack.push_async_callback(driver.close)
        yield drivers


@contextlib.asynccontextmanager
async def _newera_drivers(sim: SimLine, clock: Clock, link: Link, directory: Path, count: int,
                          watchdog_s: int | None) -> AsyncIterator[list[PumpDriver]]:
    from pumpctl.drivers.newera.line import NewEraLine
    from simulators.newera import NewEraSimulator
    from simulators.newera.embedded import memory_line

    assert isinstance(sim, NewEraSimulator)
    async with served_line(sim, clock, link, directory, memory_line=memory_line,
                           pty_url=lambda path: f"newera://{path}",
                           tcp_url=lambda port: f"newera+tcp://127.0.0.1:{port}") as line:
        assert isinstance(line, NewEraLine)
        async with opened([line.pump(address, safe_s=watchdog_s)
                           for address in range(count)]) as drivers:
            yield drivers


NEWERA = SimKind(
    name="newera", first_address=0, build=_newera_build, open_drivers=_newera_drivers,
    serve_args=lambda link: ["sim", "newera", "--link", str(link)], url=_newera_url)


# ---- Modbus: one kind per register map ---------------------------------------------------------

def modbus_kind(map_name: str, *, reduced: bool = False) -> SimKind:
    """The Modbus simulator serving `map_name` (configs/modbus), with the Modbus driver: in
    memory with the map's own framing, RTU on a pty, MBAP on TCP."""
    from pumpctl.drivers.modbus.pumpmap import load_map

    pump_map = load_map(map_name)
    first = pump_map.line.unit or 1
    has_watchdog = pump_map.operations.watchdog is not None

    def build(clock: Clock, setups: Sequence[PumpSetup]) -> SimLine:
        from simulators.modbus import ModbusSimulator, UnitConfig

        return ModbusSimulator(clock, pump_map, [UnitConfig(first + i, setup)
                                                 for i, setup in enumerate(setups)])

    def url(link: Path, watchdog_s: int | None, timeout_s: float | None) -> str:
        params: dict[str, str] = {"map": map_name}
        if watchdog_s is not None and has_watchdog:
            params["watchdog"] = f"{watchdog_s:g}"
        if timeout_s is not None:
            params["timeout"] = f"{timeout_s:g}"
        return f"modbus+rtu://{link}?{urlencode(params)}"

    @contextlib.asynccontextmanager
    async def open_drivers(sim: SimLine, clock: Clock, link: Link, directory: Path, count: int,
                           watchdog_s: int | None) -> AsyncIterator[list[PumpDriver]]:
        from pumpctl.drivers.modbus.line import ModbusLine
        from simulators.modbus import ModbusSimulator
        from simulators.modbus.embedded import memory_line

        assert isinstance(sim, ModbusSimulator)
        if link != "memory":  # RTU on a serial line (a pty), MBAP on TCP
            sim.use_framer("rtu" if link == "pty" else "socket")
        async with served_line(
                sim, clock, link, directory, memory_line=memory_line,
                pty_url=lambda path: url(path, None, None),
                tcp_url=lambda port: f"modbus+tcp://127.0.0.1:{port}?map={map_name}") as line:
            assert isinstance(line, ModbusLine)
            armed = watchdog_s if has_watchdog else None
            async with opened([line.pump(first + i, watchdog_s=armed)
                               for i in range(count)]) as drivers:
                yield drivers

    return SimKind(name=map_name, first_address=first, build=build, open_drivers=open_drivers,
                   serve_args=lambda link: ["sim", "modbus", "--map", map_name, "--link",
                                            str(link)],
                   url=url, watchdog=has_watchdog,
                   volume_cap=pump_map.operations.volume_target is not None,
                   clears_counters=pump_map.operations.clear_counters is not None,
                   shows_power_reset=any(a.kind.value == "power_reset"
                                         for a in pump_map.operations.alarms),
                   alarm_kinds=frozenset(a.kind.value for a in pump_map.operations.alarms),
                   reduced=reduced)


# Every scenario runs on each kind here: New Era and the ISCO map in full, the other Modbus
# maps in-process only (`reduced`; CI's time). Adding a map is adding its name.
MODBUS_FULL = ("isco-d",)
MODBUS_REDUCED = ("generic", "vindum-vp")
MODBUS_MAPS = MODBUS_FULL + MODBUS_REDUCED
KINDS: dict[str, SimKind] = {kind.name: kind for kind in (
    NEWERA, *(modbus_kind(name) for name in MODBUS_FULL),
    *(modbus_kind(name, reduced=True) for name in MODBUS_REDUCED))}

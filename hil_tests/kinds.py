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
async def _newera_drivers(sim: SimLine, clock: Clock, link: Link, directory: Path, count: int,
                          watchdog_s: int | None) -> AsyncIterator[list[PumpDriver]]:
    from pumpctl.drivers.newera.line import NewEraLine
    from pumpctl.drivers.open import open_line
    from simulators.newera import NewEraSimulator
    from simulators.newera.embedded import memory_line
    from simulators.serve import PtyServer, TcpServer

    assert isinstance(sim, NewEraSimulator)
    async with contextlib.AsyncExitStack() as stack:
        if link == "memory":
            line = memory_line(sim, clock=clock)
            stack.push_async_callback(line.close)
        else:
            if link == "pty":
                await stack.enter_async_context(PtyServer(sim, directory / "ne-pty"))
                url = f"newera://{directory / 'ne-pty'}"
            else:
                server = await stack.enter_async_context(TcpServer(sim))
                url = f"newera+tcp://127.0.0.1:{server.port}"
            opened = await stack.enter_async_context(open_line(url, clock=clock))
            assert isinstance(opened, NewEraLine)
            line = opened
        drivers = [line.pump(address, safe_s=watchdog_s) for address in range(count)]
        for driver in drivers:
            await driver.open()
            stack.push_async_callback(driver.close)
        yield list(drivers)


NEWERA = SimKind(
    name="newera", first_address=0, build=_newera_build, open_drivers=_newera_drivers,
    serve_args=lambda link: ["sim", "newera", "--link", str(link)], url=_newera_url)


KINDS: dict[str, SimKind] = {kind.name: kind for kind in (NEWERA,)}

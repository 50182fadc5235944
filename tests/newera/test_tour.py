"""Every driver command, once over the in-memory link and once over a real pty (real time)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pumpctl.clock import LoopClock, wait_until
from pumpctl.drivers.base import (
    AlarmKind,
    Direction,
    PumpAlarmError,
    PumpNotApplicable,
    PumpOutOfRange,
    PumpState,
)
from pumpctl.drivers.newera.bus import NewEraBus
from pumpctl.drivers.newera.driver import NewEraDriver
from pumpctl.drivers.newera.line import NewEraLine
from pumpctl.drivers.open import open_line
from simulators.newera import NewEraSimulator
from simulators.newera.embedded import memory_line
from simulators.serve import PtyServer, memory_link

pytestmark = pytest.mark.realtime  # separate processes or threads on the wall clock


@contextlib.asynccontextmanager
async def line(transport: str, tmp_path: Path,
               ) -> AsyncIterator[tuple[NewEraSimulator, NewEraLine]]:
    clock = LoopClock()
    sim = NewEraSimulator(clock, 1)
    async with sim:
        if transport in ("memory", "streams"):
            # "streams": the same pipe read through an asyncio stream pair and a reader task
            bus = memory_line(sim, clock=clock) if transport == "memory" else \
                NewEraLine(NewEraBus.from_streams(*memory_link(sim), clock=clock))
            try:
                yield sim, bus
            finally:
                await bus.close()
        else:
            async with PtyServer(sim, tmp_path / "ne"), open_line(str(tmp_path / "ne")) as bus:
                yield sim, bus


@pytest.mark.parametrize("transport", ["memory", "streams", "pty"])
async def test_every_command(transport: str, tmp_path: Path) -> None:
    async with line(transport, tmp_path) as (sim, bus):
        d: NewEraDriver = bus.pump(0)
        await d.open()  # SAF (safe-framed), VER
        assert d.identity is not None and d.identity.model == "NE-1000"
        assert await d.set_diameter(26.59) == 26.59  # DIA n, DIA
        assert await d.set_volume_limit(2.5) == 2.5  # VOL n, VOL
        assert await d.set_direction(Direction.INFUSE) is Direction.INFUSE  # DIR INF, DIR
        assert await d.set_rate(1500) == 1500  # RAT n MH, RAT
        await d.run()  # RUN
        assert await wait_until(lambda: sim.pump(0).model.infused_ml > 0.002, bus.clock)
        with pytest.raises(PumpNotApplicable):
            await d.set_direction(Direction.WITHDRAW)  # ?NA while pumping
        await d.pause()  # STP -> P
        assert (await d.status()).state is PumpState.PAUSED  # DIS, RAT
        await d.stop()  # STP -> S
        infused, withdrawn = await d.dispensed()  # DIS
        assert infused > 0.002 and withdrawn == 0
        await d.clear_counters()  # CLD INF, CLD WDR
        assert await d.dispensed() == (0.0, 0.0)
        with pytest.raises(PumpOutOfRange):
            await d.set_rate(1700)  # ?OOR above the 26.59 mm maximum
        await d.set_watchdog(30)  # SAF 30 safe-framed, answered safe-framed
        assert await d.watchdog() == 30 and sim.unit(0).safe_mode
        sim.unit(0).raise_alarm("S")  # auto-sent in safe mode
        assert await wait_until(lambda: d.alarm is not None, bus.clock)
        assert d.alarm is not None and d.alarm.kind is AlarmKind.STALL
        with pytest.raises(PumpAlarmError):
            await d.run()
        await d.acknowledge_alarm()
        await d.set_watchdog(0)  # back to basic framing
        await d.set_address(5)  # *ADR (every pump on a line takes it: one pump here)
        assert sim.pump(5) is sim.pumps[0] and bus.pump(5) is d
        assert await d.diameter() == 26.59

"""A Modbus pump's own watchdog, armed, verified and kept fed (mixed into the driver).

With a map's watchdog register set to n > 0 the pump stops itself when no valid request has
come for n seconds: that is what stops it if this process dies. While the driver lives, a
heartbeat makes sure the pump hears from it at least every third of n seconds (any request
on its unit counts; a read of its state is sent only when the line has been quiet).
"""

from __future__ import annotations

import asyncio
import contextlib

from pumpctl.drivers.base import PumpError, PumpNotApplicable, PumpOutOfRange
from pumpctl.drivers.heartbeat import keep_fed
from pumpctl.drivers.modbus.link import ModbusLink
from pumpctl.drivers.modbus.pumpmap import PumpMap


class Watchdog:
    """`set_watchdog` and the heartbeat (mixed into `ModbusPumpDriver`)."""

    link: ModbusLink
    unit: int
    map: PumpMap
    watchdog_s: int
    _heartbeat: asyncio.Task[None] | None
    heartbeats: int
    heartbeat_error: PumpError | None

    async def _set(self, name: str, value: float | int | bool, *, readback: str | None = None,
                   what: str | None = None) -> float | int | bool:
        raise NotImplementedError

    async def _read(self, names: tuple[str, ...] | list[str]
                    ) -> dict[str, float | int | bool]:
        raise NotImplementedError

    async def set_watchdog(self, seconds: int) -> None:
        op = self.map.operations.watchdog
        if op is None:
            raise PumpNotApplicable(f"the {self.map.name} map has no watchdog: nothing stops "
                                    "this pump if pumpctl dies")
        if not (isinstance(seconds, int) and (seconds == 0 or op.min_s <= seconds <= op.max_s)):
            raise PumpOutOfRange(f"watchdog {seconds!r} s is outside 0 (off) or "
                                 f"{max(1, op.min_s)}-{op.max_s} s")
        self.watchdog_s = int(await self._set(op.register, seconds, what="watchdog"))
        if self.watchdog_s:
            self._start_heartbeat()
        else:
            await self.stop_heartbeat()

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(), name=f"modbus-heartbeat-{self.unit}")

    async def stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _beat(self) -> None:
        """The pump hears from us at least every third of its watchdog time: any request
        counts, a read of its state is sent only when the line has been quiet."""
        state = self.map.operations.state
        probe = state.register or state.running
        assert probe is not None
        await keep_fed(self, watchdog_s=lambda: self.watchdog_s,
                       last_sent_at=lambda: self.link.last_sent_at.get(self.unit, 0.0),
                       clock=self.link.clock, probe=lambda: self._read((probe,)),
                       label=f"unit {self.unit}")


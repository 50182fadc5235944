"""Safe mode: a New Era pump's own watchdog, armed, verified and kept fed.

With `SAF n` (n > 0) the pump stops itself, with alarm `T`, when no valid safe-framed packet
has come for n seconds: that is what stops it if this process dies. While the driver lives,
a heartbeat makes sure the pump hears from it at least every third of n seconds (any request
counts; a status query is sent only when the line has been quiet). This is the part of
`NewEraDriver` that does it; the driver mixes it in.
"""

from __future__ import annotations

import asyncio
import contextlib

from pumpctl.drivers.base import (
    Alarm,
    PumpAlarmError,
    PumpChecksumError,
    PumpError,
    PumpOutOfRange,
    PumpProtocolError,
    PumpTimeout,
    ReadbackMismatch,
)
from pumpctl.drivers.heartbeat import keep_fed
from pumpctl.drivers.newera import codec
from pumpctl.drivers.newera.bus import Framing, NewEraBus
from pumpctl.drivers.newera.codec import Reply

MAX_WATCHDOG_S = 255
_RETRYABLE = (PumpTimeout, PumpChecksumError, PumpProtocolError)


class SafeMode:
    """Arming, verifying and feeding the watchdog (mixed into `NewEraDriver`)."""

    bus: NewEraBus
    address: int
    alarm: Alarm | None
    safe_s: int  # the watchdog as last read back (0: basic mode)
    _safe: bool  # whether requests go safe-framed
    _heartbeat: asyncio.Task[None] | None
    heartbeats: int
    heartbeat_error: PumpError | None
    retried: int  # requests repeated because a reply was lost, late or corrupt

    def _note(self, reply: Reply) -> None:
        raise NotImplementedError

    async def _send(self, command: str, data: str = "", *, framing: Framing | None = None,
                    reply_address: int | None = None) -> Reply:
        raise NotImplementedError

    @staticmethod
    def _parse_int(reply: Reply, what: str) -> int:
        if not reply.data.isdigit():
            raise PumpProtocolError(f"{what} reply {reply.data!r} is not an integer")
        return int(reply.data)

    async def set_watchdog(self, seconds: int) -> None:
        if not (isinstance(seconds, int) and 0 <= seconds <= MAX_WATCHDOG_S):
            raise PumpOutOfRange(f"watchdog {seconds!r} s is outside 0-{MAX_WATCHDOG_S} s")
        # Allowed with a sticky alarm: arming the pump's own safety net is never refused.
        # Always safe-framed: a pump in either mode takes it, and answers in the new mode.
        reply: Reply | None = None
        for _ in range(2):  # an alarm answer means "not executed, alarm now acknowledged"
            try:
                reply = await self.bus.transact(self.address, "SAF", str(seconds), safe=True,
                                                framing=Framing.EITHER)
            except _RETRYABLE:
                reply = None  # settled by the read-back below
                break
            self._note(reply)
            if reply.alarm is None:
                break
        if reply is not None:
            if reply.alarm is not None:
                raise PumpAlarmError(reply.alarm)
            error = codec.error_for(reply, f"SAF{seconds}")
            if error is not None:
                raise error
        self._safe = seconds > 0 if reply is None else reply.safe
        read = await self._verify_watchdog()
        if read != seconds:
            raise ReadbackMismatch("watchdog", f"{seconds} s", f"{read} s")
        self.safe_s = read
        if read:
            self._start_heartbeat()
        else:
            await self.stop_heartbeat()

    async def _verify_watchdog(self) -> int:
        """Safe-framed `SAF` query (either mode answers it), retried like any read."""
        last: PumpError | None = None
        for attempt in range(1 + self.bus.retries):
            if attempt and last is not None:
                self.retried += 1  # the previous reply was lost, late or corrupt
            try:
                reply = await self.bus.transact(self.address, "SAF", safe=True,
                                                framing=Framing.EITHER)
            except _RETRYABLE as exc:
                last = exc
                continue
            self._note(reply)
            if reply.alarm is not None:
                continue  # acknowledged now; ask again
            self._safe = reply.safe
            return self._parse_int(reply, "SAF")
        raise last or PumpAlarmError(self.alarm or codec.alarm_from_letter("?"))

    # ---- heartbeat ------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(), name=f"newera-heartbeat-{self.address}")

    async def stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _beat(self) -> None:
        """Make sure the pump hears a valid packet at least every third of its watchdog time:
        any request counts, a status query is sent only when the line has been quiet."""
        await keep_fed(self, watchdog_s=lambda: self.safe_s,
                       last_sent_at=lambda: self.bus.last_sent_at.get(self.address, 0.0),
                       clock=self.bus.clock, probe=lambda: self._send(""),
                       label=f"pump {self.address}")

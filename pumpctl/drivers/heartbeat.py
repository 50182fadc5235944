"""Keeping a pump's own communication watchdog fed while this process lives.

A pump with a watchdog (New Era safe mode, a Modbus map's watchdog register) stops itself when
no valid request arrives for its watchdog time. The driver must then make sure it hears from
us at least every third of that time: any request counts, so a probe (a cheap status read) is
sent only when the line has been quiet for that long. The protocols differ only in the probe
and in where they note the last request sent; the loop is this one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from pumpctl.clock import Clock
from pumpctl.drivers.base import PumpError

log = logging.getLogger(__name__)


class HeartbeatCounts(Protocol):
    """Where a driver shows how its heartbeat goes (benches and tests read these)."""

    heartbeats: int
    heartbeat_error: PumpError | None


async def keep_fed(counts: HeartbeatCounts, *, watchdog_s: Callable[[], float],
                   last_sent_at: Callable[[], float], clock: Clock,
                   probe: Callable[[], Awaitable[object]], label: str) -> None:
    """Probe the pump whenever the line to it has been quiet for a third of `watchdog_s()`,
    until that is 0. A failed probe is noted and tried again a period later: the run's own
    polls decide what a silent pump means, not the heartbeat."""
    while (seconds := watchdog_s()) > 0:
        period = seconds / 3.0
        wait = last_sent_at() + period - clock.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            continue
        try:
            await probe()
            counts.heartbeats += 1
            counts.heartbeat_error = None
        except PumpError as exc:
            counts.heartbeat_error = exc
            log.info("heartbeat to %s failed: %s", label, exc)
            await asyncio.sleep(period)

"""Several pumps in one process: one controller task per channel.

Channels are independent by default (a fleet of simulated pumps in CI). For paired syringes,
e.g. an active drug and its placebo in a blinded study, `stop_all_on_fault=True` stops every
other channel as soon as one ends faulted, so the two arms never diverge unnoticed.

Channel i of N starts i/N of `start_spread_s` (default: one poll interval) after the first.
Each controller polls on a schedule anchored at its own start, so channels started in the
same instant would all poll in the same instant, every interval: with 500 pumps that burst
kept the loop busy for a quarter of a second and made the last polls of each burst that
late (the bench's fleet row). Spread over one interval, the same work arrives evenly. A
large fleet may want a longer spread: each start is a burst of setup requests, and 500 at
once delayed the first polls of the early starters past the no-status limit. A plan starts
at most `start_spread_s` later than it would have, and a stop asked for meanwhile is
honoured before the pump is started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pumpctl.run.controller import InfusionController, RunResult


async def run_channels(controllers: Sequence[InfusionController], *,
                       stop_all_on_fault: bool = False,
                       start_spread_s: float | None = None) -> list[RunResult]:
    """Run every controller concurrently; results in the order given.

    Each controller always stops its own pump, whatever happens to the others. If this
    coroutine is cancelled, every controller is cancelled and each stops its pump first.
    """
    names = [c.channel for c in controllers]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be unique, got {names}")
    spread = (min((c.poll_s for c in controllers), default=0.0) if start_spread_s is None
              else max(0.0, start_spread_s))
    tasks = {asyncio.create_task(_run_after(c, spread * i / len(controllers)),
                                 name=f"controller:{c.channel}"): c
             for i, c in enumerate(controllers)}
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not stop_all_on_fault:
                continue
            for t in done:
                if t.exception() is None and t.result().outcome == "faulted":
                    for other in pending:
                        tasks[other].request_stop(
                            f"linked channel {tasks[t].channel} faulted", "controller")
    except asyncio.CancelledError:
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise
    return [t.result() for t in tasks]


async def _run_after(controller: InfusionController, delay_s: float) -> RunResult:
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    return await controller.run()


def request_stop_all(controllers: Sequence[InfusionController], reason: str, sender: str) -> None:
    for c in controllers:
        c.request_stop(reason, sender)

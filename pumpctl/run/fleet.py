"""Several pumps in one process: one controller task per channel.

Channels are independent by default (a fleet of simulated pumps in CI). For paired syringes,
e.g. an active drug and its placebo in a blinded study, `stop_all_on_fault=True` stops every
other channel as soon as one ends faulted, so the two arms never diverge unnoticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pumpctl.run.controller import InfusionController, RunResult


async def run_channels(controllers: Sequence[InfusionController], *,
                       stop_all_on_fault: bool = False) -> list[RunResult]:
    """Run every controller concurrently; results in the order given.

    Each controller always stops its own pump, whatever happens to the others. If this
    coroutine is cancelled, every controller is cancelled and each stops its pump first.
    """
    names = [c.channel for c in controllers]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be unique, got {names}")
    tasks = {asyncio.create_task(c.run(), name=f"controller:{c.channel}"): c for c in controllers}
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


def request_stop_all(controllers: Sequence[InfusionController], reason: str, sender: str) -> None:
    for c in controllers:
        c.request_stop(reason, sender)

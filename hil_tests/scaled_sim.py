"""A New Era simulator on a pty whose clock runs N times faster than real time.

`pumpctl sim newera` serves in real time; a subprocess scenario that must finish a 40-minute
plan quickly runs this host and `pumpctl run --speed N` at the same N, so both processes share
one (accelerated) time scale. Usage: `python -m hil_tests.scaled_sim LINK SPEED`.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from pumpctl.clock import LoopClock
from pumpctl.timescale import run_at_speed
from simulators.newera import NewEraSimulator, SimPumpConfig
from simulators.serve import PtyServer


async def serve(link: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with NewEraSimulator(LoopClock(), [SimPumpConfig()]) as sim, PtyServer(sim, link):
        print(f"ready {link}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    run_at_speed(serve(sys.argv[1]), float(sys.argv[2]))

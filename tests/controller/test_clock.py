"""The virtual-time loop: time jumps when idle, and outside events still get in while busy."""

from __future__ import annotations

import asyncio
import os
import signal

from pumpctl.clock import LoopClock, VirtualTimeLoop, run


def test_idle_loop_jumps_to_the_next_timer() -> None:
    async def main() -> float:
        clock = LoopClock()
        start = clock.monotonic()
        await asyncio.sleep(3600)
        return clock.monotonic() - start

    assert run(main(), virtual=True) == 3600


def test_signal_is_handled_while_the_loop_never_goes_idle() -> None:
    """A busy virtual loop skips most of its selector calls; a signal (delivered through the
    loop's wake-up pipe) must still be handled within a bounded number of turns."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, got.set)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            turns = 0
            while not got.is_set() and turns < 1000:
                await asyncio.sleep(0)  # always something ready: the loop never idles
                turns += 1
            return turns
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)

    turns = run(main(), virtual=True)
    assert turns < 1000, "signal never handled while the loop was busy"
    assert turns <= 2 * 32


def test_thread_callback_runs_while_busy() -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        await loop.run_in_executor(None, loop.call_soon_threadsafe, done.set)
        for _ in range(100):
            if done.is_set():
                return True
            await asyncio.sleep(0)
        return done.is_set()

    assert run(main(), virtual=True)

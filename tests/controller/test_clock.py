"""The virtual-time loop: time jumps when idle, and outside events still get in while busy."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal

import pytest

from pumpctl.clock import LoopClock, SharedDeadline, VirtualTimeLoop, run


def test_idle_loop_jumps_to_the_next_timer() -> None:
    async def main() -> float:
        clock = LoopClock()
        start = clock.monotonic()
        await asyncio.sleep(3600)
        return clock.monotonic() - start

    assert run(main(), virtual=True) == 3600


def test_one_clock_reads_each_loop_it_is_used_on() -> None:
    """The clock keeps the loop it last read, but never past that loop's run: a later loop,
    or another loop running meanwhile in another thread, is read instead."""
    clock = LoopClock()

    async def elapsed(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return clock.monotonic()

    async def main() -> tuple[float, float]:
        here = await elapsed(1000.0)
        # A second virtual loop, in a worker thread, while this one still runs at t=1000.
        there = await asyncio.get_running_loop().run_in_executor(
            None, lambda: run(elapsed(7.0), virtual=True))
        return here, there

    assert run(main(), virtual=True) == (1000.0, 7.0)
    assert run(elapsed(5.0), virtual=True) == 5.0  # a new loop starts from zero again

    async def wall_step() -> float:
        before = clock.wall()
        await asyncio.sleep(60.0)
        return clock.wall() - before

    assert run(wall_step(), virtual=True) == pytest.approx(60.0)


def test_clock_given_a_loop_reads_it_even_outside_a_run() -> None:
    loop = VirtualTimeLoop()
    try:
        clock = LoopClock(loop)
        loop.advance(42.0)
        assert clock.monotonic() == 42.0  # no loop is running here

        async def inside() -> float:
            await asyncio.sleep(8.0)
            return clock.monotonic()

        assert loop.run_until_complete(inside()) == 50.0
    finally:
        loop.close()


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


async def _call_under(watch: SharedDeadline, window: float, duration: float) -> float:
    """Run a `duration`-second call under `watch` with `window`; returns when it ended."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as scope:
        watch.enter(scope, loop.time() + window)
        try:
            await asyncio.sleep(duration)
        finally:
            watch.leave()
    return loop.time()


def test_shared_deadline_expires_a_call_exactly_at_its_deadline() -> None:
    async def main() -> tuple[float, float]:
        watch = SharedDeadline()
        start = asyncio.get_running_loop().time()
        await _call_under(watch, 5.0, 1.0)  # arms the shared timer for start + 5
        await asyncio.sleep(3.0)
        # Starts at start + 4 with its own deadline at start + 9; the timer armed for
        # start + 5 must re-arm for it, not cut it short.
        second = asyncio.get_running_loop().time()
        try:
            await _call_under(watch, 5.0, 100.0)
        except TimeoutError:
            ended = asyncio.get_running_loop().time()
        else:
            raise AssertionError("a hung call was not timed out")
        watch.close()
        return second - start, ended - second

    began, lasted = run(main(), virtual=True)
    assert began == 4.0
    assert lasted == 5.0


def test_shared_deadline_lets_calls_within_their_window_finish() -> None:
    async def main() -> list[float]:
        watch = SharedDeadline()
        ends = []
        for _ in range(20):  # each takes 4 s of a 5 s window, back to back
            ends.append(await _call_under(watch, 5.0, 4.0))
        watch.close()
        return ends

    ends = run(main(), virtual=True)
    assert [round(b - a, 9) for a, b in itertools.pairwise(ends)] == [4.0] * 19


def test_shared_deadline_keeps_an_outside_cancel_a_cancel() -> None:
    async def main() -> str:
        watch = SharedDeadline()
        task = asyncio.ensure_future(_call_under(watch, 5.0, 100.0))
        await asyncio.sleep(2.0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            outcome = "cancelled"
        except TimeoutError:
            outcome = "timed out"
        else:
            outcome = "finished"
        await asyncio.sleep(10.0)  # the shared timer firing later must not disturb anything
        watch.close()
        return outcome

    assert run(main(), virtual=True) == "cancelled"


def test_shared_deadline_earlier_than_the_armed_timer_is_kept() -> None:
    async def main() -> float:
        watch = SharedDeadline()
        await _call_under(watch, 10.0, 0.5)  # timer armed 10 s out
        start = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await _call_under(watch, 2.0, 100.0)  # a shorter window: must not wait for it
        watch.close()
        return asyncio.get_running_loop().time() - start

    assert run(main(), virtual=True) == 2.0

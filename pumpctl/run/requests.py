"""Requests that come from outside a run's timeline, and the one wait the timeline makes.

Stop, pause and resume arrive from the operator, a signal handler or a remote command at any
moment; they are queued here and acted on by the controller at its next step, in order, with
a stop taking precedence over everything queued with it. The controller's wait (until the
next poll or segment boundary) ends early as soon as a request arrives.
"""

from __future__ import annotations

import asyncio


class StopRequested(Exception):
    """An operator, signal or remote stop: unwind the run to its stop sequence."""


class RunRequests:
    """The queue of (kind, reason, sender) requests; loop-safe, not thread-safe."""

    def __init__(self) -> None:
        self._queue: list[tuple[str, str, str]] = []
        self._waiter: asyncio.Future[None] | None = None
        self.stop_by: tuple[str, str] | None = None  # (reason, sender) of the stop acted on

    def add(self, kind: str, reason: str, sender: str) -> None:
        self._queue.append((kind, str(reason), str(sender)))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __bool__(self) -> bool:
        return bool(self._queue)

    def take_stop(self) -> tuple[str, str] | None:
        """The first queued stop's (reason, sender), dropping everything queued with it."""
        stop = next(((reason, sender) for kind, reason, sender in self._queue if kind == "stop"),
                    None)
        if stop is not None:
            self._queue.clear()
            self.stop_by = stop
        return stop

    def pop(self) -> tuple[str, str, str] | None:
        """The oldest request, or None."""
        return self._queue.pop(0) if self._queue else None

    async def wait(self, seconds: float, *, due_s: float) -> None:
        """Sleep `seconds`, or less if a request arrives; not at all if one is queued or the
        time is within `due_s`.

        One future and one timer per wait: this is the controller's hot path, and in virtual
        time it runs thousands of times a second.
        """
        if self._queue or seconds <= due_s:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waiter)
        self._waiter = waiter
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

"""Real and virtual time.

Everything time-dependent (controller, safety monitor, simulators) reads time through a
`Clock`, which is backed by the running asyncio loop. In production that loop is an ordinary
one. In CI it is a `VirtualTimeLoop`: whenever every task is waiting and no I/O is ready, the
loop jumps straight to the next timer instead of sleeping, so a 40-minute infusion finishes in
a fraction of a second while the code under test still uses plain `asyncio.sleep`,
`asyncio.timeout` and `wait_for`.
"""

from __future__ import annotations

import asyncio
import inspect
import selectors
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

_get_ident = threading.get_ident


class Clock(Protocol):
    """What time-dependent code needs: a monotonic reading, a wall reading, and sleep."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (virtual seconds under a virtual loop)."""
        ...

    def wall(self) -> float:
        """Unix epoch seconds consistent with `monotonic` (for journal timestamps)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """A clock read from the running event loop, so it is virtual exactly when the loop is.

    The wall reading is anchored once at construction: wall = epoch_at_start + elapsed loop
    time. Under a virtual loop that gives plausible timestamps that advance with the
    simulation rather than with the host.

    `loop`: always read that loop. Without it the clock reads whichever loop is running when
    it is asked, so one clock object may serve several `run()` calls one after another.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        # The loop the last reading came from, kept while it runs in this thread. The clock is
        # read about twenty times per poll (controller, driver, simulator, journal), and each
        # lookup of the running loop costs a getpid() system call (asyncio's fork check).
        self._bound: asyncio.BaseEventLoop | None = (
            loop if isinstance(loop, asyncio.BaseEventLoop) else None)
        self._epoch0 = time.time()
        self._mono0: float | None = None

    def monotonic(self) -> float:
        loop = self._bound
        # An asyncio loop's `_thread_id` is the thread running it (None once it has stopped):
        # equal to ours means it is this thread's running loop, the one a lookup would find.
        if loop is not None and loop._thread_id == _get_ident():  # type: ignore[attr-defined]
            return loop.time()
        return self._find_loop().time()

    def _find_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None:
            return self._loop
        loop = asyncio.get_running_loop()
        # Only asyncio's own loops are known to keep `_thread_id`; others are looked up again.
        self._bound = loop if isinstance(loop, asyncio.BaseEventLoop) else None
        return loop

    def wall(self) -> float:
        now = self.monotonic()
        if self._mono0 is None:
            self._mono0 = now
        return self._epoch0 + (now - self._mono0)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told to (`now` is assignable): for unit tests and
    benchmarks of code that reads a `Clock` outside any event loop. `sleep` advances it."""

    def __init__(self, now: float = 0.0, *, epoch: float = 1_700_000_000.0) -> None:
        self.now = now
        self.epoch = epoch

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.epoch + self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class DelegatingSelector(selectors.BaseSelector):
    """A selector that hands everything to the loop's real one; subclasses change `select`.

    Both time-bending loops (virtual time here, `--speed N` in `pumpctl.timescale`) keep real
    I/O registration and only reinterpret how long a `select` may wait.
    """

    def __init__(self, real: selectors.BaseSelector) -> None:
        self._real = real

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return self._real.select(timeout)


class _VirtualSelector(DelegatingSelector):
    """Wraps the loop's real selector: never blocks on a timeout, advances virtual time instead.

    Real file descriptors (a pty, a socket) still work: they are polled without waiting, and,
    when any are registered besides the loop's own wake-up pipe, given a short real grace
    period first, because bytes written to a pty reach the other end a moment later.

    While callbacks are ready (timeout 0) and only the wake-up pipe is registered, there is
    no I/O to find, and the `epoll_wait` call per loop turn is a large share of a virtual-time
    run's cost; the pipe is then looked at only every `_BUSY_POLL_EVERY` busy turns (and on
    every idle turn, before time advances), so a signal or a thread's `call_soon_threadsafe`
    still gets through without waiting for the loop to go idle.
    """

    _BUSY_POLL_EVERY = 32

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        super().__init__(real)
        self._loop = loop
        self._registered = len(real.get_map())
        self._busy_turns = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        self._registered += 1
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        self._registered -= 1
        return key

    def _has_external_fds(self) -> bool:
        return self._registered > 1  # the loop's self-pipe is always registered

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout == 0 and self._registered <= 1:
            self._busy_turns += 1
            if self._busy_turns < self._BUSY_POLL_EVERY:
                return []
        self._busy_turns = 0
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if self._has_external_fds():
            grace = self._loop.io_grace_s
            if timeout is not None:
                grace = min(grace, timeout)
            held = self._loop.earliest_reply_deadline()
            if held is not None and (timeout is None or self._loop.time() + timeout >= held):
                # This jump would reach the deadline of a reply still on its way through the
                # kernel (a pty, a socket): on a busy host that can take far longer than the
                # grace, and the request would time out in virtual time while its answer is
                # in flight. Give real I/O a real chance first.
                grace = self._loop.reply_wait_s
            events = self._real.select(grace)
            if events:
                return events
        if timeout is None:
            # Nothing scheduled at all: only outside I/O (another thread or process) can wake us.
            return self._real.select(None)
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when everything is waiting."""

    # Real seconds a reply awaited over a real descriptor gets before virtual time may reach
    # its deadline (see `expect_reply`); a silent device costs this much wall time per timeout.
    reply_wait_s = 0.5

    def __init__(self, io_grace_s: float = 0.002) -> None:
        super().__init__()
        self._virtual_now = 0.0
        self.io_grace_s = io_grace_s
        self._reply_deadlines: dict[int, float] = {}
        self._next_token = 0
        real: selectors.BaseSelector = self._selector  # type: ignore[has-type]
        self._selector = _VirtualSelector(real, self)

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._virtual_now += seconds

    def expect_reply(self, deadline: float) -> int:
        """A request went out over a real descriptor and its reply is due by loop time
        `deadline`: virtual time will not jump to that deadline before real I/O has had
        `reply_wait_s` to arrive. Returns a token for `reply_settled`."""
        self._next_token += 1
        self._reply_deadlines[self._next_token] = deadline
        return self._next_token

    def reply_settled(self, token: int) -> None:
        self._reply_deadlines.pop(token, None)

    def earliest_reply_deadline(self) -> float | None:
        deadlines = self._reply_deadlines
        return min(deadlines.values()) if deadlines else None


class SharedDeadline:
    """Deadlines for a repeated short await (a status call every poll) on one shared timer.

    Use it with an `asyncio.timeout(None)` scope, one call at a time:

        async with asyncio.timeout(None) as scope:
            watch.enter(scope, loop.time() + window)
            try:
                await call()
            finally:
                watch.leave()

    The scope is asyncio's own, so expiry and outside cancellation are handled exactly as by
    `asyncio.timeout(window)` (TimeoutError when the deadline passes; a cancellation from
    elsewhere stays a cancellation). What differs is the timer: instead of one per call,
    one is kept armed at the earliest deadline it is needed for. When it fires it expires
    the call still running past its deadline, or re-arms for the deadline of the call in
    progress, or (no call in progress) lapses until the next `enter`. At one call per second
    and a 5 s window, that is one timer per five calls, where each timer costs a heap push
    and pop on the event loop.
    """

    _DUE_S = 1e-6  # a deadline this close is due (loop timers run within clock resolution)

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._scope: asyncio.Timeout | None = None
        self._deadline = 0.0

    def enter(self, scope: asyncio.Timeout, deadline: float) -> None:
        """`scope` (entered, with no deadline of its own) must end by loop time `deadline`."""
        self._scope, self._deadline = scope, deadline
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires first, and then expires this call or re-arms for it
            timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(deadline, self._fire)

    def leave(self) -> None:
        """The call ended (in any way) before its scope is left."""
        self._scope = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        scope = self._scope
        if scope is None:
            return
        loop = asyncio.get_running_loop()
        if self._deadline <= loop.time() + self._DUE_S:
            scope.reschedule(self._deadline)  # asyncio expires the scope: TimeoutError
        else:
            self._timer = loop.call_at(self._deadline, self._fire)


def run(main: Coroutine[Any, Any, T], *, virtual: bool = False, io_grace_s: float = 0.002) -> T:
    """Run `main` to completion on a real or a virtual-time event loop."""
    if not virtual:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(io_grace_s=io_grace_s)) as runner:
        return runner.run(main)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    clock: Clock,
    interval: float = 0.05,
    timeout: float = 10.0,
) -> bool:
    """Poll `predicate()` on `clock` until true or `timeout` elapses; returns the last result.

    For conditions that have no event to wait on (a pump's physical state, a broker's view);
    under a virtual loop each poll costs no wall time.
    """
    deadline = clock.monotonic() + timeout
    while True:
        outcome = predicate()
        result = await outcome if inspect.isawaitable(outcome) else outcome
        if result or clock.monotonic() >= deadline:
            return bool(result)
        await clock.sleep(interval)

"""`--speed N`: run the event loop's clock N times faster than the wall clock.

This is the same idea as the virtual-time loop in `pumpctl.clock`, but continuous: the loop's
`time()` is real elapsed time multiplied by N, and every wait the loop makes on its selector
is divided by N. Code written against `asyncio.sleep` and timeouts (the controller, the
simulator, a driver's heartbeat) therefore runs N× faster without knowing it, and real I/O
(a pty, a socket) still works, because the loop really does wait — only shorter.

Use it for demos (`pumpctl run --sim --speed 60` shows a 40-minute plan in 40 s) and for
tests that need two processes to share a time scale (a controller and a simulator on a pty,
both at the same N). `--speed max` is the virtual-time loop instead: no waiting at all, but
only meaningful when everything runs in one process.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from pumpctl.clock import DelegatingSelector
from pumpctl.clock import run as run_clock
from pumpctl.errors import UsageError

T = TypeVar("T")


class _ScaledSelector(DelegatingSelector):
    def __init__(self, real: selectors.BaseSelector, speed: float) -> None:
        super().__init__(real)
        self._speed = speed

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return self._real.select(None if timeout is None else timeout / self._speed)


class ScaledTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock runs `speed` times faster than real time."""

    def __init__(self, speed: float) -> None:
        super().__init__()
        if not (math.isfinite(speed) and speed > 0):
            raise UsageError(f"speed {speed}: must be a positive number")
        self.speed = speed
        self._real0 = time.monotonic()
        self._selector: selectors.BaseSelector = _ScaledSelector(self._selector, speed)

    def time(self) -> float:
        return (time.monotonic() - self._real0) * self.speed


def parse_speed(text: str) -> float | None:
    """`max` → None (virtual time); otherwise a factor > 0 and ≤ 100000."""
    t = text.strip().lower()
    if t == "max":
        return None
    try:
        value = float(t.rstrip("x"))
    except ValueError:
        raise UsageError(f"--speed {text!r}: expected a number (1, 10, 60) or 'max'") from None
    if not (math.isfinite(value) and 0 < value <= 100_000):
        raise UsageError(f"--speed {text}: must be > 0 and <= 100000 (or 'max')")
    return value


def run_at_speed(main: Coroutine[Any, Any, T], speed: float | None) -> T:
    """Run `main` in virtual time (speed None), real time (1), or N× real time."""
    if speed is None:
        return run_clock(main, virtual=True)
    if speed == 1:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=lambda: ScaledTimeLoop(speed)) as runner:
        return runner.run(main)

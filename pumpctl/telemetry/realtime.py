"""Real-time waits that stay real on a virtual-time loop.

The controller may run on `pumpctl.clock.VirtualTimeLoop`, where `asyncio.sleep(10)` and
`asyncio.timeout(10)` pass in an instant whenever nothing is ready. The broker, however, is a
real process behind a real socket: a connect timeout, a reconnect backoff or a bound on
draining the spool at exit are about the network and about people waiting, so they are
measured in real seconds here, on any loop. A `threading.Timer` wakes the loop through
`call_soon_threadsafe`; everything else stays in the loop's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def real_timeout(seconds: float) -> AsyncIterator[None]:
    """Like `asyncio.timeout(seconds)`, but counting wall seconds; raises TimeoutError."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as scope:
        active = True

        def expire() -> None:
            if active and not scope.expired():
                scope.reschedule(loop.time())

        timer = threading.Timer(max(0.0, seconds), loop.call_soon_threadsafe, args=(expire,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            active = False
            timer.cancel()

"""The one interface between a protocol engine and the ways it is served (memory, pty, TCP).

Serving moves bytes; an engine makes sense of them. Nothing in `simulators.serve` knows a
protocol, so a new engine is served in memory, on a pty and on TCP by implementing this and
nothing else (`simulators.line.SimLine` implements it; engines subclass that).

    class SimEngine(Protocol):
        def connect(self, sink: Sink) -> int
        def disconnect(self, token: int) -> None
        def receive(self, token: int, data: bytes) -> None
        connected: bool                     (read-only property)
        def ensure_started(self) -> None
        async def start(self) -> None
        async def aclose(self) -> None

The contract, from the engine's side:
- `connect(sink)`: a client arrived (a memory pipe, the pty, one TCP connection). Keep
  `sink`; call it with bytes for that client. Return a token (an int, unique while
  connected). `disconnect(token)`: the client is gone; never call its sink again.
- `receive(token, data)`: bytes from client `token`, in order, in whatever chunks the OS or
  the client produced (a request may be split over calls, or several may share one): the
  engine frames them itself. Replies may go to that client only (a TCP protocol where each
  connection is its own conversation) or to every client (a serial line, where everyone
  hears everything). `receive` is called from the event loop and must not block; it may call
  a sink before returning (the memory pipe relies on this for speed) but must not expect to
  be called back re-entrantly: serving queues a client's writes made from inside its sink.
- Bytes for nobody (no client connected) are dropped, as on a real line; serving also
  drops what a pty client is not there to read.
- `ensure_started()` (synchronous, needs a running loop, idempotent) and `start()` begin
  the engine's own timed work (its clock, scheduled faults, watchdogs); serving calls
  `ensure_started()` when it attaches, so an engine is served whether or not its owner
  started it. `aclose()` stops that work; the owner calls it, after the servers have closed.
- Time: an engine reads time only from the `pumpctl.clock.Clock` it was built with and sleeps
  only through the event loop, so the same engine runs in virtual time (tests), at N x real
  time (`pumpctl sim ... --speed N`) or in real time.
- Errors: an exception from `receive` is a bug in the engine. The memory pipe and the pty
  server report it to the loop's exception handler and go on; the TCP server reports it and
  drops that connection.

Faults and the pumps are not part of this interface: they belong to the engine's own API
(every `SimLine` has `inject(fault)` and `pump(address) -> SimulatedPump`), so serving never
depends on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pumpctl.errors import PumpctlError

Sink = Callable[[bytes], None]


class SimEngine(Protocol):
    """A protocol engine as serving sees it: bytes in, bytes out, clients, a lifecycle."""

    def connect(self, sink: Sink) -> int:
        """A client arrived; `sink` takes bytes for it. Returns its token."""
        ...

    def disconnect(self, token: int) -> None:
        """The client `token` is gone (unknown tokens are ignored)."""
        ...

    def receive(self, token: int, data: bytes) -> None:
        """Bytes from client `token`."""
        ...

    @property
    def connected(self) -> bool:
        """True while any client is connected."""
        ...

    def ensure_started(self) -> None:
        """Start the engine's timed work now, if not yet (needs a running loop)."""
        ...

    async def start(self) -> None:
        ...

    async def aclose(self) -> None:
        ...


class SimulatorServeError(PumpctlError):
    """The simulator cannot be served where it was asked to (link path, port)."""

    exit_code = 2

"""Serving an engine in memory: an asyncio transport wired straight to it.

No OS resources and no per-byte cost, for tests and `pumpctl run --sim`:
`memory_transport(engine, protocol)` gives a client protocol its transport, and
`memory_link(engine)` an asyncio stream pair on one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from simulators.serve.engine import SimEngine


class _PipeTransport(asyncio.Transport):
    """The client's end of an in-memory pipe to an engine.

    A line without a baud rate takes no time, so the engine handles a chunk inside the
    client's `write()`, and its reply reaches the client's protocol before `write()` returns
    (what a client awaits is then already there: no event-loop turns per request, which is
    most of a virtual-time run's cost). Two things a real port never does are kept out: a
    chunk written from inside a delivery (a client answering from `data_received`) waits for
    the next loop turn rather than re-entering the engine, and so does everything written
    after it, to keep the order; and an engine's error goes to the loop's exception handler,
    not into the client's `write()`.
    """

    def __init__(self, engine: SimEngine, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._engine = engine
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._busy = False
        self._queued: list[bytes] = []
        self._token = engine.connect(self._to_client)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if self._busy or self._queued:
            self._queued.append(bytes(data))
            if len(self._queued) == 1:
                self._loop.call_soon(self._drain)
            return
        self._to_engine(bytes(data))

    def _drain(self) -> None:
        while self._queued:
            self._to_engine(self._queued[0])
            del self._queued[0]

    def _to_engine(self, data: bytes) -> None:
        self._busy = True
        try:
            self._engine.receive(self._token, data)
        except Exception as exc:
            self._loop.call_exception_handler({
                "message": "engine failed on bytes from a memory-link client",
                "exception": exc})
        finally:
            self._busy = False

    def _to_client(self, data: bytes) -> None:
        """The engine's bytes; writes the client makes meanwhile are queued."""
        if self._closing:
            return
        busy, self._busy = self._busy, True
        try:
            self._protocol.data_received(data)
        finally:
            self._busy = busy

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._engine.disconnect(self._token)
            self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def memory_transport(engine: SimEngine, protocol: asyncio.Protocol) -> asyncio.Transport:
    """The client end of an in-process byte pipe to `engine` (started if it is not yet): what
    the client writes is handled by the engine at once (see `_PipeTransport`), and what the
    engine sends is handed to `protocol.data_received` as it is sent, as a port's bytes
    would be (replies paced by a baud rate or delayed by a fault come later, on timers)."""
    transport = _PipeTransport(engine, protocol)
    protocol.connection_made(transport)
    engine.ensure_started()
    return transport


def memory_link(engine: SimEngine) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An asyncio stream pair on a memory transport to `engine`."""
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport = memory_transport(engine, protocol)
    return reader, asyncio.StreamWriter(transport, protocol, reader, asyncio.get_running_loop())

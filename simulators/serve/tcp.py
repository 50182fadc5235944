"""Serving an engine on a raw TCP port, as a serial device server (or a Modbus TCP device)
offers one. Each connection is one client of the engine."""

from __future__ import annotations

import asyncio
from types import TracebackType

from simulators.serve.engine import SimEngine
from simulators.serve.owner import listen_error


class TcpServer:
    """Serve `engine` on a TCP port (0: any free one, read `.port` after entering)."""

    def __init__(self, engine: SimEngine, host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpServer:
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise listen_error(self.host, self.port, exc) from None
        self.port = self._server.sockets[0].getsockname()[1]
        self.engine.ensure_started()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        token = self.engine.connect(writer.write)
        try:
            while data := await reader.read(4096):
                self.engine.receive(token, data)
        except ConnectionError:
            pass
        finally:
            self.engine.disconnect(token)
            self._writers.discard(writer)
            writer.close()

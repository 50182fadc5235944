"""Putting a simulator where a client can reach it: in memory, on a pty, on TCP.

Serving knows no protocol. It moves bytes between clients and an engine through one small
interface, `SimEngine` (simulators/serve/engine.py, where the contract is written out):

    connect(sink) -> token      a client arrived; sink(bytes) reaches it
    disconnect(token)           it left
    receive(token, data)        bytes from it (the engine frames them)
    connected                   any client there?
    ensure_started() / start()  begin the engine's timed work (faults, watchdogs)
    aclose()                    end it

Every engine built on `simulators.line.SimLine` (New Era today, Modbus next) implements it,
so each is served the same three ways:
- `memory_transport(engine, protocol)`, `memory_link(engine)`: an in-process pipe, no OS
  resources, no per-byte cost (simulators/serve/memory.py);
- `PtyServer(engine, link)`: a pseudo-terminal with a symlink to its slave, for anything that
  opens a serial port by path; a live link is never taken over (simulators/serve/pty.py);
- `TcpServer(engine, host, port)`: a raw TCP port (simulators/serve/tcp.py).
Serving errors (a link or port in use, a bad path) are `SimulatorServeError` (exit code 2).
"""

from simulators.serve.engine import SimEngine, SimulatorServeError, Sink
from simulators.serve.memory import memory_link, memory_transport
from simulators.serve.pty import PtyServer
from simulators.serve.tcp import TcpServer

__all__ = ["PtyServer", "SimEngine", "SimulatorServeError", "Sink", "TcpServer", "memory_link",
           "memory_transport"]

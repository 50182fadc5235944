"""A running `pumpctl run`'s pump, for other processes: who owns the port, and its status.

A second process that opens the port of a running pump talks over the controller's requests
and replies: the run faults, cannot confirm its stop, and the pump may be left infusing (issue
9). So while `pumpctl run` has a real pump open it publishes, per port:

- an owner record `<key>.owner` (JSON: pid, run id, port, socket), looked up with `owner_of`;
- a read-only status socket `<key>.sock` (unix domain): a client gets a `snapshot` line (the
  run's header summary, last state and last sample) and then each journal record of the run
  as a JSON line, as the journal writes it. The socket never reads what clients send: nothing
  can command the pump through it.

`pumpctl pump ... status | dispensed | watch` read a running pump through this socket instead
of opening its port; the other bench commands refuse, naming the owner.

Both live in the per-user runtime directory (`$PUMPCTL_RUNTIME_DIR`, else
`$XDG_RUNTIME_DIR/pumpctl`, else `<tmp>/pumpctl-<uid>`), mode 0700. `<key>` names the port
itself, not the name it was given: a serial path is resolved through its symlinks (the pty
link `/tmp/ne` and `/dev/pts/5` are one port), a TCP port is `tcp:ADDRESS:PORT` (the host
resolved: `localhost` and `127.0.0.1` are one port).

`owner_of(port) -> PortOwner | None` is the whole interface the pump commands use; an
exclusive-open transport that records its own owner can answer it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pumpctl.drivers.base import PumpError
from pumpctl.errors import PumpctlError

RUNTIME_ENV = "PUMPCTL_RUNTIME_DIR"
_MAX_BUFFER = 1 << 20  # a client that lets this much pile up is dropped, never waited for
_HEADER_KEYS = ("plan", "drug", "total_volume_ml", "total_dose_mg", "duration_s", "pump_url",
                "watchdog", "watchdog_s", "resume_of")


class PortInUse(PumpError):
    """The port belongs to a running `pumpctl run` (exit 4)."""


class EndpointError(PumpctlError):
    """A status endpoint that cannot be served, reached or read (exit 4)."""

    exit_code = 4


def runtime_dir() -> Path:
    """Where owner records and status sockets live (created 0700 on demand)."""
    explicit = os.environ.get(RUNTIME_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "pumpctl"
    return Path(tempfile.gettempdir()) / f"pumpctl-{os.getuid()}"


def port_key(port: str) -> str:
    """The identity of the port a pump URL (or a plain path) names."""
    from pumpctl.drivers.open import parse_pump_url

    return parse_pump_url(port).line_key


def _stem(key: str) -> str:
    name = quote(key, safe="")
    if len(name) > 64:  # unix socket paths are short (108 bytes on Linux)
        name = "h-" + hashlib.sha256(key.encode()).hexdigest()[:24]
    return name


@dataclass(frozen=True)
class PortOwner:
    """The process that has a pump port open for a run."""

    pid: int
    run_id: str | None
    port: str = ""
    socket: Path | None = None

    def describe(self) -> str:
        run = f"pumpctl run {self.run_id}" if self.run_id else "another process"
        return f"{run} (pid {self.pid})"


def _paths(key: str) -> tuple[Path, Path]:
    base = runtime_dir() / _stem(key)
    return base.with_name(base.name + ".owner"), base.with_name(base.name + ".sock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _serving(sock: Path) -> bool:
    """Someone answers on the status socket (a record left by a killed run whose pid has been
    reused by an unrelated process owns nothing)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(sock))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _private(directory: Path) -> bool:
    """Ours alone: a directory another user made (e.g. under /tmp) could feed us a fake
    owner record or status."""
    try:
        st = directory.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def owner_of(port: str) -> PortOwner | None:
    """The live `pumpctl run` that has `port` open, or None."""
    try:
        key = port_key(port)
    except PumpctlError:
        return None
    owner_path, sock = _paths(key)
    if not _private(owner_path.parent):
        return None
    try:
        data = json.loads(owner_path.read_text(encoding="utf-8"))
        pid = int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not _alive(pid) or not _serving(sock):
        return None
    run_id = data.get("run_id")
    return PortOwner(pid, str(run_id) if run_id else None, str(data.get("port", port)), sock)


class StatusEndpoint:
    """A `RecordSink` that owns a port's owner record and serves the run's records read-only.

    `await start()` before the port is opened (refused with `PortInUse` if a live run already
    owns it); `aclose()` after the port is closed removes both files.
    """

    def __init__(self, port: str, *, run_id: str) -> None:
        self.port = port
        self.run_id = run_id
        self.key = port_key(port)
        self.owner_path, self.socket_path = _paths(self.key)
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._snapshot: dict[str, Any] = {"type": "snapshot", "run_id": run_id,
                                          "pid": os.getpid(), "port": port, "header": None,
                                          "state": "preparing", "sample": None}
        self._owned = False

    async def start(self) -> StatusEndpoint:
        owner = owner_of(self.port)
        if owner is not None:
            raise PortInUse(f"port {self.port} is in use by {owner.describe()}")
        directory = self.owner_path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise EndpointError(f"cannot create {directory}: {exc.strerror}") from None
        if not _private(directory):
            raise EndpointError(f"{directory} is not private to this user (owner or mode)")
        with contextlib.suppress(OSError):
            self.socket_path.unlink()  # stale: its owner is gone (checked above)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        body = json.dumps({"pid": os.getpid(), "run_id": self.run_id, "port": self.port,
                           "key": self.key, "socket": str(self.socket_path),
                           "started": round(time.time(), 3)})
        tmp = self.owner_path.with_name(f"{self.owner_path.name}.{os.getpid()}.tmp")
        tmp.write_text(body + "\n", encoding="utf-8")
        os.replace(tmp, self.owner_path)
        self._owned = True
        return self

    # RecordSink
    def emit(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        snap = self._snapshot
        if kind == "header":
            snap["header"] = {k: record.get(k) for k in _HEADER_KEYS}
        elif kind == "sample":
            snap["sample"] = record
        elif kind == "state":
            snap["state"] = record.get("state")
        elif kind == "summary":
            snap["state"] = record.get("outcome")
        if self._clients:
            self._broadcast((json.dumps(record, default=str) + "\n").encode())

    def _broadcast(self, line: bytes) -> None:
        for writer in list(self._clients):
            transport = writer.transport
            if transport.is_closing() or transport.get_write_buffer_size() > _MAX_BUFFER:
                self._drop(writer)
                continue
            try:
                writer.write(line)
            except Exception:
                self._drop(writer)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._clients.discard(writer)
        with contextlib.suppress(Exception):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((json.dumps(self._snapshot, default=str) + "\n").encode())
        self._clients.add(writer)
        # Read-only: what a client sends is never looked at; this only notices it leaving.
        with contextlib.suppress(Exception):
            while await reader.read(4096):
                pass
        self._drop(writer)

    async def aclose(self) -> None:
        for writer in list(self._clients):
            self._drop(writer)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self._owned:
            self._owned = False
            try:
                mine = json.loads(self.owner_path.read_text(encoding="utf-8")).get(
                    "run_id") == self.run_id
            except (OSError, ValueError, AttributeError):
                mine = False
            if mine:  # (a run that took over a port this one was thought dead on keeps it)
                for path in (self.owner_path, self.socket_path):
                    with contextlib.suppress(OSError):
                        path.unlink()


# -- the client side (pumpctl pump status | dispensed | watch) ---------------------------

async def follow(owner: PortOwner, *,
                 timeout_s: float = 5.0) -> AsyncGenerator[dict[str, Any], None]:
    """The snapshot, then every record the run journals, until the run ends or goes away."""
    if owner.socket is None:
        raise EndpointError(f"{owner.describe()} has no status endpoint")
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(str(owner.socket))
    except (OSError, TimeoutError) as exc:
        raise EndpointError(f"cannot reach the status of {owner.describe()} at "
                            f"{owner.socket}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        while line := await reader.readline():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def snapshot(owner: PortOwner) -> dict[str, Any]:
    """The run's current state and last sample."""
    async with contextlib.aclosing(follow(owner)) as records:
        async for record in records:
            if record.get("type") == "snapshot":
                return record
    raise EndpointError(f"{owner.describe()} closed its status endpoint")

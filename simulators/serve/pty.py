"""Serving an engine on a pseudo-terminal, reachable through a symlink to its slave, so
anything that opens a serial port by path (pyserial, nesp-lib, minicom) talks to it.

A link has one owner: a link whose pty is held open by a live process is never taken over
(`SimulatorServeError` naming the process); a link left by a process that has died is
replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from pathlib import Path
from types import TracebackType

from simulators.serve.engine import SimEngine, SimulatorServeError
from simulators.serve.owner import link_owner, locked_directory


class PtyServer:
    """Serve `engine` on a new pty, reachable through the symlink `link_path`.

    Linux pty rules honoured here (see the facts file): the slave is raw (CRC bytes may be
    CR, XON or XOFF); with no client holding the slave open, reading the master fails with
    EIO and select keeps calling it readable, so we stop watching and look again every
    `poll_s`; nothing is written while no client is attached (the kernel would queue it for
    the next opener, which a real line never does); writes never block.
    """

    def __init__(self, engine: SimEngine, link_path: str | Path, *,
                 poll_s: float = 0.05) -> None:
        self.engine = engine
        self.link_path = Path(link_path)
        self.poll_s = poll_s
        self.pty_name = ""
        self.client_attached = False
        self.dropped_bytes = 0
        self._master = -1
        self._token: int | None = None
        self._poll: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> PtyServer:
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            self.pty_name = os.ttyname(slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        try:
            self._make_link()
        except BaseException:
            os.close(master)
            raise
        self._token = self.engine.connect(self._write)
        self.engine.ensure_started()
        self._loop.add_reader(master, self._on_readable)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._master < 0:
            return
        if self._token is not None:
            self.engine.disconnect(self._token)
            self._token = None
        if self._poll is not None:
            self._poll.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self._master)
        os.close(self._master)
        self._master = -1
        with contextlib.suppress(OSError):
            if os.readlink(self.link_path) == self.pty_name:
                self.link_path.unlink()

    def _make_link(self) -> None:
        link = self.link_path
        if not link.parent.is_dir():
            raise SimulatorServeError(f"link path {link}: directory {link.parent} does not exist")
        try:
            with locked_directory(link.parent):
                if link.is_symlink():
                    target = os.path.realpath(link)
                    # A pty number freed by a dead owner may be the one just given to us.
                    owner = None if target == self.pty_name else link_owner(link)
                    if owner is not None:
                        raise SimulatorServeError(
                            f"link path {link} is in use: its pty {target} is "
                            f"held by {owner}; stop that process or choose another path")
                    link.unlink()  # stale: left by a process that did not exit cleanly
                elif link.exists():
                    raise SimulatorServeError(f"link path {link} exists and is not a symlink; "
                                              "refusing to replace it")
                os.symlink(self.pty_name, link)
        except OSError as exc:
            raise SimulatorServeError(f"link path {link}: {exc.strerror or exc}") from None

    def _on_readable(self) -> None:
        self._read_some(watching=True)

    def _read_some(self, *, watching: bool) -> None:
        assert self._loop is not None
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            data = b""  # a client is there, it just has nothing to say
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            # No client holds the slave open: stop watching, look again a little later.
            self.client_attached = False
            if watching:
                self._loop.remove_reader(self._master)
            self._poll = self._loop.call_later(self.poll_s, self._read_some_polled)
            return
        self.client_attached = True
        if not watching:
            self._loop.add_reader(self._master, self._on_readable)
        if data:
            assert self._token is not None
            self.engine.receive(self._token, data)

    def _read_some_polled(self) -> None:
        self._poll = None
        if self._master >= 0:
            self._read_some(watching=False)

    def _write(self, frame: bytes) -> None:
        if not self.client_attached or self._master < 0:
            self.dropped_bytes += len(frame)
            return
        try:
            written = os.write(self._master, frame)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self.client_attached = False
            written = 0
        self.dropped_bytes += len(frame) - written

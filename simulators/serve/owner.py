"""Who holds a pty or a TCP port, so that serving refuses one in use with the owner's name.

Linux only, read from /proc: a pty's master side is an open `/dev/ptmx` whose fdinfo names
the pty (`tty-index`), a listening socket is a `/proc/net/tcp*` row whose inode is an open
`socket:[inode]`. Processes whose /proc entries cannot be read (another user's, when not
root) are not seen: a link of theirs is then taken for stale, and replacing it fails with
the permission error instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from simulators.serve.engine import SimulatorServeError

_PTS = re.compile(r"/dev/pts/(\d+)")
LOCK_WAIT_S = 2.0  # how long to wait for another process creating a link in the same directory


@dataclass(frozen=True)
class Owner:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})"


def _command(pid: int) -> str:
    if pid == os.getpid():
        return "this process"
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    # "/venv/bin/python /venv/bin/pumpctl sim ..." reads better as "pumpctl sim ...".
    if len(argv) > 1 and os.path.basename(argv[0]).startswith("python"):
        argv = argv[2:] if argv[1] == "-m" else argv[1:]
    if argv:
        argv[0] = os.path.basename(argv[0])
    text = " ".join(argv) or "?"
    return text if len(text) <= 80 else text[:77] + "..."


def _open_files() -> Iterator[tuple[int, str, str]]:
    """(pid, fd, what it leads to) for every open file we may look at."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:
            continue  # gone meanwhile, or not ours to see
        for fd in fds:
            try:
                yield int(entry.name), fd, os.readlink(f"/proc/{entry.name}/fd/{fd}")
            except OSError:
                continue


def pty_owner(path: str | Path) -> Owner | None:
    """The live process holding the master side of the pty `path` is (or leads to), or None:
    not a pty, or nobody holds it (what a killed simulator leaves behind)."""
    match = _PTS.fullmatch(os.path.realpath(path))
    if match is None:
        return None
    wanted = f"tty-index:\t{match[1]}"
    for pid, fd, target in _open_files():
        if not target.endswith("ptmx"):
            continue
        try:
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        if wanted in info.splitlines():
            return Owner(pid, _command(pid))
    return None


def link_owner(link: Path) -> Owner | None:
    """The live process serving the pty that symlink `link` leads to, or None when the link is
    stale. A pty number freed by a dead owner is soon given to another process (a terminal,
    another test's simulator), so a holder alone does not prove the link is still in use: the
    kernel stamps a pty when it is allocated, and a pty allocated after the link was made is
    not the one the link was made for."""
    try:
        allocated_ns = os.stat(link).st_ctime_ns  # the pty's own (stat follows the link)
        linked_ns = os.lstat(link).st_mtime_ns
    except OSError:
        return None  # the pty is gone
    if allocated_ns > linked_ns:
        return None
    return pty_owner(link)


def port_owner(port: int) -> Owner | None:
    """The process with a socket listening on TCP `port` (any address), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if len(fields) > 9 and fields[3] == "0A" and \
                        int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid, _, target in _open_files():
        if target in inodes:
            return Owner(pid, _command(pid))
    return None


def listen_error(host: str, port: int, exc: OSError) -> SimulatorServeError:
    """A one-line error for a TCP port that cannot be listened on, naming its owner."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return SimulatorServeError(f"{where}: host {host!r} is not known ({exc.strerror})")
    if exc.errno == errno.EADDRINUSE:
        owner = port_owner(port)
        by = f" by {owner}" if owner is not None else ""
        return SimulatorServeError(f"{where}: port {port} is in use{by}; stop that process or "
                                   "choose another port (0: any free one)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return SimulatorServeError(f"{where}: {host} is not an address of this machine")
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return SimulatorServeError(f"{where}: {reason.lower()}")


@contextlib.contextmanager
def locked_directory(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on directory `path`, so that two processes creating the same
    link there do it one after the other (each then sees the other's link and its owner)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SimulatorServeError(
                        f"directory {path} stayed locked by another process for "
                        f"{LOCK_WAIT_S:g} s; cannot create a link in it") from None
                time.sleep(0.01)  # another process is creating its link: microseconds
        yield
    finally:
        os.close(fd)

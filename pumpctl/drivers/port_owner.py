"""Who owns a pump's serial port: one process at a time, and a second one is told who.

Two processes on one pump fight: each one's requests take the other's replies, a stop goes
unconfirmed and the pump can be left infusing after both have exited. So a serial device or
pty is opened with an exclusive `flock` (pyserial's `exclusive=True`). The kernel drops
that lock when its descriptor closes, and with it when the process dies in any way,
SIGKILL included, so no lock is ever left stale.

A lock only says "busy". To tell the second opener *who*, the owner also writes a small
record (pid, command line, an optional label such as the run id, and details another
process may use to reach it) into a per-user directory, named after the device. The record
is believed only while that pid still holds the lock: the kernel's own lock table,
`/proc/locks`, names the pid holding each flock, so a record left behind by a killed
process is recognised as stale and ignored. A port locked by a process that wrote no record
(another program using flock) is still reported with its pid and command line.

    claim = claim_port(fd, "/dev/ttyUSB0")   # after the flock succeeded
    describe_owner("run 20250101-120000-ab12", status="...")   # all ports of this process
    owner_of("/dev/ttyUSB0")                 # PortOwner(pid=..., label=..., ...) or None
    claim.release()                          # before the descriptor is closed

Records live in `$PUMPCTL_PORTS_DIR`, else `$XDG_RUNTIME_DIR/pumpctl/ports`, else
`/tmp/pumpctl-<uid>/ports`; a process run by another user is still found by pid through
`/proc/locks`, but its label is only visible to that user.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

_COMMAND_MAX = 160


@dataclass(frozen=True)
class PortOwner:
    """The process holding a port, as far as it can be known."""

    pid: int
    port: str = ""
    command: str = ""  # the owner's command line, shortened
    label: str = ""  # e.g. "run 20250101-120000-ab12"; empty when the owner gave none
    since: float | None = None  # when the port was opened (wall clock)
    details: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """`pid 123 (pumpctl run ..., run X)`: who, for a one-line error."""
        what = ", ".join(_one_line(x) for x in (self.command, self.label) if x)
        return f"pid {self.pid}" + (f" ({what})" if what else "")


def ports_dir() -> Path:
    """Where owner records live (see the module docstring)."""
    explicit = os.environ.get("PUMPCTL_PORTS_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "pumpctl" / "ports"
    return Path(tempfile.gettempdir()) / f"pumpctl-{os.getuid()}" / "ports"


def _key(st: os.stat_result) -> str:
    """A name for the device itself, whatever path (a pty link, /dev/serial/by-id/...) led
    to it: the device number for a character device, else the file's filesystem and inode."""
    if st.st_rdev:
        return f"dev-{os.major(st.st_rdev)}-{os.minor(st.st_rdev)}"
    return f"ino-{st.st_dev}-{st.st_ino}"


def _lock_id(st: os.stat_result) -> str:
    """How /proc/locks names the file a lock is on: MAJOR:MINOR:INODE of the file itself
    (its filesystem's device numbers in hex, the inode in decimal)."""
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def _flock_holders(st: os.stat_result) -> list[int]:
    """Pids holding a flock on the file `st` describes, from the kernel's lock table."""
    wanted = _lock_id(st)
    holders = []
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:19:3 0 EOF"; blocked waiters carry "->"
                if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
                    continue
                if parts[5] == wanted and parts[4].isdigit():
                    holders.append(int(parts[4]))
    except OSError:
        pass
    return holders


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    args = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if args and Path(args[0]).name.startswith("python") and len(args) > 1:
        args = args[1:]  # "python -m pumpctl.cli ..." reads better without the interpreter
        if args[:2] == ["-m", "pumpctl.cli"]:
            args = ["pumpctl", *args[2:]]
    if args:
        args[0] = Path(args[0]).name
    return _one_line(" ".join(args))


def _one_line(text: str) -> str:
    """Text fit for a one-line error: whitespace runs (newlines too) as one space, no
    control characters, at most `_COMMAND_MAX` characters."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= _COMMAND_MAX else text[:_COMMAND_MAX - 3] + "..."


class PortClaim:
    """This process's ownership record of one port; `release()` before closing the port."""

    def __init__(self, fd: int, port: str) -> None:
        st = os.fstat(fd)
        self.port = port
        self.path = ports_dir() / f"{_key(st)}.json"
        self.since = time.time()
        self._released = False
        self.write()

    def record(self) -> PortOwner:
        return PortOwner(pid=os.getpid(), port=self.port, command=_command_of(os.getpid()),
                         label=_label, since=self.since, details=dict(_details))

    def write(self) -> None:
        """Write the record atomically (a reader sees the old one or the new one)."""
        if self._released:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(asdict(self.record())), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # the lock is what excludes; a missing record only makes the error vaguer

    def release(self) -> None:
        """Remove the record if it is still this process's (the lock goes with the fd)."""
        if self._released:
            return
        self._released = True
        _claims.discard(self)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                self.path.unlink()


_claims: set[PortClaim] = set()
_label = ""
_details: dict[str, str] = {}


def claim_port(fd: int, port: str) -> PortClaim:
    """Record this process as the owner of the port open (and flock-ed) on `fd`."""
    claim = PortClaim(fd, port)
    _claims.add(claim)
    return claim


def describe_owner(label: str, **details: str) -> None:
    """Name what this process is doing (e.g. `run <id>`) on every port it holds and will
    hold; `details` (e.g. where its status can be read) go into the record as they are."""
    global _label, _details
    _label, _details = label, dict(details)
    for claim in list(_claims):
        claim.write()


def owner_of(port: str | os.PathLike[str]) -> PortOwner | None:
    """Who holds `port` now, or None if nobody holds a lock on it."""
    try:
        st = os.stat(port)
    except OSError:
        return None
    holders = _flock_holders(st)
    if not holders:
        return None
    record = ports_dir() / f"{_key(st)}.json"
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        owner = PortOwner(pid=int(data["pid"]), port=str(data.get("port", "")),
                          command=str(data.get("command", "")),
                          label=str(data.get("label", "")),
                          since=float(data["since"]) if data.get("since") else None,
                          details={str(k): str(v) for k, v in
                                   (data.get("details") or {}).items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        owner = None
    if owner is not None and owner.pid in holders:
        return owner
    pid = holders[0]  # no record, or one left by a dead process: the kernel knows the pid
    return PortOwner(pid=pid, port=str(port), command=_command_of(pid))


def port_busy_message(port: str, owner: PortOwner | None) -> str:
    """The one line a second opener gets."""
    who = owner.describe() if owner is not None else "another process (its pid is not visible)"
    return f"port {port} is in use by {who}: a pump port has one owner at a time"

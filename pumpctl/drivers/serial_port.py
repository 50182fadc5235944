"""A serial port (or pty) as an asyncio transport with no ceiling on how many one process holds.

pyserial-asyncio-fast registers the port with the event loop, but reads through pyserial's
`Serial.read`, which waits in `select()`. `select()` cannot watch a descriptor numbered 1024
or above ("filedescriptor out of range in select()"), and every pyserial port costs five
descriptors (the port and two abort pipes for `cancel_read`/`cancel_write`), so a controller
process failed near 200 ports. Here:

- pyserial still opens and configures the port (termios raw mode, baud, 8N1, no flow
  control, an exclusive `flock`), then its two abort pipes are closed at once: this
  project never cancels a blocking read, because it never makes one. One descriptor a port.
- pyserial-asyncio-fast's transport still does the buffering, flow control and closing; only
  its two byte-moving calls are replaced by `os.read`/`os.write` on the non-blocking
  descriptor, which the loop (epoll) already watches, so `select()` is never reached.
- the port has one owner: a second opener gets `PortBusy`, one line naming the owner's pid
  and label (`pumpctl.drivers.port_owner`).
- the soft limit on open files is raised to the hard limit when a port is opened, so a fleet
  of ptys is bounded by the system, not by a default of 1024.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource

import serial
import serial_asyncio_fast

from pumpctl.drivers.base import PumpError
from pumpctl.drivers.port_owner import PortClaim, claim_port, owner_of, port_busy_message

_ABORT_PIPES = ("pipe_abort_read_r", "pipe_abort_read_w",
                "pipe_abort_write_r", "pipe_abort_write_w")


class PortBusy(PumpError):
    """The port is held by another process (see `pumpctl.drivers.port_owner`)."""


class _Port(serial.Serial):
    """pyserial's POSIX port without the abort pipes it opens for cancelling blocking reads,
    and with this process's ownership record written after the lock and removed before the
    descriptor closes."""

    claim: PortClaim | None = None
    fd: int | None
    is_open: bool

    def open(self) -> None:
        super().open()
        for name in _ABORT_PIPES:
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        assert self.fd is not None
        try:
            self.claim = claim_port(self.fd, str(self.port))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.claim is not None:
            self.claim.release()
            self.claim = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.is_open = False


class PortTransport(serial_asyncio_fast.SerialTransport):
    """pyserial-asyncio-fast's transport, moving bytes with `os.read`/`os.write` (never
    pyserial's select-based calls) on the port's non-blocking descriptor."""

    def _read_ready(self) -> None:
        fd = self._serial.fd
        try:
            data = os.read(fd, self._max_read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the device went away (or the pty's far end closed)
            self._close(serial.SerialException(f"read failed: {exc.strerror or exc}"))
            return
        if not data:
            # Readable but empty is how a hung-up or unplugged tty looks; pyserial says the
            # same. Without closing, the loop would call us again forever.
            self._close(serial.SerialException("device disconnected (read 0 bytes)"))
            return
        self._protocol.data_received(data)

    def _write_data(self, data: bytes | bytearray | memoryview) -> None:
        try:
            n = os.write(self._serial.fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            # A device that went away is the pump's failure, reported to the protocol (and
            # from there to the controller), not a bug for the loop's exception handler.
            self._abort(serial.SerialException(f"write failed: {exc.strerror or exc}"))
            return
        if n == len(data):
            if self._closing:
                self._close()
            return
        self._write_buffer.append(data[n:])
        self._maybe_pause_protocol()
        self._ensure_writer()


def raise_open_file_limit() -> None:
    """Let this process open as many descriptors as the system allows it (soft := hard).

    The default soft limit (often 1024) is a guard for programs that use select(); this
    process's ports no longer do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # e.g. an unlimited hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _open_port(path: str, baud: int, parity: str = "N") -> _Port:
    return _Port(path, baudrate=baud, bytesize=serial.EIGHTBITS, parity=parity,
                 stopbits=serial.STOPBITS_ONE, xonxoff=False, rtscts=False, exclusive=True,
                 timeout=0, write_timeout=0)


async def open_serial(path: str, baud: int, protocol: asyncio.Protocol, *,
                      parity: str = "N") -> asyncio.Transport:
    """Open `path` exclusively at `baud`, 8 data bits, `parity` (N, E or O: Modbus RTU lines
    often run 8E1), one stop bit, and connect `protocol` to it.

    Raises PortBusy (another process holds the port) or serial.SerialException / OSError
    (no such port, permissions, not a tty) for the caller to put into words."""
    raise_open_file_limit()
    loop = asyncio.get_running_loop()
    try:
        # Configuring a real USB serial port can take milliseconds: off the loop.
        port = await loop.run_in_executor(None, _open_port, path, baud, parity)
    except serial.SerialException as exc:
        if getattr(exc, "errno", None) in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise PortBusy(port_busy_message(path, owner_of(path))) from None
        raise
    return PortTransport(loop, protocol, port)

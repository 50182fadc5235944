"""Console output that cannot end a run: a closed terminal or pipe loses the text, not the pump.

When the terminal is closed (SIGHUP) every later write to it fails with EIO; when the reader
of a pipe goes away (`pumpctl run ... | head`) writes fail with EPIPE (SIGPIPE is ignored, as
in every Python program; `on_lost` lets the run stop as the signal would have stopped it).
Either error raised from a `print` in the middle of a run, or from the live display's refresh
thread, or from the final summary, would bypass the stop sequence or turn a clean exit 5 into
a traceback. This stream wraps the real one: the first failed write marks the output lost
(and points the process's own descriptor at /dev/null, so Python's flush at exit does not
complain either), and from then on text is dropped. The run carries on to its stop; the
journal has everything.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, TextIO


class TolerantStream:
    """A text stream that drops output once the terminal or pipe behind it is gone."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.lost: OSError | None = None
        # Told (once, from whichever thread wrote) when the output is lost.
        self.on_lost: Callable[[OSError], None] | None = None
        try:
            self._tty = stream.isatty()
        except (AttributeError, ValueError, OSError):
            self._tty = False

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lose(exc)

    def isatty(self) -> bool:
        return self._tty and self.lost is None

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return str(getattr(self._stream, "encoding", "utf-8") or "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _lose(self, exc: OSError) -> None:
        self.lost = exc
        with contextlib.suppress(Exception):
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        if self.on_lost is not None:
            with contextlib.suppress(Exception):
                self.on_lost(exc)


def silence_lost_output() -> None:
    """Point stdout and stderr at /dev/null after a write to them failed, so the interpreter's
    flush at exit does not fail too (which would turn the exit code into 120)."""
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


def echo_safely(text: str) -> None:
    """Print a line on stdout; a closed stdout loses it quietly."""
    import sys

    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError:
        silence_lost_output()

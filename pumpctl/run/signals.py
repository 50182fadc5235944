"""How `pumpctl run` ends when it is told to: signals and Ctrl-C.

Every signal that would end the process by default ends the run instead, through the
controller's own stop (stop sent, stop confirmed, journaled, summary, exit 5):

- SIGHUP: the terminal or SSH session was closed;
- SIGTERM: `kill`, a service manager, a container runtime stopping;
- SIGQUIT: Ctrl-\\;
- SIGINT (Ctrl-C): off a terminal, stops; on a terminal, asks first (below);
- a closed output pipe (`pumpctl run ... | head`, once `head` has gone): what SIGPIPE would
  end. SIGPIPE itself stays ignored, as in every Python program: a broken pipe to the MQTT
  broker or a pump's TCP line must not stop an infusion (those have their own handling);
  the console stream reports its own EPIPE instead (`output_lost`, `pumpctl.run.output`).

SIGTSTP (Ctrl-Z) would freeze the controller with the pump running: it is refused with a
message while a run is in progress. SIGKILL and power loss cannot be handled by any process:
for those the pump's own watchdog (safe mode) stops the pump (`pumpctl.run.watchdog`).

Before the controller exists (plan compiled, pump being opened or reconciled) nothing is
infusing: a signal then cancels the session, and the run is reported aborted without having
started. Once it exists, every signal becomes one stop request; later signals only remind
that the stop is under way, since the stop sequence itself is bounded.

The Ctrl-C question. On a terminal (stdin a tty, this process in its foreground),
Ctrl-C asks "stop the infusion? [y/N]". The live display is paused while it asks, so the
question and the typed answer are visible (it used to be drawn over, and the answer lost).
"y" stops; "n" or an empty line keeps running. A second Ctrl-C while asking stops at once.
No answer within the timeout (15 s by default, `--prompt-timeout`) stops too: Ctrl-C is a
request to interrupt, and an operator who pressed it and then could not or did not answer has
left the doubt that the fail-safe rule resolves by stopping; keeping on would make one
unanswered Ctrl-C silently do nothing again. Under virtual time (`--speed max`) a run lasts
about a second, so Ctrl-C stops without asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from rich.console import Console

from pumpctl.clock import VirtualTimeLoop

DEFAULT_PROMPT_TIMEOUT_S = 15.0  # real seconds the Ctrl-C question waits before stopping

# Signal -> the reason journaled with the stop.
ENDING_SIGNALS: dict[int, str] = {
    signal.SIGHUP: "SIGHUP (terminal or session closed)",
    signal.SIGTERM: "SIGTERM",
    signal.SIGQUIT: "SIGQUIT",
}
OUTPUT_CLOSED = "SIGPIPE (output closed)"


class Stoppable(Protocol):
    def request_stop(self, reason: str, sender: str) -> None: ...


class LiveLike(Protocol):
    """The part of rich's `Live` the question needs."""

    @property
    def is_started(self) -> bool: ...

    def start(self, refresh: bool = False) -> None: ...

    def stop(self) -> None: ...


def is_interactive(stdin: Any = None) -> bool:
    """A person at a terminal can answer: stdin is a tty and this process is in its
    foreground (reading from the background would stop the process: SIGTTIN). Where the
    question is printed does not matter: piped through `tee`, it still reaches them."""
    stdin = sys.stdin if stdin is None else stdin
    try:
        if not stdin.isatty():
            return False
        fd = stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # a terminal, but not this process's controlling one: no SIGTTIN
        return True


class SessionSignals:
    """Signal handling for one `pumpctl run` session (one event loop, one controller).

    `install()` before anything is opened; `attach(ctl)` as soon as the controller exists;
    `set_live(live)` while the live display runs.
    """

    def __init__(self, console: Console, *, interactive: bool,
                 prompt_timeout_s: float = DEFAULT_PROMPT_TIMEOUT_S,
                 stdin_fd: int | None = None) -> None:
        self.console = console
        self.interactive = interactive
        self.prompt_timeout_s = prompt_timeout_s
        self.cause: str | None = None  # the first signal that asked to end the session
        self._stdin_fd = stdin_fd
        self._ctl: Stoppable | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live: LiveLike | None = None
        self._asking: _Question | None = None
        self._stopping = False
        self._installed: list[tuple[int, Any]] = []

    # -- lifetime --------------------------------------------------------------------------

    @contextlib.contextmanager
    def installed(self) -> Iterator[SessionSignals]:
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._task = asyncio.current_task()
        handlers: dict[int, Callable[[], None]] = {
            sig: functools.partial(self._end, why) for sig, why in ENDING_SIGNALS.items()}
        handlers[signal.SIGINT] = self._on_int
        handlers[signal.SIGTSTP] = self._on_tstp
        for sig, handler in handlers.items():
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self._installed.append((sig, previous))

    def uninstall(self) -> None:
        if self._asking is not None:
            self._asking.close()
            self._asking = None
        if self._loop is not None:
            for sig, previous in self._installed:
                with contextlib.suppress(Exception):
                    self._loop.remove_signal_handler(sig)
                    # asyncio leaves SIG_DFL behind; restore what there was (SIGINT: Python's
                    # KeyboardInterrupt handler, which a caller going on afterwards relies on).
                    if previous is not None:
                        signal.signal(sig, previous)
        self._installed.clear()

    def attach(self, ctl: Stoppable) -> None:
        """The controller exists: from now on signals stop the run through it."""
        self._ctl = ctl

    def set_live(self, live: LiveLike | None) -> None:
        self._live = live

    def output_lost(self, exc: OSError) -> None:
        """The console's stream failed (any thread): a reader that closed the pipe ends the
        run as SIGPIPE would have ended the process; a terminal that went away does not (a
        closed terminal sends SIGHUP; without one the process was meant to outlive it)."""
        if isinstance(exc, BrokenPipeError) and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                self._loop.call_soon_threadsafe(self._end, OUTPUT_CLOSED)

    # -- handlers ----------------------------------------------------------------------------

    def _end(self, why: str, sender: str = "signal") -> None:
        if self._asking is not None:
            self._asking.close()
            self._asking = None
            self._resume_live()
        if self.cause is None:
            self.cause = why
        if self._ctl is None:
            # Nothing infuses yet: end the session where it is (opening, reconciling).
            if self._task is not None and not self._stopping:
                self._task.cancel()
            self._stopping = True
            return
        if self._stopping:
            self._say(f"{why}: the pump is being stopped, please wait")
            return
        self._stopping = True
        self._ctl.request_stop(why, sender)

    def _on_int(self) -> None:
        if self._asking is not None:
            self._end("Ctrl-C twice", "operator")
            return
        if (not self.interactive or self._ctl is None or self._stopping
                or isinstance(self._loop, VirtualTimeLoop)):
            self._end("Ctrl-C", "operator" if self.interactive else "signal")
            return
        self._ask()

    def _on_tstp(self) -> None:
        self._say("pumpctl run cannot be suspended while a pump runs (Ctrl-C asks to stop)")

    # -- the question ------------------------------------------------------------------------

    def _ask(self) -> None:
        assert self._loop is not None
        if self._live is not None and self._live.is_started:
            with contextlib.suppress(Exception):
                self._live.stop()
        timeout = self.prompt_timeout_s
        self._say(f"\n[bold yellow]stop the infusion?[/] \\[y/N] (Ctrl-C again: stop now; "
                  f"no answer in {timeout:g} s: stop) ", end="")
        fd = sys.stdin.fileno() if self._stdin_fd is None else self._stdin_fd
        # The loop's clock may run N times faster than the wall (--speed N); a person answers
        # in real seconds.
        speed = float(getattr(self._loop, "speed", 1.0))
        self._asking = _Question(self._loop, fd, timeout * speed, self._answered)

    def _answered(self, answer: str | None) -> None:
        self._asking = None
        if answer is None:
            self._say("")
            self._end(f"Ctrl-C, no answer in {self.prompt_timeout_s:g} s", "operator")
            return
        if answer.strip().lower() in ("y", "yes"):
            self._end("operator confirmed stop (Ctrl-C)", "operator")
            return
        self._say("continuing")
        self._resume_live()

    def _resume_live(self) -> None:
        if self._live is not None and not self._live.is_started:
            with contextlib.suppress(Exception):
                self._live.start(refresh=True)

    def _say(self, text: str, end: str = "\n") -> None:
        with contextlib.suppress(Exception):
            self.console.print(text, end=end, highlight=False)


@contextlib.contextmanager
def controller_signals(ctl: Stoppable, console: Console) -> Iterator[SessionSignals]:
    """The same handling around a controller that already exists (`pumpctl accuracy run`):
    every ending signal stops the run through it; Ctrl-C asks on a terminal."""
    signals = SessionSignals(console, interactive=is_interactive())
    with signals.installed():
        signals.attach(ctl)
        yield signals


class _Question:
    """One line read from the terminal without blocking the loop, or None on timeout/EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, timeout: float,
                 done: Callable[[str | None], None]) -> None:
        self._loop = loop
        self._fd = fd
        self._done = done
        self._buffer = b""
        self._closed = False
        self._timer = loop.call_later(timeout, self._finish, None)
        try:
            loop.add_reader(fd, self._readable)
            self._reading = True
        except (OSError, ValueError, NotImplementedError):
            self._reading = False  # nothing to read from: the timeout decides

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, 1024)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._finish(None)  # end of input: nobody can answer
            return
        self._buffer += chunk
        if b"\n" in self._buffer:
            line = self._buffer.split(b"\n", 1)[0]
            self._finish(line.decode(errors="replace"))

    def _finish(self, answer: str | None) -> None:
        if self._closed:
            return
        self.close()
        self._done(answer)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        if self._reading:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)

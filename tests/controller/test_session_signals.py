"""`pumpctl run`'s signal handling and watchdog choice, in process (the signal tests against
separate processes are hil_tests/test_signals.py and test_ctrl_c_terminal.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TextIO, cast

import pytest
from rich.console import Console

from pumpctl.drivers.fake import IDEAL, FakeDriver
from pumpctl.run.output import TolerantStream
from pumpctl.run.session import RunAborted, RunOptions, execute
from pumpctl.run.signals import SessionSignals
from pumpctl.run.watchdog import DEFAULT_WATCHDOG_S, plan_watchdog

from .test_cli import STANDARD


def test_the_dispositions_before_the_run_are_restored_after_it() -> None:
    """asyncio leaves SIG_DFL behind; Python ignores SIGPIPE, and a process that goes on
    after a run (a test runner, a notebook) must not be killed by its next broken pipe."""
    sigs = (signal.SIGPIPE, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT, signal.SIGINT,
            signal.SIGTSTP)
    before = {s: signal.getsignal(s) for s in sigs}

    async def main() -> None:
        with SessionSignals(Console(), interactive=False).installed():
            assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_IGN, signal.SIG_DFL)
            assert signal.getsignal(signal.SIGPIPE) == before[signal.SIGPIPE]

    asyncio.run(main())
    assert {s: signal.getsignal(s) for s in sigs} == before


def _Pump() -> FakeDriver:
    return FakeDriver(capabilities=dataclasses.replace(IDEAL, watchdog=None))


def _PumpWithWatchdog() -> FakeDriver:
    return FakeDriver(capabilities=IDEAL)


def test_the_watchdog_is_armed_by_default_and_its_absence_is_said() -> None:
    armed = plan_watchdog(None, driver=_PumpWithWatchdog())
    assert (armed.seconds, armed.state, armed.warning) == (DEFAULT_WATCHDOG_S, "armed", None)
    assert plan_watchdog(9, driver=_PumpWithWatchdog()).seconds == 9
    off = plan_watchdog(0, driver=_PumpWithWatchdog())
    assert off.seconds == 0 and off.state == "off" and off.warning is not None
    assert "safe=0" in off.warning and off.header() == {"watchdog": "off",
                                                        "watchdog_note": "safe=0 in the pump URL"}
    # A Modbus URL sets it with watchdog=, and the messages say so.
    modbus_off = plan_watchdog(0, driver=_PumpWithWatchdog(), url_param="watchdog")
    assert modbus_off.warning is not None and "(watchdog=0)" in modbus_off.warning
    assert "safe" not in modbus_off.warning
    absent = plan_watchdog(None, driver=_Pump())
    assert absent.seconds is None and absent.state == "absent"
    assert absent.warning is not None and "no watchdog" in absent.warning


def test_a_signal_while_the_pump_is_being_opened_ends_the_session_aborted(
        tmp_path: Path) -> None:
    """SIGTERM while `pumpctl run` waits for a pump that does not answer: nothing infuses yet,
    so the session ends at once, aborted (exit 5), instead of after its timeouts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    opts = RunOptions(plan=STANDARD, weight_kg=70, journal_dir=tmp_path,
                      pump_url=f"newera+tcp://127.0.0.1:{port}?timeout=30")
    timer.start()
    try:
        with open(os.devnull, "w") as null, \
                pytest.raises(RunAborted, match="SIGTERM before the pump was started") as info:
            execute(opts, Console(file=null))
    finally:
        timer.cancel()
        listener.close()
    assert info.value.exit_code == 5
    assert not list(tmp_path.glob("*.jsonl"))  # no run began


class _ClosingPipe(io.StringIO):
    """A terminal whose reader goes away after a while: writes then fail with EPIPE."""

    def __init__(self, after_s: float) -> None:
        super().__init__()
        self.closes_at = time.monotonic() + after_s

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if time.monotonic() >= self.closes_at:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_a_closed_output_pipe_stops_the_run_as_sigpipe_would_have(tmp_path: Path) -> None:
    """The reader of the output went away (`pumpctl run ... | head`): the next write fails
    with EPIPE, and the run stops, journaled as SIGPIPE, exit 5. (Here the live display's
    own refresh thread makes that write: the stop is handed to the loop.)"""
    stream = TolerantStream(_ClosingPipe(after_s=1.5))  # type: ignore[arg-type]
    opts = RunOptions(plan=STANDARD, weight_kg=70, journal_dir=tmp_path, speed=20.0)
    with pytest.raises(RunAborted, match=r"SIGPIPE \(output closed\)") as info:
        execute(opts, Console(file=cast(TextIO, stream)))
    assert info.value.exit_code == 5 and isinstance(stream.lost, BrokenPipeError)
    assert info.value.result is not None and info.value.result.stop_confirmed

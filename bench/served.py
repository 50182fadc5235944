"""A simulator in its own process, as the round-trip rows measure one: started, its ready
line awaited, stopped with Ctrl-C."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys


def start_simulator(kind: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`pumpctl sim KIND ARGS...` in its own process, and the ready line it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "pumpctl.cli", "sim", kind, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(20):
            proc.kill()
            raise SystemExit(f"`pumpctl sim {kind}` printed no ready line")
    return proc, proc.stdout.readline()


def stop_simulator(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)

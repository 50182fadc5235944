"""Every simulator ends cleanly on every signal that ends a process by default: Ctrl-C,
SIGTERM, a closed terminal (SIGHUP) or Ctrl-\\ (SIGQUIT) leave no dangling link, exit 0."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]


@pytest.mark.realtime
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT],
                         ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize(("kind", "extra"), [("newera", []), ("balance", ["--flow", "5 mL/h"]),
                                             ("modbus", ["--map", "vindum-vp"])])
def test_a_stop_signal_ends_the_simulator_and_removes_its_link(
        kind: str, extra: list[str], sig: int, tmp_path: Path) -> None:
    proc = subprocess.Popen([*PUMPCTL, "sim", kind, "--link", "sim", *extra], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(60), "no ready line"
        ready = proc.stdout.readline()
        assert ready.startswith(f"ready {kind} ") and " link=sim pty=/dev/pts/" in ready, ready
        assert (tmp_path / "sim").is_symlink()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and err.strip() == "stopped", err
    assert not (tmp_path / "sim").exists() and not (tmp_path / "sim").is_symlink()

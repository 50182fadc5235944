"""`pumpctl sim modbus`: one ready line, a clean exit on every signal with the link removed,
a live link or port refused naming its owner, and one-line errors for bad arguments."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pumpctl.cli import main

PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]


def start(*args: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*PUMPCTL, "sim", "modbus", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(20):
            proc.kill()
            raise AssertionError("no ready line")
    return proc, proc.stdout.readline()


@pytest.mark.realtime
def test_ready_line_says_what_is_served(tmp_path: Path) -> None:
    """(A clean exit on every stop signal: tests/simulators/test_stop_signals.py.)"""
    proc, ready = start("--map", "vindum-vp", "--link", "vp", "--tcp", "127.0.0.1:0",
                        "--pumps", "2", "--fault", "busy@1m", cwd=tmp_path)
    try:
        assert re.fullmatch(r"ready modbus map=vindum-vp framer=rtu link=vp pty=/dev/pts/\d+ "
                            r"tcp=127\.0\.0\.1:\d+ units=1,2 word_order=big baud=38400 "
                            r"faults=1 speed=1\n", ready), ready
        assert (tmp_path / "vp").is_symlink()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


@pytest.mark.realtime
def test_a_live_link_and_a_port_in_use_are_refused_naming_their_owner(tmp_path: Path) -> None:
    proc, ready = start("--map", "generic", "--link", "mb", "--tcp", "127.0.0.1:0",
                        cwd=tmp_path)
    try:
        port = re.search(r"tcp=127\.0\.0\.1:(\d+)", ready)
        assert port is not None
        for args in (["--link", "mb"], ["--tcp", f"127.0.0.1:{port[1]}"]):
            second = subprocess.run([*PUMPCTL, "sim", "modbus", "--map", "generic", *args],
                                    cwd=tmp_path, capture_output=True, text=True, timeout=20)
            assert second.returncode == 2, second.stderr
            assert f"pid {proc.pid}" in second.stderr and "sim modbus" in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert (tmp_path / "mb").is_symlink()  # the first one's link is untouched
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


@pytest.mark.parametrize(("args", "names"), [
    ([], "--map"),
    (["--map", "generic"], "give --tcp HOST:PORT or --link PATH"),
    (["--map", "nosuch", "--tcp", "127.0.0.1:0"], "no such map (known: generic, isco-d"),
    (["--map", "generic", "--tcp", "localhost"], "--tcp 'localhost' must be HOST:PORT"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--framer", "ascii"], "--framer 'ascii'"),
    (["--map", "generic", "--link", "x", "--framer", "socket"], "a pty carries RTU frames"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--word-order", "middle"], "'middle'"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--unit", "248"], "--unit 248 is outside"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--unit", "247", "--pumps", "2"],
     "--pumps 2: unit ids from 247"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--baud", "100"], "--baud 100 is outside"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--speed", "max"], "--speed max"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--diameter", "90"], "--diameter 90"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--fault", "jam@1m"], "fault kind 'jam'"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--fault", "silence@1m:for=x"], "for='x'"),
    (["--map", "generic", "--tcp", "127.0.0.1:0", "--fault", "busy@1m:pump=2"],
     "no pump at unit id 2"),
])
def test_bad_arguments_are_one_line_errors(args: list[str], names: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sim", "modbus", *args])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert names in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 or names == "--map", err

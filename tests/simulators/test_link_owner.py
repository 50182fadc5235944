"""A served link or port has one owner: a second simulator refuses a live one with a one-line
error naming the owner, and replaces a link whose owner died."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pumpctl.clock import LoopClock
from simulators.newera import NewEraSimulator
from simulators.serve import PtyServer, SimulatorServeError, TcpServer
from simulators.serve.owner import port_owner, pty_owner

PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]


def test_pty_owner_is_the_process_holding_the_master(tmp_path: Path) -> None:
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    try:
        owner = pty_owner(name)
        assert owner is not None and owner.pid == os.getpid()
        link = tmp_path / "x"
        link.symlink_to(name)
        assert pty_owner(link) == owner  # through a link too
    finally:
        os.close(master)
    assert pty_owner(name) is None  # nobody holds it now
    assert pty_owner("/dev/null") is None and pty_owner(tmp_path / "missing") is None


async def test_a_live_link_is_refused_and_a_dead_ones_is_replaced(tmp_path: Path) -> None:
    link = tmp_path / "ne"
    sim = NewEraSimulator(LoopClock(), 1)
    async with sim, PtyServer(sim, link) as first:
        with pytest.raises(SimulatorServeError, match=rf"pid {os.getpid()} \(this process\)"):
            async with PtyServer(sim, link):
                pass
        assert os.readlink(link) == first.pty_name  # left alone
        # A pty that was freed: its number may well be the very one the next server gets.
        master, slave = os.openpty()
        freed = os.ttyname(slave)
        os.close(slave)
        os.close(master)
        other = tmp_path / "ne2"
        other.symlink_to(freed)
        async with PtyServer(sim, other) as second:
            assert os.readlink(other) == second.pty_name
        # A dead owner's pty number already given to someone else (here: this process, which
        # holds it open): the pty is younger than the link, so the link is stale all the same.
        master, slave = os.openpty()
        try:
            recycled = tmp_path / "ne3"
            recycled.symlink_to(os.ttyname(slave))
            made_ns = os.stat(os.ttyname(slave)).st_ctime_ns - 1_000_000
            os.utime(recycled, ns=(made_ns, made_ns), follow_symlinks=False)
            async with PtyServer(sim, recycled) as third:
                assert os.readlink(recycled) == third.pty_name
        finally:
            os.close(slave)
            os.close(master)


async def test_a_port_in_use_names_its_owner() -> None:
    sim = NewEraSimulator(LoopClock(), 1)
    async with sim, TcpServer(sim, "127.0.0.1", 0) as first:
        owner = port_owner(first.port)
        assert owner is not None and owner.pid == os.getpid()
        with pytest.raises(SimulatorServeError) as info:
            async with TcpServer(sim, "127.0.0.1", first.port):
                pass
    message = str(info.value)
    assert f"port {first.port} is in use by pid {os.getpid()}" in message
    assert "\n" not in message


# ---- two processes ---------------------------------------------------------------------------

def _ready(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """The simulator's ready line, waited for (a loaded machine starts Python slowly)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError("simulator printed no ready line")
    return proc.stdout.readline()


@contextmanager
def simulator(*args: str, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*PUMPCTL, "sim", "newera", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _refused(cwd: Path, *args: str) -> str:
    result = subprocess.run([*PUMPCTL, "sim", "newera", *args], cwd=cwd, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr


def test_a_second_simulator_refuses_a_live_link_and_port_then_replaces_a_dead_link(
        tmp_path: Path) -> None:
    link = tmp_path / "ne"
    with simulator("--link", "ne", "--tcp", "127.0.0.1:0", cwd=tmp_path) as first:
        ready = _ready(first)
        port = ready.split("tcp=127.0.0.1:")[1].split()[0]
        pty = os.readlink(link)
        error = _refused(tmp_path, "--link", "ne")
        assert f"link path ne is in use: its pty {pty} is held by pid {first.pid} " \
               "(pumpctl.cli sim newera --link ne" in error
        assert os.readlink(link) == pty  # the first simulator's link is untouched
        error = _refused(tmp_path, "--link", "other", "--tcp", f"127.0.0.1:{port}")
        assert f"port {port} is in use by pid {first.pid} (pumpctl.cli sim newera" in error
        assert not (tmp_path / "other").exists()  # the link made before that is removed
        first.send_signal(signal.SIGKILL)  # dies without removing its link
        first.wait(10)
    assert link.is_symlink()
    with simulator("--link", "ne", cwd=tmp_path) as third:
        line = _ready(third)
        assert "ready newera link=ne" in line, third.stderr.read() if third.stderr else ""
        assert (owner := pty_owner(link)) is not None and owner.pid == third.pid
        third.send_signal(signal.SIGTERM)
        assert third.wait(10) == 0
    assert not link.exists() and not link.is_symlink()


def test_two_simulators_started_together_on_one_link_one_wins(tmp_path: Path) -> None:
    with simulator("--link", "ne", cwd=tmp_path) as a, simulator("--link", "ne", cwd=tmp_path) as b:
        outcomes = []
        for proc in (a, b):
            line = _ready(proc)
            if line:
                outcomes.append(("ready", proc.pid))
            else:  # EOF: it exited
                assert proc.wait(10) == 2
                assert proc.stderr is not None
                error = proc.stderr.read()
                assert "is in use" in error and len(error.splitlines()) == 1, error
                outcomes.append(("refused", proc.pid))
        assert sorted(kind for kind, _ in outcomes) == ["ready", "refused"]
        winner = next(pid for kind, pid in outcomes if kind == "ready")
        owner = pty_owner(tmp_path / "ne")
        assert owner is not None and owner.pid == winner

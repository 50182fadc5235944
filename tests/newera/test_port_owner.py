"""A pump port has one owner: the second opener is refused with one line naming the first.

Real processes on a real pty: the owner is a separate interpreter holding the port through
the project's serial transport, the second opener is the real `pumpctl pump` command. The
lock is the kernel's (flock), so SIGKILL of the owner must free the port at once, and the
owner record it leaves behind must not be believed afterwards.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import selectors
import signal
import subprocess
import sys
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from pumpctl.drivers.port_owner import owner_of
from pumpctl.drivers.serial_port import PortBusy, open_serial

OWNER = """
import asyncio, sys
from pumpctl.drivers.port_owner import describe_owner
from pumpctl.drivers.serial_port import open_serial

async def main():
    await open_serial(sys.argv[1], 19200, asyncio.Protocol())
    describe_owner("run R-1", status="unix:/tmp/x.sock")
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture(autouse=True)
def ports_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Owner records in this test's own directory (for its child processes too)."""
    monkeypatch.setenv("PUMPCTL_PORTS_DIR", str(tmp_path / "ports"))
    return tmp_path / "ports"


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Path]:
    """A pty whose far end stays open for the test, reachable through a symlink."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = tmp_path / "ne"
    path.symlink_to(os.ttyname(slave))
    os.close(slave)
    try:
        yield path
    finally:
        os.close(master)


def _start_owner(port: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(30):
            proc.kill()
            raise AssertionError(f"owner never held the port: {proc.stderr.read()}")
    assert proc.stdout.readline().strip() == "held"
    return proc


def _open_here(port: Path) -> None:
    """Open and close the port in this process (raises PortBusy if someone holds it)."""
    async def main() -> None:
        transport = await open_serial(str(port), 19200, asyncio.Protocol())
        transport.close()
        await asyncio.sleep(0.05)  # let the transport close the port
    asyncio.run(main())


def test_a_second_process_is_refused_with_the_owners_pid_and_run(link: Path) -> None:
    owner = _start_owner(link)
    try:
        found = owner_of(link)
        assert found is not None
        assert (found.pid, found.label) == (owner.pid, "run R-1")
        assert found.details == {"status": "unix:/tmp/x.sock"}
        second = subprocess.run([sys.executable, "-m", "pumpctl.cli", "pump", "--port",
                                 str(link), "status"], capture_output=True, text=True,
                                timeout=60, env=os.environ)
        assert second.returncode == 4, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"port {link} is in use by pid {owner.pid}" in lines[0]
        assert "run R-1" in lines[0] and "Traceback" not in second.stderr
        with pytest.raises(PortBusy, match=f"pid {owner.pid}"):
            _open_here(link)
    finally:
        owner.kill()
        owner.wait(10)


def test_sigkill_frees_the_port_and_its_record_is_not_believed(link: Path,
                                                                tmp_path: Path) -> None:
    owner = _start_owner(link)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(10)
    assert any((tmp_path / "ports").iterdir())  # the killed owner's record is still there...
    assert owner_of(link) is None  # ...but no process holds the lock, so nobody owns the port
    _open_here(link)  # and it opens at once: no stale lock

    # Another program holding the port with a plain flock and no record of its own: the
    # dead owner's record must not be believed; the kernel's lock table names the holder.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | "
         "os.O_NOCTTY); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
         "sys.stdin.read()", str(link)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        found = owner_of(link)
        assert found is not None and found.pid == holder.pid and found.label == ""
        with pytest.raises(PortBusy, match=f"pid {holder.pid}"):
            _open_here(link)
    finally:
        holder.kill()
        holder.wait(10)


def test_the_owner_record_goes_when_the_port_is_closed(link: Path, tmp_path: Path) -> None:
    _open_here(link)
    assert list((tmp_path / "ports").iterdir()) == []
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nothing left locked either
    finally:
        os.close(fd)


def _ready(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError("no ready line")
    return proc.stdout.readline()


@pytest.mark.realtime
def test_a_running_plan_owns_its_port_and_names_its_run(tmp_path: Path) -> None:
    """`pumpctl run` on a simulated pump over a pty; `pumpctl pump ... rate` beside it is
    refused, naming the run's pid and run id, and the run carries on untouched."""
    pumpctl = [sys.executable, "-m", "pumpctl.cli"]
    plan = Path(__file__).resolve().parents[2] / "configs/plans/ketamine-0.5mgkg-40min.yaml"
    sim = subprocess.Popen([*pumpctl, "sim", "newera", "--link", "sim", "--speed", "20"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    run = None
    try:
        assert _ready(sim).startswith("ready")
        run = subprocess.Popen([*pumpctl, "run", str(plan), "--weight", "70", "--pump",
                                "newera:sim", "--speed", "20", "--journal", "runs"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        first = _ready(run)  # "run RUN_ID journal runs/RUN_ID.jsonl"
        run_id = first.split()[1]
        # `status` would read through the run (hil_tests/test_port_owner.py); a command that
        # needs the port itself is refused, naming the run and its pid.
        second = subprocess.run([*pumpctl, "pump", "--port", "sim", "rate", "10", "mL/h"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert second.returncode == 4, second.stderr
        assert f"is in use by pumpctl run {run_id} (pid {run.pid})" in second.stderr
        assert len(second.stderr.splitlines()) == 1
        assert run.poll() is None  # the run was not disturbed
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 5  # aborted by the signal, as always
    finally:
        for proc in (run, sim):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)

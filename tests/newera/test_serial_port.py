"""The serial transport: no select() ceiling, one descriptor a port, a lost device noticed once.

These fail on the pyserial-asyncio-fast transport of before: it read through pyserial's
select(), which raises "filedescriptor out of range in select()" for a descriptor of 1024
or more, and every port cost five descriptors.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from pumpctl.clock import LoopClock
from pumpctl.drivers.base import PumpError
from pumpctl.drivers.open import open_driver
from simulators.newera import NewEraSimulator
from simulators.serve import PtyServer


@pytest.fixture(autouse=True)
def _own_ports_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUMPCTL_PORTS_DIR", str(tmp_path / "ports"))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


HIGH_FD_CLIENT = """
import asyncio, os, sys
from pathlib import Path
from pumpctl.clock import LoopClock
from pumpctl.drivers.open import open_driver
from pumpctl.drivers.serial_port import raise_open_file_limit
from simulators.newera import NewEraSimulator
from simulators.serve import PtyServer

raise_open_file_limit()
null = os.open(os.devnull, os.O_RDONLY)
while os.dup(null) < 1100:  # every number below 1100 taken: the next port gets one above
    pass

async def main():
    link = Path(sys.argv[1])
    sim = NewEraSimulator(LoopClock(), 1)
    async with sim, PtyServer(sim, link), open_driver(str(link)) as pump:
        port = [int(fd) for fd in os.listdir("/proc/self/fd")
                if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(link)]
        rate = await pump.set_rate(52.5)
        status = await pump.status()
        print(min(port), rate, status.rate_ml_h)

asyncio.run(main())
"""


def test_a_port_above_descriptor_1024_works(tmp_path: Path) -> None:
    """In a fresh process (a test worker's own threads may free low descriptors at any
    moment), with every descriptor below 1100 taken, a driver round trip still works."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1300:
        pytest.skip("the hard limit on open files is below 1300 here")
    done = subprocess.run([sys.executable, "-c", HIGH_FD_CLIENT, str(tmp_path / "ne")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fd, rate, read_back = done.stdout.split()
    assert int(fd) > 1024 and float(rate) == 52.5 and float(read_back) == 52.5


async def test_one_descriptor_per_port(tmp_path: Path) -> None:
    links = [tmp_path / f"ne{i}" for i in range(3)]
    sim = NewEraSimulator(LoopClock(), 1)
    async with sim, PtyServer(sim, links[0]):
        before = _open_fds()
        async with open_driver(str(links[0])) as pump:
            assert pump.identity is not None
            assert _open_fds() - before == 1  # the port; pyserial's abort pipes are closed
        await asyncio.sleep(0.05)
        assert _open_fds() == before  # and it is gone once closed


async def test_a_device_that_goes_away_fails_requests_at_once(tmp_path: Path) -> None:
    """Unplugging (here: the pty's far end closing) ends the connection once; requests
    then fail with a pump error instead of waiting out their timeouts or spinning."""
    link = tmp_path / "ne"
    sim = NewEraSimulator(LoopClock(), 1)
    async with sim:
        server = PtyServer(sim, link)
        await server.__aenter__()
        async with open_driver(f"newera://{link}?timeout=5&retries=0") as pump:
            assert pump.identity is not None
            server.close()  # the device is gone
            with pytest.raises(PumpError, match="connection lost") as info:
                await pump.status()
            assert "timed out" not in str(info.value)  # noticed, not waited out

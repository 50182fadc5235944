"""The OS path: driver and simulator over a real pty (and TCP), and the pty serving rules."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import serial

from pumpctl.clock import LoopClock, wait_until
from pumpctl.drivers.base import PumpState
from pumpctl.drivers.newera.codec import encode_request
from pumpctl.drivers.open import PumpConnectionError, open_driver
from simulators.newera import NewEraSimulator, SimPumpConfig
from simulators.serve import PtyServer, SimulatorServeError, TcpServer


@pytest.mark.realtime
async def test_driver_over_pty_runs_and_watchdog_fires_after_it_leaves(tmp_path: Path) -> None:
    link = tmp_path / "ne"
    clock = LoopClock()
    sim = NewEraSimulator(clock, 1, baud=19200)
    async with sim, PtyServer(sim, link) as server:
        async with open_driver(f"newera://{link}?safe=1&timeout=0.5") as d:
            assert server.client_attached
            assert d.safe_s == 1
            await d.set_rate(52.5)
            await d.run()
            await asyncio.sleep(1.5)  # longer than the watchdog: the heartbeat keeps it alive
            status = await d.status()
            assert status.state is PumpState.INFUSING and status.infused_ml > 0
        # the process "died" without stopping the pump: the pump stops itself
        assert await wait_until(lambda: not sim.pump(0).model.running, clock, timeout=5)
        assert [a for _, a in sim.pump(0).alarm_log] == ["power_reset", "watchdog"]
    assert not link.exists()


async def test_driver_over_tcp_with_two_pumps() -> None:
    sim = NewEraSimulator(LoopClock(), 2)
    async with sim, TcpServer(sim, "127.0.0.1", 0) as server:
        async with open_driver(f"newera+tcp://127.0.0.1:{server.port}?address=1") as d:
            assert d.identity is not None and d.identity.address == 1
            assert await d.set_rate(7.5) == 7.5
        assert sim.unit(1).rate == (7.5, "MH") and sim.unit(0).rate == (0.0, "MH")


async def test_nothing_is_queued_for_a_client_that_is_not_there(tmp_path: Path) -> None:
    link = tmp_path / "ne"
    sim = NewEraSimulator(LoopClock(), [SimPumpConfig(safe_s=5)])
    async with sim, PtyServer(sim, link) as server:
        await asyncio.sleep(0.1)  # let the server see there is no client
        assert not server.client_attached
        sim.unit(0).raise_alarm("S")  # safe mode: an auto-alarm packet, with nobody listening
        assert server.dropped_bytes > 0
        port = await asyncio.to_thread(serial.Serial, str(link), 19200, timeout=0.3)
        try:
            assert await asyncio.to_thread(port.read, 64) == b""  # the packet was not kept
            await asyncio.to_thread(port.write, encode_request(0, "", safe=True))
            reply = await asyncio.to_thread(port.read, 9)
            assert reply[2:7] == b"00A?S"  # the pending alarm, as the reply to a command
        finally:
            port.close()


@pytest.mark.realtime
async def test_no_client_means_no_spinning_and_reconnects_work(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               ) -> None:
    calls = 0
    original = PtyServer._read_some

    def counting(self: PtyServer, *, watching: bool) -> None:
        nonlocal calls
        calls += 1
        original(self, watching=watching)

    monkeypatch.setattr(PtyServer, "_read_some", counting)
    link = tmp_path / "ne"
    sim = NewEraSimulator(LoopClock(), 1)
    async with sim, PtyServer(sim, link, poll_s=0.05):
        await asyncio.sleep(0.5)
        assert calls < 30  # one look per poll period, not a busy loop on EIO
        for _ in range(2):  # a client comes, goes, and the next one is served as well
            async with open_driver(str(link)) as d:
                assert d.identity is not None
            await asyncio.sleep(0.1)


async def test_stale_link_replaced_and_foreign_link_left_alone(tmp_path: Path) -> None:
    link = tmp_path / "ne"
    link.symlink_to(tmp_path / "gone")  # left by a simulator that was killed
    sim = NewEraSimulator(LoopClock(), 1)
    async with sim:
        async with PtyServer(sim, link) as server:
            assert os.readlink(link) == server.pty_name
            link.unlink()
            link.symlink_to("/dev/null")  # someone else took the name meanwhile
        assert os.readlink(link) == "/dev/null"  # not ours: not removed
        link.unlink()
        link.write_text("not a link")
        with pytest.raises(SimulatorServeError, match="not a symlink"):
            async with PtyServer(sim, link):
                pass


async def test_open_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(PumpConnectionError, match="cannot open") as info:
        async with open_driver(str(tmp_path / "missing")):
            pass
    assert "\n" not in str(info.value)

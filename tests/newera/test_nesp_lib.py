"""An unmodified third-party client (nesp-lib 2.0.0) drives the simulator over a real pty.

nesp-lib is synchronous (pyserial, blocking reads without a timeout, a heartbeat thread), so it
runs in a worker thread while the simulator serves the pty from this test's event loop, in
real time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import nesp_lib
import pytest

from pumpctl.clock import LoopClock
from simulators.faults import Fault, FaultKind
from simulators.newera import NewEraSimulator
from simulators.serve import PtyServer

pytestmark = pytest.mark.realtime  # separate processes or threads on the wall clock


async def test_nesp_lib_identifies_configures_runs_reads_and_stops(tmp_path: Path) -> None:
    link = tmp_path / "ne"
    sim = NewEraSimulator(LoopClock(), 1)
    async with sim, PtyServer(sim, link):

        def client() -> dict[str, object]:
            seen: dict[str, object] = {}
            with nesp_lib.Port(str(link), baud_rate=19200) as port:
                # its constructor sends SAF0 safe-framed, expects the power-up alarm, retries
                pump = nesp_lib.Pump(port)
                seen["model"] = pump.model_number
                seen["firmware"] = pump.firmware_version
                pump.syringe_diameter_mm = 26.59
                pump.pumping_direction = nesp_lib.PumpingDirection.INFUSE
                pump.pumping_volume_ml = 5.0
                pump.pumping_rate_ml_per_min = 0.875  # 52.5 mL/h, sent as 875 µL/min
                seen["diameter"] = pump.syringe_diameter_mm
                seen["volume"] = pump.pumping_volume_ml
                seen["rate"] = pump.pumping_rate_ml_per_min
                seen["direction"] = pump.pumping_direction
                pump.run(wait_while_running=False)
                seen["running"] = pump.status
                # Ask until the counter shows delivery (each query is a real round trip on the
                # pty; 52.5 mL/h passes 1 uL in about 70 ms), rather than sleeping a guess.
                infused, give_up = 0.0, time.monotonic() + 5.0
                while infused <= 0.001 and time.monotonic() < give_up:
                    infused = pump.volume_infused_ml
                seen["infused"] = infused
                pump.stop()  # first STP pauses: nesp waits until not running
                seen["after_stop"] = pump.status
                pump.stop()
                seen["after_second_stop"] = pump.status
                pump.volume_infused_clear()
                seen["cleared"] = pump.volume_infused_ml
            return seen

        seen = await asyncio.to_thread(client)
    assert seen["model"] == 1000 and seen["firmware"] == (3, 928)
    assert seen["diameter"] == 26.59
    assert seen["volume"] == 5.0
    assert seen["rate"] == pytest.approx(0.875)
    assert seen["direction"] is nesp_lib.PumpingDirection.INFUSE
    assert seen["running"] is nesp_lib.Status.INFUSING
    infused = seen["infused"]
    assert isinstance(infused, float) and 0.001 < infused < 0.1  # moving; read well before 0.1 mL
    assert seen["after_stop"] is nesp_lib.Status.PAUSED
    assert seen["after_second_stop"] is nesp_lib.Status.STOPPED
    assert seen["cleared"] == 0.0
    assert sim.pump(0).model.rate_ml_h == pytest.approx(52.5)


async def test_nesp_lib_safe_mode_heartbeat_and_watchdog_alarm(tmp_path: Path) -> None:
    """nesp-lib's heartbeat thread keeps an armed pump alive; a lost reply hangs the client,
    so the pump's watchdog fires and the client sees the auto-alarm.

    This runs on the wall clock against nesp-lib's own thread, which sends a heartbeat after
    half the watchdog time without a command. Under heavy CPU load that thread was once late
    by more than the other half (watchdog 2 s, heartbeat 1 s): the watchdog fired during the
    quiet wait, its packet desynchronised nesp-lib's replies, and a read without a timeout
    then waited forever for a reply that never came (the 30 s wait timed out). Now the
    watchdog is 4 s (2 s of slack for the heartbeat), a watchdog that fires before the lost
    reply is reported as such, and a client that hangs is unblocked by closing the pty, so
    the test fails at once with the reason instead of hanging.
    """
    link = tmp_path / "ne"
    loop = asyncio.get_running_loop()
    sim = NewEraSimulator(LoopClock(), 1)
    thread_errors: list[BaseException] = []
    old_hook = threading.excepthook
    dropped_at: list[float] = []

    def hook(args: threading.ExceptHookArgs) -> None:  # nesp's heartbeat thread may see it too
        if args.exc_value is not None:
            thread_errors.append(args.exc_value)

    def drop_next_reply() -> None:
        dropped_at.append(sim.clock.monotonic())
        sim.pump(0).apply(Fault(FaultKind.DROP_REPLIES, params={"count": 1}))

    threading.excepthook = hook
    try:
        async with sim, PtyServer(sim, link) as server:

            def client() -> dict[str, object]:
                seen: dict[str, object] = {}
                with nesp_lib.Port(str(link), baud_rate=19200) as port:
                    pump = nesp_lib.Pump(port)
                    pump.pumping_rate_ml_per_min = 1.0
                    pump.safe_mode_timeout_s = 4  # safe mode; nesp's heartbeat runs every 2 s
                    seen["safe"] = pump.safe_mode_timeout_s
                    pump.run(wait_while_running=False)
                    time.sleep(5.0)  # longer than the watchdog: only the heartbeat feeds it
                    seen["alive"] = pump.status
                    # The client hangs: one reply is lost and nesp-lib waits for it forever,
                    # holding its port lock, so its heartbeat stops too. The pump's watchdog
                    # fires and its auto-alarm packet is what the blocked read finally gets.
                    loop.call_soon_threadsafe(drop_next_reply)
                    try:
                        pump.status  # noqa: B018 - the property sends a status query
                    except nesp_lib.StatusAlarmException as exc:
                        seen["alarm"] = exc.alarm_status
                    # The auto packet does not acknowledge the alarm: the next command (ours,
                    # or nesp-lib's heartbeat thread's, whichever gets its lock first) is
                    # answered with it and acknowledges it; then the pump is plainly stopped.
                    for _ in range(2):
                        try:
                            seen["after"] = pump.status
                        except nesp_lib.StatusAlarmException as exc:
                            seen["acknowledged"] = exc.alarm_status
                    pump.safe_mode_timeout_s = 0
                return seen

            worker = asyncio.ensure_future(asyncio.to_thread(client))
            done, _ = await asyncio.wait({worker}, timeout=30)
            if not done:
                server.close()  # nesp-lib's blocked read ends (EIO) instead of hanging on
                await asyncio.wait({worker}, timeout=10)
            alarms = list(sim.pump(0).alarm_log)
            early = [t for t, a in alarms if a == "T" and (not dropped_at or t < dropped_at[0])]
            assert not early, (f"the watchdog fired at t={early[0]:.2f} s, before the reply was "
                               f"dropped (t={dropped_at[0] if dropped_at else '-'}): nesp-lib's "
                               "heartbeat thread was starved for over 2 s")
            assert done, "the nesp-lib client hung (pty closed to end it)"
            seen = worker.result()
    finally:
        threading.excepthook = old_hook
    assert seen["safe"] == 4
    assert seen["alive"] is nesp_lib.Status.INFUSING
    assert seen["alarm"] is nesp_lib.AlarmStatus.TIMEOUT  # the client saw the watchdog fire
    in_heartbeat = [getattr(e, "alarm_status", None) for e in thread_errors]
    acknowledged = [seen.get("acknowledged"), *in_heartbeat]
    assert acknowledged.count(nesp_lib.AlarmStatus.TIMEOUT) == 1  # reported once more, then done
    assert seen["after"] is nesp_lib.Status.STOPPED
    assert [a for _, a in alarms] == ["R", "T"]

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
from types import FrameType

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

    This test used to hang now and then under load (its 30 s wait timed out). The stacks of a
    hang showed nesp-lib's own race: its heartbeat thread picks the framing (safe, from the
    pump object's flag) before it waits for the port lock. If it is waiting there while the
    client turns safe mode off (`SAF0`), it then sends a safe-framed status to a pump now in
    basic mode, which answers in basic framing, as the protocol says; nesp-lib reads the
    reply's first character as a safe-frame length and waits forever for bytes that never
    come, and `safe_mode_timeout_s = 0` joins that thread forever. The heartbeat queues on the
    lock whenever a command takes longer than half the watchdog, which is exactly what the
    lost reply does. So the client now turns safe mode off only once the heartbeat thread is
    back in its idle wait; and a hang, should another one appear, ends the test at once with
    every thread's stack instead of leaving it blocked.
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
                    pump.safe_mode_timeout_s = 2  # safe mode; nesp's heartbeat runs every 1 s
                    seen["safe"] = pump.safe_mode_timeout_s
                    pump.run(wait_while_running=False)
                    time.sleep(3.5)  # longer than the watchdog: only the heartbeat feeds it
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
                    _wait_until_heartbeat_idle()
                    pump.safe_mode_timeout_s = 0
                return seen

            worker = asyncio.ensure_future(asyncio.to_thread(client))
            done, _ = await asyncio.wait({worker}, timeout=30)
            stacks = ""
            if not done:
                stacks = _thread_stacks()
                server.close()  # nesp-lib's blocked read ends (EIO) instead of hanging on
                await asyncio.wait({worker}, timeout=10)
            alarms = list(sim.pump(0).alarm_log)
            early = [t for t, a in alarms
                     if a == "watchdog" and (not dropped_at or t < dropped_at[0])]
            assert not early, (f"the watchdog fired at t={early[0]:.2f} s, before the reply was "
                               f"dropped (t={dropped_at[0] if dropped_at else '-'}): nesp-lib's "
                               "heartbeat thread was starved for over 2 s")
            assert done, (f"the nesp-lib client hung (pty closed to end it); alarms {alarms}, "
                          f"reply dropped at {dropped_at}; threads:\n{stacks}")
            seen = worker.result()
    finally:
        threading.excepthook = old_hook
    assert seen["safe"] == 2
    assert seen["alive"] is nesp_lib.Status.INFUSING
    assert seen["alarm"] is nesp_lib.AlarmStatus.TIMEOUT  # the client saw the watchdog fire
    in_heartbeat = [getattr(e, "alarm_status", None) for e in thread_errors]
    acknowledged = [seen.get("acknowledged"), *in_heartbeat]
    assert acknowledged.count(nesp_lib.AlarmStatus.TIMEOUT) == 1  # reported once more, then done
    assert seen["after"] is nesp_lib.Status.STOPPED
    assert [a for _, a in alarms] == ["power_reset", "watchdog"]


def _thread_stacks() -> str:
    """Where every thread is now (for a hang: which read, in which nesp-lib call)."""
    import sys
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(f"-- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
                     for ident, frame in sys._current_frames().items())


def _wait_until_heartbeat_idle(timeout_s: float = 10.0) -> None:
    """Block until nesp-lib's heartbeat thread waits on its timer, not on the port lock (a
    status it sends after `SAF0` would be framed for safe mode: see the test's docstring)."""
    import sys

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        beats = [t for t in threading.enumerate() if "__heartbeat" in t.name]
        frames = sys._current_frames()
        if all(_idle(frames.get(t.ident)) for t in beats if t.is_alive()):
            return
        time.sleep(0.01)
    raise AssertionError("nesp-lib's heartbeat thread never went back to its idle wait")


def _idle(frame: FrameType | None) -> bool:
    """True if this heartbeat frame stack is in Event.wait and not inside a command."""
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return "__heartbeat" in names and "wait" in names and "__command_transceive" not in names

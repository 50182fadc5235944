"""Acceptance: SIGKILL a `pumpctl run` process; the pump's own watchdog stops the pump, and
`pumpctl run --resume` completes the plan from the reconciled volume.

These scenarios need separate processes talking over a real pty, so they run on real
(accelerated) time rather than the virtual loop, and wait on the journal file that the other
process writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pumpctl.drivers.base import AlarmKind
from pumpctl.drivers.open import open_driver
from pumpctl.journal import read_records
from pumpctl.timescale import run_at_speed

from .conftest import REPO, STANDARD_PLAN
from .kinds import SimKind

pytestmark = pytest.mark.realtime  # separate processes or threads on the wall clock

PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]


@contextmanager
def process(args: list[str], *, ready: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """A child process, stopped (TERM, then KILL) when the block ends."""
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        if ready is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # blocks until the simulator says it is serving
            assert ready in line, (line, proc.stderr.read() if proc.stderr else "")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll another process's output (a file) until `predicate` holds: there is no event to
    wait on across processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def journal_samples(journal_dir: Path) -> list[dict[str, Any]]:
    files = list(journal_dir.glob("*.jsonl"))
    if not files:
        return []
    return [r for r in read_records(files[0]) if r["type"] == "sample"]


def inspect_pump(url: str, speed: float = 1.0) -> tuple[Any, Any]:
    async def main() -> tuple[Any, Any]:
        async with open_driver(url) as driver:
            return driver.alarm_at_open, await driver.status()

    return run_at_speed(main(), speed)


def test_sigkill_leaves_the_pump_to_its_watchdog(sim_kind: SimKind, tmp_path: Path) -> None:
    sim_kind.needs_watchdog("after SIGKILL nothing stops it but the plan's end")
    link, journal = tmp_path / "pump", tmp_path / "runs"
    safe_s, poll_s = 1, 0.2
    url = sim_kind.url(link, safe_s, None)
    with process([*PUMPCTL, *sim_kind.serve_args(link)], ready="ready"):
        with process([*PUMPCTL, "run", str(STANDARD_PLAN), "--weight", "70", "--pump", url,
                      "--poll", str(poll_s), "--journal", str(journal), "--json"]) as run:
            samples = wait_for(lambda: len(s := journal_samples(journal)) >= 5 and s, 30,
                               "the run to journal five samples")
            assert samples[-1]["state"] == "infusing"
            os.kill(run.pid, signal.SIGKILL)
            run.wait(5)
            killed_at = time.monotonic()
        assert run.returncode == -signal.SIGKILL
        # Connecting would feed the watchdog, so give it its timeout (real time, in another
        # process: nothing to wait on but the clock) before looking.
        time.sleep(max(0.0, killed_at + safe_s + 0.5 - time.monotonic()))
        alarm, status = inspect_pump(url)
    assert alarm is not None and alarm.kind is AlarmKind.WATCHDOG
    assert not status.state.is_moving
    records = read_records(next(journal.glob("*.jsonl")))
    assert records[-1]["type"] == "sample"  # no summary: the process died mid-run
    last = records[-1]["infused_ml"]
    # Stopped within the watchdog timeout of the last journaled sample (plus one poll).
    assert last <= status.infused_ml <= last + 52.5 * (poll_s + safe_s + 0.5) / 3600
    assert status.infused_ml < 35.0


def test_resume_after_sigkill_completes_the_plan(sim_kind: SimKind, tmp_path: Path) -> None:
    """Both processes run 400x real time: the 40-minute standard plan takes 6 s. Times in the
    URL and options are simulated seconds (watchdog 240 s = 0.6 s real). The windows are
    wide in real time (no status for 150 s = 0.375 s, a request timeout of 60 s = 0.15 s),
    so a busy machine descheduling either process for a moment does not end the run."""
    sim_kind.needs_watchdog("the resume relies on the watchdog having stopped the pump")
    link, journal = tmp_path / "pump", tmp_path / "runs"
    speed, safe_s, poll_s = 400, 240, 60
    url = sim_kind.url(link, safe_s, 60)
    common = ["--pump", url, "--speed", str(speed), "--poll", str(poll_s),
              "--journal", str(journal), "--json"]
    with process([*PUMPCTL, *sim_kind.serve_args(link), "--speed", str(speed)],
                 ready=f"speed={speed}"):
        with process([*PUMPCTL, "run", str(STANDARD_PLAN), "--weight", "70", *common]) as run:
            wait_for(lambda: (s := journal_samples(journal)) and s[-1]["infused_ml"] > 10.0, 30,
                     "a third of the plan to be delivered")
            os.kill(run.pid, signal.SIGKILL)
            run.wait(5)
            killed_at = time.monotonic()
        first = next(journal.glob("*.jsonl"))
        time.sleep(max(0.0, killed_at + (safe_s + 10) / speed - time.monotonic()))
        resumed = subprocess.run([*PUMPCTL, "run", "--resume", first.stem, *common], cwd=REPO,
                                 capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["outcome"] == "completed"
    assert result["delivered_volume_ml"] == pytest.approx(35.0, abs=0.011)
    records = read_records(Path(result["journal_path"]))
    header = records[0]
    assert header["resume_of"] == first.stem
    assert 10.0 < header["baseline_ml"] < 35.0
    # The resumed run delivered only what remained, at the plan's rate.
    counter_end = [r for r in records if r["type"] == "sample"][-1]["counter_ml"]
    assert counter_end + header["baseline_ml"] == pytest.approx(35.0, abs=0.011)
    assert records[-1]["type"] == "summary" and records[-1]["outcome"] == "completed"
    assert header["pump_alarm_at_open"] == "watchdog"

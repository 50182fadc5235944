"""Acceptance (issue 9 item 5, the part that goes through the controller): beside a running
`pumpctl run`, `pumpctl pump ... status | dispensed | watch` read the pump through the run and
never open its port, so the run is not disturbed; commands that would drive the pump are
refused with the run's pid and id. Separate processes on a real pty, as on a bench.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pumpctl.journal import read_records

from .conftest import REPO, STANDARD_PLAN
from .kinds import SimKind
from .test_kill import PUMPCTL, journal_samples, process, wait_for


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PUMPCTL_RUNTIME_DIR": str(tmp_path / "rt")}


@pytest.fixture
def running(sim_kind: SimKind, tmp_path: Path,
            env: dict[str, str]) -> Iterator[tuple[Path, Path, int]]:
    """A simulated pump on a pty and a `pumpctl run` infusing on it."""
    link, journal = tmp_path / "pump", tmp_path / "runs"
    with process([*PUMPCTL, *sim_kind.serve_args(link)], ready="ready"):
        run = subprocess.Popen(
            [*PUMPCTL, "run", str(STANDARD_PLAN), "--weight", "70", "--pump",
             sim_kind.url(link, None, None), "--poll", "0.2", "--journal", str(journal),
             "--json"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(lambda: len(s := journal_samples(journal)) >= 3
                     and s[-1]["state"] == "infusing", 60, "the run to be infusing")
            yield link, journal, run.pid
            os.kill(run.pid, signal.SIGTERM)
            run.wait(30)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()


def pump(env: dict[str, str], link: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUMPCTL, "pump", "--port", str(link), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_reading_a_running_pump_goes_through_the_run(sim_kind: SimKind,
                                                     running: tuple[Path, Path, int],
                                                     env: dict[str, str]) -> None:
    link, journal, pid = running
    run_id = next(journal.glob("*.jsonl")).stem
    status = pump(env, link, "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["state"] == "infusing" and shown["via_run"] == f"{run_id} (pid {pid})"
    # The same pump under another name (the pty itself, not the link) is the same port.
    dispensed = pump(env, Path(os.path.realpath(link)), "dispensed", "--json")
    assert dispensed.returncode == 0, dispensed.stderr
    assert json.loads(dispensed.stdout)["infused_ml"] >= shown["infused_ml"]
    # Driving it is refused, naming the owner.
    for args in (["rate", "10", "mL/h"], ["stop"]):
        refused = pump(env, link, *args)
        assert refused.returncode == 4, (args, refused.stderr)
        assert f"in use by pumpctl run {run_id} (pid {pid})" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    # So is a second run on the same pump.
    second = subprocess.run(
        [*PUMPCTL, "run", str(STANDARD_PLAN), "--weight", "70", "--pump",
         sim_kind.url(link, None, None),
         "--journal", str(journal.parent / "second")], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=60)
    assert second.returncode == 4, second.stderr
    assert f"in use by pumpctl run {run_id} (pid {pid})" in second.stderr
    # Watching follows the run's samples.
    watch = subprocess.Popen([*PUMPCTL, "pump", "--port", str(link), "watch", "--json"],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert watch.stdout is not None
        lines = [json.loads(watch.stdout.readline()) for _ in range(3)]
        assert all(line["via_run"] == run_id for line in lines)
        assert lines[-1]["infused_ml"] >= lines[0]["infused_ml"]
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(30)
    assert watch.returncode == 0
    # None of it disturbed the run: no alarm, no failed request, still infusing.
    records = read_records(next(journal.glob("*.jsonl")))
    assert not [r for r in records if r["type"] == "alarm"]
    assert not [r for r in records if r["type"] == "command" and r.get("error")]
    assert records[-1]["type"] == "sample" and records[-1]["state"] == "infusing"

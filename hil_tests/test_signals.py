"""Acceptance (issue 9 item 3): every signal that would end `pumpctl run` ends it with the pump
stopped and the stop confirmed, the cause journaled, a summary and a message, exit 5; after
SIGKILL the pump's own watchdog, armed by default, stops it.

The run and the simulated pump are separate processes on a real pty, and whether the pump
stopped is read from the simulator's side by a third process after the run has exited, never
taken from the dying process. A pump stopped by the run (not by its watchdog) shows no
watchdog alarm when it is opened again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pumpctl.drivers.base import AlarmKind
from pumpctl.drivers.open import parse_pump_url
from pumpctl.journal import read_records

from .conftest import REPO, STANDARD_PLAN
from .kinds import KINDS, SimKind
from .test_kill import PUMPCTL, inspect_pump, journal_samples, process, wait_for

POLL_S = 0.2


@pytest.fixture(scope="module", params=list(KINDS.values()), ids=str)
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimKind, Path]]:
    """One simulated pump of each kind on a pty for the whole module (each run clears its
    counters and acknowledges what the previous test left, as on a bench): a simulator
    process less per test."""
    kind: SimKind = request.param
    path = tmp_path_factory.mktemp("sim") / "pump"
    with process([*PUMPCTL, *kind.serve_args(path)], ready="ready"):
        yield kind, path


@pytest.fixture
def url(served: tuple[SimKind, Path]) -> str:
    """The pump URL a user would give: no watchdog time (the run's default applies)."""
    kind, path = served
    return kind.url(path, None, None)


def start_run(url: str, journal: Path, *extra: str,
              stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*PUMPCTL, "run", str(STANDARD_PLAN), "--weight", "70", "--pump", url,
         "--poll", str(POLL_S), "--journal", str(journal), *extra],
        cwd=REPO, stdout=stdout, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL, start_new_session=True)


def wait_infusing(journal: Path) -> list[dict[str, Any]]:
    return wait_for(lambda: len(s := journal_samples(journal)) >= 3
                    and s[-1]["state"] == "infusing" and s, 30, "the run to be infusing")


def assert_stopped_by_the_run(kind: SimKind, url: str, records: list[dict[str, Any]]) -> None:
    """The pump, as a new client finds it: stopped, no watchdog alarm (it was the run's stop),
    its counter where the run's summary says."""
    alarm, status = inspect_pump(url)
    assert not status.state.is_moving, status
    assert alarm is None or alarm.kind is not AlarmKind.WATCHDOG, alarm
    summary = records[-1]
    assert summary["type"] == "summary" and summary["stop_confirmed"] is True
    # A pump that cannot clear its counter (ISCO) counts on from where the run found it.
    before = 0.0 if kind.clears_counters else next(
        r["args"]["infused_before_ml"] for r in records
        if r["type"] == "command" and r["op"] == "clear_counters")
    assert status.infused_ml - before == pytest.approx(summary["delivered_volume_ml"],
                                                       abs=0.002)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT],
                         ids=lambda s: signal.Signals(s).name)
def test_a_signal_stops_the_pump_and_ends_the_run_aborted(sig: int, served: tuple[SimKind, Path],
                                                          url: str, tmp_path: Path) -> None:
    journal = tmp_path / "runs"
    run = start_run(url, journal)
    try:
        wait_infusing(journal)
        os.kill(run.pid, sig)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    records = read_records(next(journal.glob("*.jsonl")))
    name = signal.Signals(sig).name
    assert run.returncode == 5, (run.returncode, out, err)
    assert "Traceback" not in err and f"aborted: {name if sig != signal.SIGINT else 'Ctrl-C'}" \
        in err, err
    assert "run summary" in out  # the summary reaches the operator
    stops = [r for r in records if r["type"] == "state" and r["state"] == "stopping"]
    assert stops and stops[0]["sender"] == "signal", stops
    assert records[-1]["outcome"] == "aborted"
    assert_stopped_by_the_run(served[0], url, records)


def test_closing_the_terminal_stops_the_pump(served: tuple[SimKind, Path], url: str,
                                             tmp_path: Path) -> None:
    """The terminal really goes away (tmux server killed) under an interactive shell, which
    passes the hang-up on to its foreground job as a shell does: SIGHUP, and every later write
    to the terminal fails. The run still stops the pump, journals why, and exits 5."""
    journal, rc = tmp_path / "runs", tmp_path / "rc"
    server = f"pumpctl-hup-{os.getpid()}"
    # The job survives the hang-up only to record pumpctl's exit code (`trap :` is reset
    # to the default for pumpctl itself by exec).
    job = (f"bash -c 'trap : HUP; cd {REPO} && {' '.join(PUMPCTL)} run {STANDARD_PLAN} "
           f"--weight 70 --pump {url} --poll {POLL_S} --journal {journal}; "
           f"echo $? > {rc}'")
    subprocess.run(["tmux", "-L", server, "new-session", "-d", "-s", "run", "-x", "100",
                    "-y", "40", "bash --norc --noprofile -i"], check=True)
    try:
        subprocess.run(["tmux", "-L", server, "send-keys", "-t", "run", job, "Enter"],
                       check=True)
        wait_infusing(journal)
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], check=False)
    wait_for(lambda: rc.exists() and rc.read_text().strip(), 30, "the run to exit")
    records = read_records(next(journal.glob("*.jsonl")))
    assert rc.read_text().strip() == "5", records[-3:]
    assert records[-1]["outcome"] == "aborted" and "SIGHUP" in records[-1]["reason"]
    assert_stopped_by_the_run(served[0], url, records)


def test_a_closed_output_pipe_costs_the_output_not_the_stop(served: tuple[SimKind, Path],
                                                            url: str, tmp_path: Path) -> None:
    """stdout's reader is gone (`pumpctl run ... | head` after head exited): the stop on
    SIGTERM still happens and the exit is still 5, without a traceback."""
    journal = tmp_path / "runs"
    run = start_run(url, journal)
    try:
        wait_infusing(journal)
        assert run.stdout is not None
        run.stdout.close()
        os.kill(run.pid, signal.SIGTERM)
        run.wait(30)
        err = run.stderr.read() if run.stderr else ""
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 5, (run.returncode, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    records = read_records(next(journal.glob("*.jsonl")))
    assert_stopped_by_the_run(served[0], url, records)


def test_ctrl_z_does_not_freeze_a_run_nor_a_stray_sigpipe_end_it(url: str,
                                                                  tmp_path: Path) -> None:
    """SIGTSTP would stop the controller with the pump running: refused while a run is on.
    SIGPIPE stays ignored, as in any Python program: it also comes from a broken connection
    to the MQTT broker, which must not stop an infusion. (A closed output pipe does end the
    run: tests/controller/test_session_signals.py.)"""
    journal = tmp_path / "runs"
    run = start_run(url, journal)
    try:
        wait_infusing(journal)
        os.kill(run.pid, signal.SIGPIPE)
        os.kill(run.pid, signal.SIGTSTP)
        count = len(journal_samples(journal))
        wait_for(lambda: len(journal_samples(journal)) >= count + 5, 30,
                 "the run to go on after SIGPIPE and SIGTSTP")
        state = Path(f"/proc/{run.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state != "T", "the process was stopped"
        os.kill(run.pid, signal.SIGTERM)
        out, _ = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 5
    assert "cannot be suspended while a pump runs" in out
    records = read_records(next(journal.glob("*.jsonl")))
    assert records[-1]["reason"] == "SIGTERM"


def test_sigkill_is_left_to_the_watchdog_armed_by_default(served: tuple[SimKind, Path],
                                                         url: str, tmp_path: Path) -> None:
    """No `safe=` in the URL: `pumpctl run` arms safe mode anyway, so a SIGKILL leaves a pump
    that stops itself within the default watchdog time."""
    served[0].needs_watchdog("nothing arms it by default")
    from pumpctl.run.watchdog import DEFAULT_WATCHDOG_S

    journal = tmp_path / "runs"
    run = start_run(url, journal)
    try:
        samples = wait_infusing(journal)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(5)
        killed_at = time.monotonic()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    header = read_records(next(journal.glob("*.jsonl")))[0]
    assert header["watchdog"] == "armed" and header["watchdog_s"] == DEFAULT_WATCHDOG_S
    # Opening the pump would feed the watchdog: give it its time (real time, another
    # process: nothing to wait on but the clock).
    time.sleep(max(0.0, killed_at + DEFAULT_WATCHDOG_S + 0.5 - time.monotonic()))
    alarm, status = inspect_pump(url)
    assert alarm is not None and alarm.kind is AlarmKind.WATCHDOG
    assert not status.state.is_moving
    last = journal_samples(journal)[-1]["infused_ml"]
    assert samples and last <= status.infused_ml <= last + 52.5 * (
        POLL_S + DEFAULT_WATCHDOG_S + 0.5) / 3600


def test_safe_0_is_warned_about_and_journaled(served: tuple[SimKind, Path],
                                              tmp_path: Path) -> None:
    kind, link = served
    kind.needs_watchdog("there is no safe mode to turn off")
    journal = tmp_path / "runs"
    url = kind.url(link, 0, None)
    param = parse_pump_url(url).watchdog_param  # safe= on New Era, watchdog= on Modbus
    run = start_run(url, journal)
    try:
        wait_infusing(journal)
        os.kill(run.pid, signal.SIGTERM)
        out, _err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    header = read_records(next(journal.glob("*.jsonl")))[0]
    assert header["watchdog"] == "off" and header["watchdog_s"] == 0
    assert f"warning: the pump's watchdog is off ({param}=0)" in out, out

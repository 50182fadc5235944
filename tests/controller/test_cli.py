"""`pumpctl run` and `pumpctl runs` from the command line: exit codes, one-line errors, JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pumpctl.cli import main
from pumpctl.journal import read_records

REPO = Path(__file__).resolve().parents[2]
STANDARD = REPO / "configs" / "plans" / "ketamine-0.5mgkg-40min.yaml"


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def test_run_on_the_simulator_in_virtual_time(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["run", str(STANDARD), "--weight", "70", "--sim", "--speed", "max",
                          "--journal", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["outcome"] == "completed"
    assert summary["delivered_volume_ml"] == pytest.approx(35.0, abs=0.01)
    records = read_records(Path(summary["journal_path"]))
    assert records[0]["speed"] == "max" and records[-1]["outcome"] == "completed"
    assert any(r["type"] == "sample" and r["measured_ml"] is not None for r in records)

    code, out, _ = cli(["runs", "list", "--journal", str(tmp_path), "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["run_id"] == summary["run_id"]
    code, out, _ = cli(["runs", "show", summary["run_id"][:20], "--journal", str(tmp_path),
                        "--json"], capsys)
    shown = json.loads(out)
    assert code == 0 and shown["run"]["outcome"] == "completed"
    assert len(shown["records"]) == len(records)
    code, out, _ = cli(["runs", "show", summary["run_id"], "--journal", str(tmp_path)], capsys)
    assert code == 0 and "delivered 35.000 of 35.000 mL" in out
    code, _, err = cli(["run", "--resume", summary["run_id"], "--journal", str(tmp_path)], capsys)
    assert code == 2 and "embedded simulator" in err and len(err.strip().splitlines()) == 1


def test_injected_fault_exits_6_with_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["run", str(STANDARD), "--weight", "70", "--speed", "max",
                          "--journal", str(tmp_path), "--sim-fault", "free-flow@5m", "--json"],
                         capsys)
    assert code == 6
    assert json.loads(out)["outcome"] == "faulted"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "faulted: over_infusion" in lines[0], err


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["--speed", "0"], 2, "--speed 0"),
    (["--speed", "fast"], 2, "--speed 'fast'"),
    (["--poll", "0"], 2, "poll interval 0.0 s"),
    (["--sim-fault", "meteor@1m"], 2, "fault kind 'meteor'"),
    (["--sim", "--pump", "/tmp/x"], 2, "--sim and --pump"),
    (["--pump", "/tmp/nowhere", "--speed", "max"], 2, "--speed max"),
    (["--pump", "/tmp/nowhere", "--sim-fault", "occlusion@1m"], 2, "--sim-fault"),
    (["--pump", "newera:///tmp/does-not-exist"], 4, "/tmp/does-not-exist"),
    (["--weight", "-3"], 2, "weight"),
])
def test_bad_input_is_one_line_and_non_zero(args: list[str], code: int, needle: str,
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    full = ["run", str(STANDARD), "--journal", str(tmp_path)]
    if "--weight" not in args:
        full += ["--weight", "70"]
    got, _, err = cli(full + args, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert got == code, err
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_missing_plan_and_unknown_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["run", "--weight", "70", "--journal", str(tmp_path)], capsys)
    assert code == 2 and "PLAN is required" in err
    code, _, err = cli(["runs", "show", "nope", "--journal", str(tmp_path)], capsys)
    assert code == 2 and "no such run" in err
    code, _, err = cli(["run", "--resume", "nope", "--journal", str(tmp_path)], capsys)
    assert code == 2 and "no such run" in err


def _wait_for_samples(journal_dir: Path, count: int, timeout_s: float = 30.0) -> None:
    """Wait until another process's run has journaled `count` samples.

    The run is in another process, so there is no event to await: its journal is polled.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = list(journal_dir.glob("*.jsonl"))
        if files and sum(r["type"] == "sample" for r in read_records(files[0])) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} samples journaled within {timeout_s} s")


@pytest.mark.realtime
@pytest.mark.parametrize(("sig", "reason"), [(signal.SIGTERM, "SIGTERM"),
                                             (signal.SIGINT, "Ctrl-C")])
def test_signals_stop_the_run(sig: int, reason: str, tmp_path: Path) -> None:
    """SIGTERM stops; Ctrl-C without a terminal stops at once. Exit 5, pump stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pumpctl.cli", "run", str(STANDARD), "--weight", "70", "--sim",
         "--speed", "20", "--journal", str(tmp_path), "--json"],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _wait_for_samples(tmp_path, 3)
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, err
    assert json.loads(out)["outcome"] == "aborted"
    records = read_records(next(tmp_path.glob("*.jsonl")))
    stopping = next(r for r in records if r["type"] == "state" and r["state"] == "stopping")
    assert stopping["reason"] == reason and stopping["sender"] == "signal"
    assert [r["state"] for r in records if r["type"] == "state"][-2:] == ["stopped", "aborted"]


@pytest.mark.realtime
def test_ctrl_c_on_a_terminal_asks_before_stopping(tmp_path: Path) -> None:
    """With a terminal on stdin, Ctrl-C asks "stop?"; answering y stops the run (exit 5)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pumpctl.cli", "run", str(STANDARD), "--weight", "70", "--sim",
         "--speed", "20", "--journal", str(tmp_path), "--json"],
        cwd=REPO, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    try:
        _wait_for_samples(tmp_path, 3)
        os.kill(proc.pid, signal.SIGINT)
        asked = b""
        assert proc.stderr is not None
        while b"stop the infusion?" not in asked:  # blocks until the question is on stderr
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, "stderr closed before the question"
            asked += chunk
        records = read_records(next(tmp_path.glob("*.jsonl")))  # still running meanwhile
        assert not any(r["type"] == "state" and r["state"] == "stopping" for r in records)
        os.write(master, b"y\n")
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, err
    records = read_records(next(tmp_path.glob("*.jsonl")))
    stopping = next(r for r in records if r["type"] == "state" and r["state"] == "stopping")
    assert stopping["sender"] == "operator" and "confirmed" in stopping["reason"]


@pytest.mark.parametrize(("text", "expected"), [("max", None), ("1", 1.0), ("60", 60.0),
                                                ("2.5x", 2.5)])
def test_speed_parsing(text: str, expected: float | None) -> None:
    from pumpctl.timescale import parse_speed

    assert parse_speed(text) == expected

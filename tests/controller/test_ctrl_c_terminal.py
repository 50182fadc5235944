"""Ctrl-C on a real terminal (issue 9 item 10), with the live display running: the question
is visible and stays visible while it waits, the answer is read, "n" carries on, a second
Ctrl-C stops at once, and no answer within the timeout stops.

A tmux server gives `pumpctl run` a real terminal; keys are sent with `send-keys` and the
screen read with `capture-pane`. Real time (the simulator at 10x): what is tested is a person
at a terminal.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pumpctl.journal import read_records

from .test_cli import REPO, STANDARD

QUESTION = "stop the infusion?"


class Terminal:
    """One tmux server with one 100x40 window running a command."""

    def __init__(self, name: str, command: str) -> None:
        self.server = name
        subprocess.run(["tmux", "-L", name, "new-session", "-d", "-s", "t", "-x", "100", "-y",
                        "40", command], check=True)

    def screen(self) -> str:
        done = subprocess.run(["tmux", "-L", self.server, "capture-pane", "-p", "-t", "t"],
                              capture_output=True, text=True, check=False)
        return done.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "-L", self.server, "send-keys", "-t", "t", *keys], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], check=False,
                       capture_output=True)


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll another process's screen or files: there is nothing to wait on across them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def terminal(request: pytest.FixtureRequest,
             tmp_path: Path) -> Iterator[tuple[Terminal, Path, Path]]:
    """`pumpctl run` on a terminal; the question's timeout is the test's (indirect) parameter,
    by default 60 s: long enough that a loaded machine never lets it lapse by itself."""
    timeout = str(getattr(request, "param", 60))
    journal, rc = tmp_path / "runs", tmp_path / "rc"
    run = shlex.join([sys.executable, "-m", "pumpctl.cli", "run", str(STANDARD), "--weight",
                      "70", "--sim", "--speed", "10", "--journal", str(journal),
                      "--prompt-timeout", timeout])
    term = Terminal(f"pumpctl-ctrlc-{os.getpid()}-{tmp_path.name}",
                    f"bash -c {shlex.quote(f'cd {REPO} && {run}; echo $? > {rc}; sleep 60')}")
    try:
        yield term, journal, rc
    finally:
        term.close()


def _samples(journal: Path) -> int:
    files = list(journal.glob("*.jsonl"))
    return sum(r["type"] == "sample" for r in read_records(files[0])) if files else 0


def _stopping(journal: Path) -> dict[str, object] | None:
    records = read_records(next(journal.glob("*.jsonl")))
    return next((r for r in records if r["type"] == "state" and r["state"] == "stopping"), None)


def _asking(term: Terminal) -> bool:
    lines = [ln for ln in term.screen().splitlines() if ln.strip()]
    return bool(lines) and QUESTION in lines[-1]


def test_the_question_is_visible_n_carries_on_and_ctrl_c_twice_stops(
        terminal: tuple[Terminal, Path, Path]) -> None:
    term, journal, rc = terminal
    wait_for(lambda: _samples(journal) >= 3, "the run to be infusing")
    term.keys("C-c")
    wait_for(lambda: _asking(term), "the question on the screen")
    assert f"{QUESTION} [y/N]" in term.screen()
    # The live display is paused, not drawing over the question, while the run goes on.
    shown, samples = term.screen(), _samples(journal)
    wait_for(lambda: _samples(journal) >= samples + 3, "the run to go on while asking")
    assert _asking(term) and term.screen() == shown
    term.keys("n", "Enter")
    wait_for(lambda: "continuing" in term.screen() and not _asking(term), "the answer taken")
    assert _stopping(journal) is None
    # The display is back below the question and its answer, which stay on the screen: it
    # updates again.
    before = term.screen()
    wait_for(lambda: term.screen() != before, "the live display to come back")
    after = term.screen()
    assert f"{QUESTION} [y/N]" in after and "continuing" in after, after
    term.keys("C-c")
    wait_for(lambda: _asking(term), "the question again")
    term.keys("C-c")
    wait_for(lambda: rc.exists() and rc.read_text().strip(), "the run to end")
    assert rc.read_text().strip() == "5"
    stopping = _stopping(journal)
    assert stopping is not None and stopping["reason"] == "Ctrl-C twice"
    assert stopping["sender"] == "operator"


@pytest.mark.parametrize("terminal", [3], indirect=True)
def test_no_answer_stops_after_the_timeout(terminal: tuple[Terminal, Path, Path]) -> None:
    term, journal, rc = terminal
    wait_for(lambda: _samples(journal) >= 3, "the run to be infusing")
    term.keys("C-c")
    wait_for(lambda: _asking(term), "the question on the screen")
    asked = time.monotonic()
    wait_for(lambda: rc.exists() and rc.read_text().strip(), "the run to end")
    assert time.monotonic() - asked >= 3.0 - 0.2  # the timeout ran (real seconds, not 10x)
    assert rc.read_text().strip() == "5"
    stopping = _stopping(journal)
    assert stopping is not None and stopping["reason"] == "Ctrl-C, no answer in 3 s"


def test_y_stops(terminal: tuple[Terminal, Path, Path]) -> None:
    term, journal, rc = terminal
    wait_for(lambda: _samples(journal) >= 3, "the run to be infusing")
    term.keys("C-c")
    wait_for(lambda: _asking(term), "the question on the screen")
    term.keys("y", "Enter")
    wait_for(lambda: rc.exists() and rc.read_text().strip(), "the run to end")
    assert rc.read_text().strip() == "5"
    stopping = _stopping(journal)
    assert stopping is not None and stopping["reason"] == "operator confirmed stop (Ctrl-C)"
    assert "run summary" in term.screen()

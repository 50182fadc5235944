"""Resume chains (issue 9 item 1): a run is resumed at most once, only the latest link of its
chain can be resumed, the decision counts everything the chain delivered, and two resumes
started at once cannot both win."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
from pathlib import Path
from typing import Any

import pytest

from pumpctl.clock import run as run_clock
from pumpctl.drivers.fake import FakeDriver, FakePump
from pumpctl.run.chain import ChainIndex, ResumeClaim, read_claim
from pumpctl.run.controller import InfusionController, RunResult, RunSettings
from pumpctl.run.resume import ResumeRefused, load_journal_state, reconcile

from .programs import make_program

PLAN_ML = 35.0


class MeteredDriver(FakeDriver):
    """A `FakeDriver` that remembers what its pump delivered before each counter clear, so a
    test can add up everything that left the syringe across runs."""

    def __init__(self, pump: FakePump) -> None:
        super().__init__(pump)
        self.cleared_ml = 0.0

    async def clear_counters(self) -> None:
        self.cleared_ml += self.pump.infused
        await super().clear_counters()

    @property
    def total_ml(self) -> float:
        return self.cleared_ml + self.pump.infused


def kill_when(journal_dir: Path, driver: MeteredDriver, *, counter_ml: float,
              resume_ref: str | None = None) -> Path:
    """Run (or resume `resume_ref`) until the pump's counter reaches `counter_ml`, then end it
    as a killed process leaves it: pump stopped by its watchdog, journal cut after the last
    sample."""
    async def main() -> RunResult:
        point, program = None, make_program()
        if resume_ref is not None:
            state = load_journal_state(journal_dir, resume_ref)
            point, program = await reconcile(state, driver), state.program
        ctl = InfusionController(driver, program,
                                 RunSettings(journal_dir=journal_dir, watchdog_s=5),
                                 resume=point)
        task = asyncio.create_task(ctl.run())
        await asyncio.sleep(5.0)  # past the counter clear of the run's preparation
        while driver.pump.infused < counter_ml:
            await asyncio.sleep(1.0)
        ctl.request_stop("killed", "test")
        return await task

    path = run_clock(main(), virtual=True).journal_path
    lines = path.read_text().splitlines()
    last = max(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "sample")
    path.write_text("\n".join(lines[: last + 1]) + "\n")
    return path


def resume_to_the_end(journal_dir: Path, ref: str, driver: MeteredDriver) -> RunResult:
    async def main() -> RunResult:
        state = load_journal_state(journal_dir, ref)
        point = await reconcile(state, driver)
        return await InfusionController(driver, state.program,
                                        RunSettings(journal_dir=journal_dir),
                                        resume=point).run()

    return run_clock(main(), virtual=True)


def new_pump() -> MeteredDriver:
    async def make() -> MeteredDriver:
        return MeteredDriver(FakePump())

    return run_clock(make(), virtual=True)


def test_resuming_an_already_resumed_run_is_refused(tmp_path: Path) -> None:
    """The reported over-delivery: A interrupted at 10 mL, resumed as B, B killed when the
    pump's counter matched A's journaled 10 mL, `--resume A` accepted again: 45 mL for a
    35 mL plan, exit 0. Now A is refused (only the chain's latest link, B, may go on) and
    resuming B delivers exactly the rest."""
    driver = new_pump()
    a = kill_when(tmp_path, driver, counter_ml=10.0)
    journaled_a = json.loads(a.read_text().splitlines()[-1])["infused_ml"]
    b = kill_when(tmp_path, driver, counter_ml=journaled_a, resume_ref=a.stem)
    assert driver.total_ml == pytest.approx(2 * journaled_a, abs=0.1)
    try:
        again = resume_to_the_end(tmp_path, a.stem, driver)
    except ResumeRefused as exc:
        refused = str(exc)
    else:
        pytest.fail(f"--resume {a.stem} accepted again: {again.outcome}, the pump delivered "
                    f"{driver.total_ml:.1f} mL for a {PLAN_ML:g} mL plan")
    assert f"resumed as {b.stem}" in refused and f"--resume {b.stem}" in refused
    result = resume_to_the_end(tmp_path, b.stem, driver)
    assert result.outcome == "completed", result.reason
    assert driver.total_ml == pytest.approx(PLAN_ML, abs=0.011)
    assert result.delivered_volume_ml == pytest.approx(PLAN_ML, abs=0.011)


def _claim(args: tuple[str, str, Any]) -> bool:
    directory, resumed_as, barrier = args
    barrier.wait()
    try:
        ResumeClaim(directory, "A", resumed_as).take()
    except ResumeRefused:
        return False
    return True


def test_two_resumes_started_at_once_cannot_both_win(tmp_path: Path) -> None:
    """The claim is one O_CREAT | O_EXCL file: of eight processes released at the same
    instant, exactly one gets it."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(8)
        with ctx.Pool(8) as pool:
            won = pool.map(_claim, [(str(tmp_path), f"B{i}", barrier) for i in range(8)])
    assert sum(won) == 1, won
    claim = read_claim(tmp_path / "A.resume")
    assert claim is not None and claim.resumed_as == f"B{won.index(True)}"


def test_a_resume_that_never_started_gives_its_claim_back(tmp_path: Path) -> None:
    claim = ResumeClaim(tmp_path, "A", "B").take()
    with pytest.raises(ResumeRefused, match="being resumed as B"):
        ResumeClaim(tmp_path, "A", "C").take()  # B's process (this one) is alive
    claim.release()
    ResumeClaim(tmp_path, "A", "C").take()
    assert ChainIndex(tmp_path).resumed_as("A") == ["C"]


def test_a_claim_left_by_a_killed_resume_names_the_file_to_remove(tmp_path: Path) -> None:
    (tmp_path / "A.resume").write_text(json.dumps(
        {"run_id": "A", "resumed_as": "B", "pid": 2**22 + 1, "host": socket.gethostname()}))
    with pytest.raises(ResumeRefused, match=r"gone without starting that run.*remove .*A\.resume"):
        ChainIndex(tmp_path).refuse_unless_latest("A")


def test_a_chain_that_forked_is_not_resumed_anywhere(tmp_path: Path) -> None:
    """Journals from before claims: A resumed twice, as B and as C. Neither B nor C knows
    what the other delivered, so neither may go on."""
    driver = new_pump()
    a = kill_when(tmp_path, driver, counter_ml=5.0)
    b = kill_when(tmp_path, driver, counter_ml=3.0, resume_ref=a.stem)
    header = json.loads(b.read_text().splitlines()[0])
    fork = tmp_path / "20991231-000000-pump0-cccccc.jsonl"
    fork.write_text(json.dumps({**header, "run_id": fork.stem}) + "\n")
    for ref in (b.stem, fork.stem):
        with pytest.raises(ResumeRefused, match="resumed more than once"):
            load_journal_state(tmp_path, ref)


def test_the_cli_refuses_an_earlier_link_before_touching_any_pump(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pumpctl.cli import main

    driver = new_pump()
    a = kill_when(tmp_path, driver, counter_ml=5.0)
    b = kill_when(tmp_path, driver, counter_ml=3.0, resume_ref=a.stem)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--resume", a.stem, "--journal", str(tmp_path),
              "--pump", "newera:///nonexistent/port"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 7, err
    assert f"already resumed as {b.stem}" in err and f"--resume {b.stem}" in err
    assert "nonexistent" not in err  # refused before the port was opened


def test_the_cli_claims_the_run_and_gives_the_claim_back_when_the_pump_cannot_be_opened(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pumpctl.cli import main

    a = kill_when(tmp_path, new_pump(), counter_ml=5.0)
    held = ResumeClaim(tmp_path, a.stem, "X").take()  # another resume, still running
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--resume", a.stem, "--journal", str(tmp_path),
              "--pump", "newera:///nonexistent/port"])
    assert exit_info.value.code == 7
    assert "being resumed as X" in capsys.readouterr().err
    held.release()
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--resume", a.stem, "--journal", str(tmp_path),
              "--pump", "newera:///nonexistent/port"])
    assert exit_info.value.code == 4  # claimed, then the port could not be opened ...
    assert "cannot open /nonexistent/port" in capsys.readouterr().err
    assert not (tmp_path / f"{a.stem}.resume").exists()  # ... so the claim was given back


def test_runs_list_and_show_tell_the_chain(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from pumpctl.cli import main

    driver = new_pump()
    a = kill_when(tmp_path, driver, counter_ml=5.0)
    b = kill_when(tmp_path, driver, counter_ml=3.0, resume_ref=a.stem)
    total = json.loads(b.read_text().splitlines()[-1])["infused_ml"]  # cumulative, from A on
    assert total == pytest.approx(8.0, abs=0.05)
    chain_line = (f"{a.stem} resumed as {b.stem}; {total:.3f} of 35.000 mL delivered in all; "
                  f"latest {b.stem} interrupted")

    def cli(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--journal", str(tmp_path)])
        assert exit_info.value.code == 0
        return capsys.readouterr().out

    out = cli("runs", "list")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows[a.stem][-2:] == ["1:", "1/2"], rows
    assert rows[b.stem][-2:] == ["1:", "2/2"]
    assert f"chain 1: {chain_line}" in out
    shown = cli("runs", "show", a.stem)
    assert f"resumed as {b.stem}" in shown and chain_line in shown
    assert chain_line in cli("runs", "show", b.stem)
    listed = {r["run_id"]: r for r in json.loads(cli("runs", "list", "--json"))}
    assert listed[a.stem]["resumed_as"] == [b.stem] and listed[b.stem]["resume_of"] == a.stem
    assert listed[a.stem]["chain_delivered_ml"] == pytest.approx(total)

"""Issue 9, items 9 and 11: consistent answers from `pumpctl run`, `runs list`, the live panel
and the journal: fault parameters refused by one parser, an unconfirmed stop is a fault that
names only the safety nets really there, whole run ids, flow 0 once stopped, retried replies
counted, `--version`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from rich.console import Console

from pumpctl.clock import LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.drivers.fake import FakePump
from pumpctl.journal import Journal, new_run_id, read_records
from pumpctl.run.controller import InfusionController
from pumpctl.run.display import RunDisplay

from .test_cli import STANDARD, cli
from .test_controller_fake import drive

BAD_FAULTS = [
    ("corrupt-bytes@1m:mask=300", "mask=300 in 'corrupt-bytes@1m:mask=300' must be a whole "
                                  "number 0-255"),
    ("stuck-motor@1m:pump=3", "no pump at address 3 (the simulator has 1 pump"),
    ("drop-replies@1m:count=0", "count=0 in 'drop-replies@1m:count=0' must be a whole number "
                                "1-1000000, or -1 for every one"),
    ("free-flow@1m:factor=-2", "factor=-2 in 'free-flow@1m:factor=-2' must be 0.01-100"),
    ("corrupt-bytes@1m:index=1.5", "index=1.5 in 'corrupt-bytes@1m:index=1.5' must be a whole "
                                   "number 0-255"),
]


@pytest.mark.parametrize(("fault", "said"), BAD_FAULTS, ids=[f for f, _ in BAD_FAULTS])
def test_sim_fault_parameters_are_refused_by_the_one_parser(
        fault: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`run --sim-fault` and `sim newera --fault` give the same one line, exit 2, before any
    pump is touched (a mask of 300 used to crash the simulator mid-run, its fault silently
    never applied; an address beyond the simulator's pumps was a KeyError traceback)."""
    code, out, err = cli(["run", str(STANDARD), "--weight", "70", "--sim", "--speed", "max",
                          "--journal", str(tmp_path), "--json", "--sim-fault", fault], capsys)
    assert code == 2 and out == "", err
    assert said in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.jsonl"))  # refused before a run began
    code, _, sim_err = cli(["sim", "newera", "--link", str(tmp_path / "ne"), "--fault", fault],
                           capsys)
    assert code == 2 and sim_err == err


@pytest.mark.parametrize("watchdog_s", [None, 5])
def test_an_unconfirmed_stop_is_a_fault_naming_only_the_armed_watchdog(
        watchdog_s: int | None, tmp_path: Path) -> None:
    async def operator_stops(pump: FakePump, ctl: InfusionController) -> None:
        await asyncio.sleep(300)
        pump.ignore_stop = True  # the stop is sent, the pump keeps infusing
        ctl.request_stop("operator pressed stop", "operator")

    result, _, recs = drive(tmp_path, during=operator_stops, watchdog_s=watchdog_s,
                            stop_timeout_s=1.0)
    assert result.outcome == "faulted" and not result.stop_confirmed  # exit 6, not 5
    assert result.reason.startswith("operator pressed stop; then pump_error: stop not confirmed")
    (alarm,) = [r for r in recs if r["type"] == "alarm"]
    if watchdog_s is None:
        assert "watchdog" not in alarm["message"].replace("no watchdog armed", "")
        assert "volume limit only (no watchdog armed)" in alarm["message"]
    else:
        assert "volume limit and its 5 s watchdog" in alarm["message"]
    assert recs[-1]["outcome"] == "faulted"


def _journal_with_channel(runs: Path, channel: str) -> str:
    async def main() -> str:
        clock = LoopClock()
        journal = Journal.create(runs, channel=channel, clock=clock,
                                 run_id=new_run_id(channel))
        journal.write("header", plan="configs/plans/ketamine-0.5mgkg-40min.yaml",
                      total_volume_ml=35.0)
        journal.write("summary", outcome="completed", delivered_volume_ml=35.0)
        journal.close()
        return journal.run_id

    return run_clock(main(), virtual=True)


def test_runs_list_never_cuts_a_run_id(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [_journal_with_channel(tmp_path, "bench-3-left-syringe-driver-with-a-long-name-" * 2),
           _journal_with_channel(tmp_path, "p0")]
    code, piped, _ = cli(["runs", "list", "--journal", str(tmp_path)], capsys)
    assert code == 0 and all(i in piped for i in ids) and "…" not in piped
    # On a terminal too narrow for the table: one plain line per run, the id first and whole.
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, narrow, _ = cli(["runs", "list", "--journal", str(tmp_path)], capsys)
    assert code == 0 and "…" not in narrow
    assert sorted(line.split("  ")[0] for line in narrow.splitlines()) == sorted(ids)


def test_the_live_panel_shows_flow_0_once_stopped() -> None:
    display = RunDisplay(Console(record=True, width=100), print_alarms=False)
    display.emit({"type": "header", "channel": "pump0", "total_volume_ml": 35.0,
                  "total_dose_mg": 35.0})

    def rate_row(state: str) -> str:
        display.emit({"type": "sample", "channel": "pump0", "state": state, "rate_ml_h": 52.5,
                      "infused_ml": 1.0, "planned_ml": 1.0, "dose_mg": 1.0})
        console = Console(record=True, width=100)
        console.print(display)
        return next(line for line in console.export_text().splitlines() if "rate mL/h" in line)

    assert "52.5" in rate_row("infusing")
    for state in ("stopped", "paused", "alarm"):
        row = rate_row(state)
        assert "52.5" not in row and row.rstrip(" │").endswith("0"), row


def test_replies_lost_or_corrupt_and_retried_are_counted_in_the_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["run", str(STANDARD), "--weight", "70", "--sim", "--speed", "max",
                        "--journal", str(tmp_path), "--json",
                        "--sim-fault", "drop-replies@10m:count=1",
                        "--sim-fault", "corrupt-bytes@20m:count=1"], capsys)
    assert code == 0, err  # each survived by one retry
    records = read_records(next(tmp_path.glob("*.jsonl")))
    retried = [(r["type"], round(r["elapsed_s"])) for r in records if r.get("retries")]
    assert retried == [("sample", 602), ("sample", 1200), ("summary", 2400)]
    assert records[-1]["retries"] == 2
    assert all(r["retries"] == 0 for r in records if r["type"] == "sample"
               and round(r["elapsed_s"]) not in (602, 1200))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from pumpctl import __version__

    code, out, _ = cli(["--version"], capsys)
    assert code == 0 and out == f"pumpctl {__version__}\n"


def test_text_with_markup_is_shown_never_read_as_markup(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path, a run reference or an alarm text holding `[/]` used to end in rich's
    MarkupError traceback."""
    code, _, err = cli(["runs", "show", "[/]x", "--journal", str(tmp_path)], capsys)
    assert code == 2 and err == f"error: run '[/]x': no such run in {tmp_path}\n"
    journal = tmp_path / "[bold]runs[/]"
    code, out, err = cli(["run", str(STANDARD), "--weight", "70", "--sim", "--speed", "max",
                          "--journal", str(journal)], capsys)
    assert code == 0, err
    assert "[bold]runs[/]/" in out.replace("\n", "")
    console = Console(record=True, width=200)
    RunDisplay(console).emit({"type": "alarm", "channel": "p[0]", "kind": "remote_stop",
                              "message": "stop requested by mqtt:alice: [/] [red]now"})
    assert "ALARM p[0] remote_stop: stop requested by mqtt:alice: [/] [red]now" in \
        console.export_text()


def test_an_accuracy_csv_path_holding_markup_is_printed_as_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "[").mkdir()
    samples = tmp_path / "[" / "]x.csv"  # the path reads "[/]x.csv"
    samples.write_text("t_min,mass_g\n" + "".join(f"{i},{i / 60:.5f}\n" for i in range(181)))
    code, out, err = cli(["accuracy", "analyse", str(samples), "--rate", "1 mL/h",
                          "--interval", "1min"], capsys)
    assert code == 0, err
    assert " ".join(out.split()).startswith(f"{samples}: set rate 1 mL/h")


def test_the_last_sample_is_the_stopped_pump_and_keeps_the_runs_alarm(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["run", str(STANDARD), "--weight", "70", "--sim", "--speed", "max",
                        "--journal", str(tmp_path), "--json", "--sim-fault", "occlusion@5m"],
                       capsys)
    assert code == 6, err
    records = read_records(next(tmp_path.glob("*.jsonl")))
    alarms = [r["kind"] for r in records if r["type"] == "alarm"]
    last = [r for r in records if r["type"] == "sample"][-1]
    after = [r["type"] for r in records[records.index(last) + 1:]]
    assert after[:1] == ["state"] and records[records.index(last) + 1]["state"] == "stopped"
    assert last["state"] != "infusing" and last["alarm"] in (alarms[-1], "stall")

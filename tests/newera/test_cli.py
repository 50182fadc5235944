"""End to end as a bench engineer does it: `pumpctl sim newera` in one process, `pumpctl pump`
commands in others, over a pty link."""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]


def _ready_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    """The simulator's one ready line, waited for (not slept for)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError("simulator printed no ready line")
    return proc.stdout.readline()


@pytest.fixture(scope="module")
def sim_link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """One simulator process for the module (each test leaves its pumps stopped)."""
    tmp_path = tmp_path_factory.mktemp("cli")
    proc = subprocess.Popen([*PUMPCTL, "sim", "newera", "--link", "ne", "--pumps", "2"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = _ready_line(proc)
        yield tmp_path, line
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert not (tmp_path / "ne").exists()  # the link is removed on exit


def pump(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUMPCTL, "pump", "--port", "ne", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.realtime
def test_bench_session_rate_run_dispensed(sim_link: tuple[Path, str]) -> None:
    cwd, ready = sim_link
    assert ready.startswith("ready newera link=ne pty=/dev/pts/") and "addresses=0,1" in ready
    result = pump(cwd, "rate", "52.5", "mL/h")
    assert result.returncode == 0, result.stderr
    assert "rate_ml_h: 52.5" in result.stdout
    result = pump(cwd, "run")
    assert result.returncode == 0 and "state: infusing" in result.stdout
    result = pump(cwd, "--json", "dispensed")
    assert result.returncode == 0
    dispensed = json.loads(result.stdout)
    assert 0 < dispensed["infused_ml"] < 1 and dispensed["withdrawn_ml"] == 0
    status = json.loads(pump(cwd, "--json", "status").stdout)
    assert status["state"] == "infusing" and status["rate_ml_h"] == 52.5
    other = json.loads(pump(cwd, "--address", "1", "--json", "status").stdout)
    assert other["state"] == "stopped" and other["rate_ml_h"] == 0  # the other pump, untouched
    result = pump(cwd, "stop")
    assert result.returncode == 0 and "state: stopped" in result.stdout
    found = json.loads(pump(cwd, "--json", "scan", "--last", "3").stdout)
    assert [p["address"] for p in found["pumps"]] == [0, 1]


def in_process(cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
               *args: str) -> tuple[int, str, str]:
    """`pumpctl ...` through the same entry point, without a new interpreter per call."""
    from pumpctl.cli import main

    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_bench_errors_are_one_line_and_non_zero(sim_link: tuple[Path, str],
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, _ = sim_link
    for args, exit_code, text in [
        (("rate", "5000", "mL/h"), 4, "26.59 mm syringe it allows 0.02337-1699 mL/h"),
        (("rate", "52.5"), 2, "no unit"),
        (("direction", "sideways"), 2, "infuse or withdraw"),
    ]:
        code, _, err = in_process(cwd, capsys, monkeypatch, "pump", "--port", "ne", *args)
        assert code == exit_code, (args, err)
        assert text in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
    code, out, _ = in_process(cwd, capsys, monkeypatch, "pump", "--port", "ne", "--json",
                              "status")
    assert code == 0 and json.loads(out)["state"] == "stopped"  # nothing was started
    code, _, err = in_process(cwd, capsys, monkeypatch, "pump", "--port",
                              "newera://x?baud=1234", "status")
    assert code == 2 and "baud=1234" in err


@pytest.mark.realtime
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP],
                         ids=lambda s: signal.Signals(s).name)
def test_watch_run_then_ctrl_c_or_a_closed_terminal_stops_the_pump_it_started(
        sim_link: tuple[Path, str], sig: int) -> None:
    cwd, _ = sim_link
    assert pump(cwd, "rate", "30", "mL/h").returncode == 0
    watch = subprocess.Popen([*PUMPCTL, "pump", "--port", "ne", "--json", "watch", "--run",
                              "--interval", "0.2"], cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(50):  # live lines until some volume shows (4 digits: from 1 µL)
            line = json.loads(_ready_line(watch))
            assert line["state"] == "infusing"
            if line["infused_ml"] > 0:
                break
        else:
            raise AssertionError("watch never showed a dispensed volume")
    finally:
        watch.send_signal(sig)
        assert watch.wait(timeout=15) == 0
    status = json.loads(pump(cwd, "--json", "status").stdout)
    assert status["state"] == "stopped" and status["infused_ml"] > 0


def test_sim_rejects_bad_fault_spec(tmp_path: Path) -> None:
    result = subprocess.run([*PUMPCTL, "sim", "newera", "--link", "ne", "--fault", "jam@10m"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "fault kind 'jam'" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "ne").exists()


def test_sim_over_tcp(tmp_path: Path) -> None:
    proc = subprocess.Popen([*PUMPCTL, "sim", "newera", "--tcp", "127.0.0.1:0", "--baud", "0",
                             "--diameter", "14.5"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready = _ready_line(proc)
        endpoint = next(w for w in ready.split() if w.startswith("tcp=")).removeprefix("tcp=")
        result = subprocess.run([*PUMPCTL, "pump", "--port", f"newera+tcp://{endpoint}",
                                 "--json", "info"], cwd=tmp_path, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["diameter_mm"] == 14.5 and info["volume_units"] == "ML"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_json_flag_works_after_the_command_too(sim_link: tuple[Path, str]) -> None:
    cwd, _ = sim_link
    before = pump(cwd, "--json", "--address", "1", "status")
    after = pump(cwd, "--address", "1", "status", "--json")
    assert before.returncode == after.returncode == 0, after.stderr
    # Whichever opener comes first is also told of the power-up alarm the pump showed
    # (alarm_at_open); the status itself is the same.
    first, second = json.loads(before.stdout), json.loads(after.stdout)
    first.pop("alarm_at_open", None)
    second.pop("alarm_at_open", None)
    assert first == second
    assert json.loads(after.stdout)["state"] == "stopped"
    setting = pump(cwd, "--address", "1", "diameter", "26.59", "--json")
    assert setting.returncode == 0, setting.stderr
    assert json.loads(setting.stdout)["diameter_mm"] == 26.59


@pytest.mark.parametrize(("speed", "says"), [
    ("max", "--speed max: virtual time only works inside one process"),
    ("0", "--speed '0': expected a factor N > 0 and <= 100000"),
    ("fast", "--speed 'fast': expected a factor N > 0 and <= 100000"),
])
def test_sim_speed_refuses_what_cannot_serve(tmp_path: Path, speed: str, says: str) -> None:
    result = subprocess.run([*PUMPCTL, "sim", "newera", "--link", "ne", "--speed", speed],
                            cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "ne").exists()


@pytest.mark.realtime
def test_sim_speed_runs_the_pump_n_times_faster(tmp_path: Path) -> None:
    """`sim newera --speed 200` and a client at the same speed share one time scale: the
    volume the pump counts over a client-measured interval matches that interval (at 1x it
    would be 200 times smaller)."""
    from pumpctl.drivers.open import open_driver
    from pumpctl.timescale import run_at_speed

    speed, rate_ml_h = 200, 360.0
    proc = subprocess.Popen([*PUMPCTL, "sim", "newera", "--link", "ne", "--speed", str(speed)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)

    async def measure() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        # Times below are simulated seconds: a 40 s request timeout is 0.2 s of real time.
        async with open_driver(f"newera://{tmp_path / 'ne'}?timeout=40") as pump:
            await pump.set_rate(rate_ml_h)
            await pump.run()
            t0, before = loop.time(), await pump.status()
            await asyncio.sleep(30.0)  # the clocks are what is under test: let 30 s pass
            t1, after = loop.time(), await pump.status()
            await pump.stop()
        counted_s = (after.infused_ml - before.infused_ml) / (rate_ml_h / 3600.0)
        return counted_s, t1 - t0

    try:
        ready = _ready_line(proc)
        assert ready.rstrip().endswith(f"speed={speed}"), ready
        counted_s, client_s = run_at_speed(measure(), speed)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    assert client_s >= 30.0
    # Both readings lag their clock reading by one request (milliseconds of real time, so
    # a few simulated seconds at most): the two clocks agree to within that.
    assert abs(counted_s - client_s) < 5.0, (counted_s, client_s)

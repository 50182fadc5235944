"""`pumpctl pump --port modbus+tcp://...` against pymodbus's own server (in a thread of this
process): info, status, rate, run, stop, dispensed, scan in process through the CLI's own
entry point (its one-line errors and exit codes included), `watch` as a separate process
stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from typer.testing import CliRunner

from pumpctl.cli import app, main
from tests.modbus.pymodbus_pump import Served, serve_generic

pytestmark = pytest.mark.realtime  # a TCP server on the wall clock
Invoke = Callable[..., tuple[int, str]]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """pymodbus's server with the generic pump at units 1 and 2, on its own loop thread."""
    ready: list[Served] = []
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with serve_generic(units=(1, 2)) as s:
            ready.append(s)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield ready[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@pytest.fixture
def pump(served: Served, capsys: pytest.CaptureFixture[str]) -> Invoke:
    """`pumpctl pump --port URL ARGS` through `pumpctl.cli.main`: (exit code, all output)."""

    def invoke(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as done:
            main(["pump", "--port", served.url(), *args])
        captured = capsys.readouterr()
        return int(done.value.code or 0), captured.out + captured.err

    return invoke


def as_json(pump: Invoke, *args: str) -> dict[str, object]:
    code, out = pump("--json", *args)
    assert code == 0, out
    loaded = json.loads(out)
    assert isinstance(loaded, dict)
    return loaded


def test_info_names_the_map_and_what_the_pump_lacks(pump: Invoke) -> None:
    info = as_json(pump, "info")
    assert info["model"] == "PC (pumpctl generic)" and info["firmware"] == "1.02"
    assert (info["map"], info["unit"], info["word_order"]) == ("generic", 1, "big")
    assert info["diameter_mm"] == pytest.approx(26.7) and info["rate_units"] == "mL/h"
    assert info["volume_cap"] == "yes" and info["watchdog_s"] == 0


def test_rate_run_status_dispensed_stop(served: Served, pump: Invoke) -> None:
    assert as_json(pump, "rate", "52.5", "mL/h") == {"rate_ml_h": 52.5, "units": "mL/h"}
    assert as_json(pump, "rate", "875", "uL/min")["rate_ml_h"] == pytest.approx(52.5)
    assert as_json(pump, "run")["state"] == "infusing"
    served.pump.infused = 1.25
    status = as_json(pump, "status")
    assert (status["state"], status["rate_ml_h"], status["infused_ml"]) == ("infusing", 52.5,
                                                                           1.25)
    assert as_json(pump, "dispensed") == {"infused_ml": 1.25, "withdrawn_ml": 0.0}
    assert as_json(pump, "stop")["state"] == "stopped"
    assert served.pump.state == 0


def test_text_output(pump: Invoke) -> None:
    code, out = pump("status")
    assert code == 0 and "state: stopped" in out


def test_a_refused_rate_is_one_line_exit_4(pump: Invoke) -> None:
    code, out = pump("rate", "5000", "mL/h")
    assert code == 4
    assert out.strip().count("\n") == 0 and "exception 3 (illegal data value)" in out
    assert "Traceback" not in out


def test_scan_lists_unit_ids_in_the_range(pump: Invoke) -> None:
    found = as_json(pump, "scan", "--range", "1-4")
    assert [p["unit"] for p in found["pumps"]] == [1, 2]  # type: ignore[index,union-attr]
    code, out = pump("scan", "--range", "3-4")
    assert code == 0 and "no pump answered at unit ids 3-4" in out


@pytest.mark.parametrize(("args", "words"), [
    (("scan", "--range", "0-5"), "must be within 1-247"),
    (("scan", "--range", "5"), "must be FIRST-LAST"),
    (("scan", "--range", "1-3", "--first", "2"), "one or the other"),
    (("safe-mode", "5"), "safe-mode (New Era's watchdog) is for New Era pumps"),
])
def test_bad_input_is_one_line_exit_2(pump: Invoke, args: tuple[str, ...],
                                      words: str) -> None:
    code, out = pump(*args)
    assert code == 2 and words in " ".join(out.split()) and "Traceback" not in out


def test_scan_help_says_the_modbus_default() -> None:
    result = CliRunner().invoke(app, ["pump", "scan", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Modbus unit ids 1-16" in " ".join(result.output.split())


def test_watch_in_its_own_process_until_ctrl_c(served: Served) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "pumpctl.cli", "pump", "--port",
                             served.url(), "--json", "watch", "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        assert first["state"] in ("stopped", "infusing") and "infused_ml" in second
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""

"""`pumpctl run --mqtt ...` as a user runs it: a real process, a real broker, mosquitto_sub."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.telemetry.broker import Mosquitto, start_mosquitto_sub

PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]
PLAN = Path(__file__).resolve().parents[2] / "configs" / "plans" / "ketamine-0.5mgkg-40min.yaml"


def _journal_records(journal_dir: Path) -> list[dict[str, object]]:
    (path,) = journal_dir.glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_streams_every_poll_to_the_broker(broker: Mosquitto, tmp_path: Path) -> None:
    # 2400 polls at 1 s for the 40-minute plan and the stopped pump's last sample.
    sub = start_mosquitto_sub(broker, "pumpctl/lab7/+/telemetry", count=2401,
                              client_id="cli-watch")
    done = subprocess.run(
        [*PUMPCTL, "run", str(PLAN), "--weight", "70", "--sim", "--speed", "max",
         "--journal", str(tmp_path / "runs"), "--mqtt", broker.url, "--site", "lab7",
         "--telemetry-qos", "1", "--json"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out, _ = sub.communicate(timeout=60)
    payloads = [json.loads(line.split(" ", 3)[3]) for line in out.splitlines()]
    assert len(payloads) == 2401
    seqs = [p["seq"] for p in payloads]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    samples = [r for r in _journal_records(tmp_path / "runs") if r["type"] == "sample"]
    # The broker saw exactly what the journal recorded, sample for sample.
    assert seqs == [r["seq"] for r in samples]
    assert payloads[-1]["volume_delivered_ml"] == samples[-1]["infused_ml"]
    # Once stopped, what a dashboard last sees is the stopped pump with nothing flowing.
    assert (payloads[-1]["pump_status"], payloads[-1]["flow_rate_ml_h"]) == ("stopped", 0.0)
    assert all((p["flow_rate_ml_h"] > 0) == (p["pump_status"] == "infusing") for p in payloads)
    assert json.loads(done.stdout)["outcome"] == "completed"


def test_bad_telemetry_options_fail_before_any_pump_is_touched(tmp_path: Path) -> None:
    for args, needle in (
        (["--mqtt", "ftp://127.0.0.1"], "ftp"),
        (["--mqtt", "mqtt://127.0.0.1:1883", "--telemetry-qos", "2"], "2"),
        (["--remote-commands"], "--mqtt"),
    ):
        done = subprocess.run(
            [*PUMPCTL, "run", str(PLAN), "--weight", "70", "--sim", "--speed", "max",
             "--journal", str(tmp_path / "runs"), *args],
            capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert needle in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert not list((tmp_path / "runs").glob("*.jsonl")), "a journal means a run started"

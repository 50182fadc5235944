"""`pumpctl telemetry tail|flush` as a user runs them: real processes, a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pumpctl.telemetry.mapping import RecordMapper
from pumpctl.telemetry.runtime import telemetry_for_run
from pumpctl.telemetry.spool import Spool
from pumpctl.telemetry.topics import Topics
from tests.telemetry.broker import Mosquitto
from tests.telemetry.conftest import Collector, ReconnectingCollector
from tests.telemetry.synthetic import SyntheticRun, message_count

PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]


def start_tail(broker: Mosquitto, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*PUMPCTL, "telemetry", "tail", "--mqtt", broker.url, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    # Ready once the broker has logged all its subscriptions (status, telemetry[, event]).
    filters = 2 if "--no-events" in args else 3
    if not broker.wait_for_log(f"pumpctl-tail-{proc.pid} 1 ", count=filters):
        proc.kill()
        raise AssertionError(proc.communicate())
    return proc


async def publish_run(broker: Mosquitto, tmp_path: Path, samples: int, pump: str = "p1") -> None:
    async with telemetry_for_run(broker.url, site="lab", pump_id=pump, telemetry_qos=1,
                                 spool_dir=tmp_path / f"spool-{pump}") as sink:
        for _, record in SyntheticRun(samples=samples).script():
            sink.emit(record)


@pytest.mark.realtime
async def test_tail_prints_live_telemetry_and_events(broker: Mosquitto, tmp_path: Path) -> None:
    tail = start_tail(broker, "--pump", "p1", "--count", "3")
    await publish_run(broker, tmp_path, samples=6, pump="p2")  # another pump: not shown
    await publish_run(broker, tmp_path, samples=6)
    out, err = tail.communicate(timeout=20)
    assert tail.returncode == 0, err
    lines = out.splitlines()
    telemetry = [line for line in lines if "mL/h" in line]
    assert len(telemetry) == 3
    assert all("lab/p1" in line and "infusing" in line for line in telemetry)
    assert "36.000 mL/h" in telemetry[0] and "seg 0" in telemetry[0]
    assert any("soft_limit_override" in line and "protocol amendment 3" in line
               for line in lines)
    assert any("run_started" in line for line in lines)
    assert "lab/p2" not in out


async def test_tail_json_prints_payloads_as_received(broker: Mosquitto, tmp_path: Path) -> None:
    tail = start_tail(broker, "--json", "--no-events", "--count", "2", "--site", "lab")
    await publish_run(broker, tmp_path, samples=4)
    out, err = tail.communicate(timeout=20)
    assert tail.returncode == 0, err
    rows = [line.split(" ", 1) for line in out.splitlines()]
    assert [topic for topic, _ in rows] == ["pumpctl/lab/p1/status", "pumpctl/lab/p1/telemetry",
                                            "pumpctl/lab/p1/telemetry"]
    first = json.loads(rows[1][1])
    assert first["seq"] == 4 and first["flow_rate_ml_h"] == 36.0


def test_tail_errors_are_one_line() -> None:
    for args, fragment in ((["--mqtt", "mqtt://alice:pw@host"], "contains a password"),
                           (["--mqtt", "mqtt://127.0.0.1:9"], "Connection refused"),
                           (["--mqtt", "mqtt://127.0.0.1:9", "--pump", "a/b"], "--pump 'a/b'")):
        result = subprocess.run([*PUMPCTL, "telemetry", "tail", *args], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 2
        assert fragment in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


async def test_flush_sends_what_a_dead_run_left_behind(
        broker_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = broker_factory(persistence=True)
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir).open()
    m = RecordMapper(Topics.for_pump("lab", "p1"), site="lab", pump_id="p1", telemetry_qos=1)
    records = [r for _, r in SyntheticRun(samples=5).script()]
    for record in records:
        for message in m.map(record):
            spool.append(message)
    spool.close()  # as if the run had ended with the broker unreachable
    async with ReconnectingCollector(broker) as witness:
        result = subprocess.run([*PUMPCTL, "telemetry", "flush", str(spool_dir), "--site", "lab",
                                 "--pump-id", "p1", "--mqtt", broker.url],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        n = message_count(records)
        assert result.stdout.strip() == f"sent {n} of {n} spooled messages"
        await witness.wait_for(lambda c: len(c.on("telemetry")) == 5)
    assert [json.loads(x.payload)["seq"] for x in witness.on("telemetry")] == [
        r["seq"] for r in records if r["type"] == "sample"]
    assert list(spool_dir.glob("seg-*.jsonl")) == []


@pytest.mark.realtime
async def test_a_late_subscriber_sees_online_while_a_run_streams(
        broker: Mosquitto, tmp_path: Path) -> None:
    async with telemetry_for_run(broker.url, site="lab", pump_id="p1",
                                 spool_dir=tmp_path / "s") as sink:
        await sink.link.connected.wait()
        async with Collector(broker, ("pumpctl/lab/p1/status",)) as late:
            await late.wait_for(lambda c: len(c.messages) == 1)
            assert (late.messages[0].payload, late.messages[0].retain) == (b"online", True)

"""The real controller on the embedded New Era simulator, streaming to a real Mosquitto.

Runs the standard 40-minute ketamine plan in virtual time (a second or two of wall time).
The journal is the reference: whatever it holds must reach the subscribers, in order.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from rich.console import Console

from pumpctl.clock import LoopClock, VirtualTimeLoop, wait_until
from pumpctl.clock import run as run_clock
from pumpctl.journal import read_records
from pumpctl.plan.compile import compile_plan_file
from pumpctl.plan.program import RateProgram
from pumpctl.run.controller import InfusionController, RunResult, RunSettings
from pumpctl.run.session import RunOptions, execute
from pumpctl.telemetry.runtime import TelemetrySink, telemetry_for_run, telemetry_sink_factory
from simulators.newera.embedded import embedded_newera
from tests.telemetry.broker import Mosquitto, SubscriberProcess, TlsFiles
from tests.telemetry.conftest import REPO, USERS, Collector, ReconnectingCollector

pytestmark = pytest.mark.timeout(90)

GRACE = 0.0  # the virtual loop does not wait for socket I/O before moving time on
# Killing the broker "when nothing is in flight" needs moments where the network has caught
# up with the simulation: until then that test lets the loop wait briefly for socket I/O.
KILL_GRACE = 0.001
EVENT_TYPES = {"state", "segment", "alarm", "monitoring", "summary"}


def standard_plan() -> RateProgram:
    return compile_plan_file(REPO / "configs" / "plans" / "ketamine-0.5mgkg-40min.yaml",
                             weight_kg=70)


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages]


def journal_seqs(records: list[dict[str, Any]], types: set[str]) -> list[int]:
    return [r["seq"] for r in records if r["type"] in types]


async def reference_run(program: RateProgram, tmp_path: Path) -> RunResult:
    """The same run with no telemetry at all."""
    clock = LoopClock()
    async with embedded_newera(clock) as (_, driver):
        controller = InfusionController(driver, program,
                                        RunSettings(journal_dir=tmp_path / "ref-runs"), clock=clock)
        return await controller.run()


def test_a_full_simulated_run_reaches_mosquitto_sub_complete_and_in_order(
        broker: Mosquitto, collector_factory: Callable[..., Collector], tmp_path: Path) -> None:
    program = standard_plan()
    independent = SubscriberProcess(broker, "pumpctl/#", "independent")

    async def main() -> tuple[RunResult, Collector]:
        clock = LoopClock()
        async with collector_factory(broker) as live, embedded_newera(clock) as (_, driver):
            controller = InfusionController(driver, program,
                                            RunSettings(journal_dir=tmp_path / "runs"), clock=clock)
            async with telemetry_for_run(broker.url, site="lab", pump_id="p1", telemetry_qos=1,
                                         spool_dir=tmp_path / "spool") as sink:
                controller.add_sink(sink)
                result = await controller.run()
            await live.wait_for(lambda c: b"offline" in [m.payload for m in c.on("status")],
                                timeout=None)
        return result, live

    result, live = run_clock(main(), virtual=True, io_grace_s=GRACE)
    records = read_records(result.journal_path)
    assert result.outcome == "completed"

    # One telemetry message per poll (40 minutes at 1 Hz), and the stopped pump's last one.
    telemetry = live.json_on("telemetry")
    assert len(telemetry) == program.duration_s + 1 == 2401
    assert (telemetry[-1]["pump_status"], telemetry[-1]["flow_rate_ml_h"]) == ("stopped", 0.0)
    assert seqs(telemetry) == journal_seqs(records, {"sample"})
    assert all(a < b for a, b in zip(seqs(telemetry), seqs(telemetry)[1:], strict=False))
    assert telemetry[-1]["volume_delivered_ml"] == pytest.approx(program.total_volume_ml,
                                                                 abs=0.01)
    # Events in journal order, including each monitoring point that fell due.
    events = live.json_on("event")
    assert seqs(events) == journal_seqs(records, EVENT_TYPES)
    due = [e for e in events if e["event"] == "monitoring_due"]
    assert [e["label"] for e in due] == [r["label"] for r in records
                                         if r["type"] == "monitoring"]
    assert len(due) >= 3  # baseline, 15 and 30 minutes
    assert [e["event"] for e in events][-2:] == ["run_completed", "run_summary"]

    # mosquitto_sub, a separate process, saw exactly the same messages.
    assert independent.wait_for_line("pumpctl/lab/p1/status offline")
    independent.stop()
    assert [(t, p) for _, _, t, p in independent.rows()] == [
        (m.topic.value, m.payload.decode()) for m in live.messages]

    # Afterwards the broker still holds the final status and run.
    async def late() -> list[tuple[str, bytes, bool]]:
        async with collector_factory(broker) as c:
            await c.wait_for(lambda x: len(x.messages) == 2)
            return [(m.topic.value, m.payload, m.retain) for m in c.messages]

    retained = dict((t.rsplit("/", 1)[1], (p, r)) for t, p, r in asyncio.run(late()))
    assert retained["status"] == (b"offline", True)
    run_payload, run_retained = retained["run"]
    assert run_retained and json.loads(run_payload)["run_state"] == "completed"
    assert json.loads(run_payload)["run_id"] == result.run_id


def test_broker_killed_mid_run_loses_nothing_and_the_infusion_does_not_notice(
        broker_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = broker_factory(persistence=True)
    program = standard_plan()
    kill_after_s, outage_s = 180.0, 30.0
    timeline: dict[str, float] = {}

    async def main() -> tuple[RunResult, TelemetrySink, Collector]:
        clock = LoopClock()
        async with ReconnectingCollector(broker) as witness, \
                embedded_newera(clock) as (_, driver):
            broker.save_db()  # the witness's session survives the crash
            controller = InfusionController(driver, program,
                                            RunSettings(journal_dir=tmp_path / "runs"), clock=clock)
            async with telemetry_for_run(broker.url, site="lab", pump_id="p1", telemetry_qos=1,
                                         spool_dir=tmp_path / "spool") as sink:
                controller.add_sink(sink)

                async def crash_and_restart() -> None:
                    def quiet() -> bool:  # nothing in flight: the witness has all sent so far
                        if clock.monotonic() - start < kill_after_s or sink.spool.pending:
                            return False
                        last = witness.last_seq()
                        journal = controller.journal
                        return journal is not None and last == journal.seq - 1

                    loop = asyncio.get_running_loop()
                    assert isinstance(loop, VirtualTimeLoop)
                    loop.io_grace_s = KILL_GRACE
                    assert await wait_until(quiet, clock, interval=0.5, timeout=1200)
                    broker.kill()
                    loop.io_grace_s = GRACE
                    timeline["killed"] = clock.monotonic() - start
                    await asyncio.sleep(outage_s)
                    timeline["spooled"] = sink.spool.pending
                    broker.start()

                start = clock.monotonic()
                chaos = asyncio.create_task(crash_and_restart())
                result = await controller.run()
                await chaos
            await witness.wait_for(lambda c: b"offline" in [m.payload for m in c.on("status")],
                                   timeout=None)
        return result, sink, witness

    result, sink, witness = run_clock(main(), virtual=True, io_grace_s=GRACE)
    reference = run_clock(reference_run(program, tmp_path), virtual=True)
    records = read_records(result.journal_path)

    # The infusion did not notice: same outcome, volume and poll timing as without telemetry.
    assert (result.outcome, result.delivered_volume_ml) == (reference.outcome,
                                                            reference.delivered_volume_ml)
    assert len(result.poll_lateness_s) == len(reference.poll_lateness_s)
    assert max(abs(a - b) for a, b in zip(result.poll_lateness_s, reference.poll_lateness_s,
                                          strict=True)) < 1e-9
    assert timeline["killed"] >= kill_after_s and timeline["spooled"] >= 25
    assert (sink.link.stats.connects, sink.link.stats.disconnects) == (2, 1)
    # Zero lost, no duplicates, order kept.
    assert seqs(witness.json_on("telemetry")) == journal_seqs(records, {"sample"})
    assert seqs(witness.json_on("event")) == journal_seqs(records, EVENT_TYPES)
    assert sink.summary()["dropped_telemetry"] == 0


@pytest.mark.realtime
def test_a_sigkilled_controller_shows_offline_through_the_last_will(
        broker: Mosquitto, tmp_path: Path) -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        async with Collector(broker, ("pumpctl/lab/p9/#",)) as watcher:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.telemetry.run_controller", broker.url,
                str(tmp_path / "spool"), str(tmp_path / "runs"), cwd=REPO)
            try:
                await watcher.wait_for(lambda c: len(c.on("telemetry")) >= 2)
                assert [m.payload for m in watcher.on("status")] == [b"online"]
            finally:
                proc.kill()  # SIGKILL: no goodbye from the process itself
                await proc.wait()
            await watcher.wait_for(lambda c: len(c.on("status")) == 2)
            live = [(m.payload, m.retain) for m in watcher.on("status")]
        async with Collector(broker, ("pumpctl/lab/p9/status",)) as late:
            await late.wait_for(lambda c: len(c.messages) == 1)
            retained = [(m.payload, m.retain) for m in late.messages]
        return live, retained

    live, retained = asyncio.run(main())
    assert live == [(b"online", False), (b"offline", False)]
    assert retained == [(b"offline", True)]


def test_operators_pause_and_stop_a_simulated_run_over_tls(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path) -> None:
    program = standard_plan()
    tls = ssl.create_default_context(cafile=str(tls_files.ca))

    def client(user: str, **kw: Any) -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", secure_broker.port, username=user,
                              password=USERS[user], tls_context=tls, timeout=math.inf, **kw)

    def last_event(c: Collector) -> str | None:
        events = c.on("event")
        return json.loads(events[-1].payload)["event"] if events else None

    async def main() -> tuple[RunResult, Collector, bool]:
        clock = LoopClock()
        async with Collector(secure_broker, ("pumpctl/lab/p1/#",), username="dashboard",
                             password=USERS["dashboard"], tls_context=tls) as dashboard, \
                embedded_newera(clock) as (sim, driver):
            controller = InfusionController(driver, program,
                                            RunSettings(journal_dir=tmp_path / "runs"), clock=clock)

            url = f"mqtts://pump@127.0.0.1:{secure_broker.port}?ca={tls_files.ca}"
            async with telemetry_for_run(url, site="lab", pump_id="p1", password=USERS["pump"],
                                         remote_commands=True, controller_hooks=controller,
                                         journal_note=controller.journal_note,
                                         spool_dir=tmp_path / "spool") as sink:
                controller.add_sink(sink)
                run = asyncio.create_task(controller.run())
                await dashboard.wait_for(lambda c: len(c.on("telemetry")) >= 60)
                async with client("alice") as alice, client("bob") as bob:
                    await alice.publish("pumpctl/lab/p1/cmd/alice", json.dumps(
                        {"command": "pause", "reason": "line check"}), qos=1)
                    await dashboard.wait_for(lambda c: last_event(c) == "run_paused")
                    for forbidden in ("resume", "start"):
                        await alice.publish("pumpctl/lab/p1/cmd/alice",
                                            json.dumps({"command": forbidden}), qos=1)
                    # An odd stop (any case, a null reason, an unknown key) still stops.
                    await bob.publish("pumpctl/lab/p1/cmd/bob", json.dumps(
                        {"command": " STOP", "reason": None, "urgent": True}), qos=1)
                    result = await run
            await dashboard.wait_for(lambda c: b"offline" in [m.payload for m in c.on("status")])
            return result, dashboard, sim.pump(0).model.running

    result, dashboard, pump_running = run_clock(main(), virtual=True, io_grace_s=GRACE)
    records = read_records(result.journal_path)
    assert result.outcome == "aborted" and result.stop_confirmed
    assert not pump_running
    assert result.delivered_volume_ml < program.total_volume_ml / 2
    remote = [(r["args"]["command"], r["sender"], r.get("result"), r.get("error"))
              for r in records if r["type"] == "command" and r["op"] == "remote_command"]
    refused = "refused: only stop and pause are accepted"
    assert remote == [("pause", "mqtt:alice", "accepted", None),
                      ("resume", "mqtt:alice", None, refused),
                      ("start", "mqtt:alice", None, refused),
                      ("stop", "mqtt:bob", "accepted", None)]
    (stop_note,) = [r for r in records if r["type"] == "command"
                    and r["op"] == "remote_command" and r["sender"] == "mqtt:bob"]
    assert stop_note["notes"] == ["command ' STOP' read as 'stop'", "unknown keys: 'urgent'",
                                  "reason: expected text, got null"]
    states = [(r["state"], r["sender"]) for r in records if r["type"] == "state"]
    assert ("paused", "mqtt:alice") in states and ("stopping", "mqtt:bob") in states
    assert ("resumed", "mqtt:alice") not in states
    assert any(r["type"] == "alarm" and r["kind"] == "remote_stop" for r in records)
    # The dashboard saw who paused and who stopped it.
    events = {(e["event"], e.get("sender")) for e in dashboard.json_on("event")}
    assert {("run_paused", "mqtt:alice"), ("run_aborted", "mqtt:bob")} <= events


def test_pumpctl_runs_own_runner_streams_through_the_factory(
        broker: Mosquitto, tmp_path: Path) -> None:
    """The path `pumpctl run --mqtt` takes: RunOptions.sink_factories, the runner's own loop."""
    factory = telemetry_sink_factory(broker.url, site="lab", spool_root=tmp_path / "spool")
    independent = SubscriberProcess(broker, "pumpctl/lab/pump0/#", "runner-watch")
    plan = tmp_path / "saline-10min.yaml"  # short (with an override) to keep the test quick
    plan.write_text("name: saline-10min\ndrug: saline\nsyringe: bd-plastipak-60\n"
                    "steps:\n  - {label: infusion, volume: 0.1 mL/kg, over: 10 min}\n"
                    "monitoring: {vitals_every: 5 min, observe_after_end: 2 h}\n")
    opts = RunOptions(plan=plan, weight_kg=70, speed=None, journal_dir=tmp_path / "runs",
                      override_reason="short telemetry test", sink_factories=[factory],
                      json=True)
    result = execute(opts, Console(file=io.StringIO()))
    assert independent.wait_for_line("pumpctl/lab/pump0/status offline")
    independent.stop()
    rows = independent.rows()
    samples = journal_seqs(read_records(result.journal_path), {"sample"})
    telemetry = [json.loads(p) for _, _, t, p in rows if t.endswith("/telemetry")]
    assert result.outcome == "completed" and len(samples) == 601  # 600 polls, the stopped pump
    assert seqs(telemetry) == samples
    assert [p for _, _, t, p in rows if t.endswith("/status")] == ["online", "offline"]
    assert (tmp_path / "spool" / "lab" / "pump0").is_dir()
    assert not list((tmp_path / "spool" / "lab" / "pump0").glob("seg-*"))  # all sent

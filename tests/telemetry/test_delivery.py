"""A whole (synthetic) run through the sink to a real Mosquitto, seen by two subscribers."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pumpctl.telemetry.runtime import telemetry_for_run
from pumpctl.telemetry.schema import EventPayload, RunPayload, TelemetryPayload
from tests.telemetry.broker import Mosquitto, parse_sub_output, start_mosquitto_sub
from tests.telemetry.conftest import Collector
from tests.telemetry.synthetic import SyntheticRun, expected_counts

EVENT_OF_STATE = {"started": "run_started", "completed": "run_completed"}


def expected_events(script: list[tuple[float, dict[str, Any]]]) -> list[tuple[int, str]]:
    """(seq, event name) in journal order, derived from the records themselves."""
    names = {"segment": "segment_changed", "alarm": "alarm", "monitoring": "monitoring_due",
             "summary": "run_summary"}
    out = []
    for _, r in script:
        if r["type"] == "header":
            out += [(r["seq"], "soft_limit_override")] * len(r["overrides"])
        elif r["type"] == "state":
            out.append((r["seq"], EVENT_OF_STATE[r["state"]]))
        elif r["type"] in names:
            out.append((r["seq"], names[r["type"]]))
    return out


async def test_full_run_reaches_both_subscribers_in_order(
        broker: Mosquitto, collector_factory: Callable[..., Collector], tmp_path: Path) -> None:
    script = SyntheticRun(samples=40).script()
    n_telemetry, n_events = expected_counts(script)
    samples = [r for _, r in script if r["type"] == "sample"]
    # online + run(header) + events + telemetry + run(summary) + offline
    total = 1 + 1 + n_events + n_telemetry + 1 + 1
    sub = start_mosquitto_sub(broker, "pumpctl/#", count=total, client_id="independent")

    async with collector_factory(broker) as live:
        async with telemetry_for_run(broker.url, site="lab", pump_id="p1", telemetry_qos=1,
                                     spool_dir=tmp_path / "spool") as sink:
            for _, record in script:
                sink.emit(record)
        await live.wait_for(lambda c: len(c.messages) >= total)

    telemetry = [TelemetryPayload.model_validate_json(m.payload)
                 for m in live.on("telemetry")]
    assert len(telemetry) == n_telemetry
    seqs = [t.seq for t in telemetry]
    assert seqs == [r["seq"] for r in samples]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    assert [t.ts for t in telemetry] == [round(r["t"] * 1000) for r in samples]
    assert telemetry[-1].volume_delivered_ml == samples[-1]["infused_ml"]
    assert telemetry[-1].drug_name == "ketamine"  # from the header, not the sample

    events = [EventPayload.model_validate_json(m.payload).root
              for m in live.on("event")]
    assert [(e.seq, e.event) for e in events] == expected_events(script)
    assert all(m.qos == 1 for m in live.on("event"))
    assert all(m.qos == 1 for m in live.on("telemetry"))

    # Across topics too, messages arrive in journal order.
    ordered = [json.loads(m.payload)["seq"] for m in live.messages
               if not m.topic.value.endswith("/status")]
    assert ordered == sorted(ordered)
    assert [m.payload for m in live.on("status")] == [b"online", b"offline"]

    runs = [RunPayload.model_validate_json(m.payload) for m in live.on("run")]
    assert [r.run_state for r in runs] == ["running", "completed"]
    assert runs[0].vtbi_ml == script[0][1]["total_volume_ml"]
    assert [p.kind for p in runs[0].monitoring] == ["vitals", "infusion_end"]

    # The independent mosquitto_sub saw exactly the same stream.
    out, err = sub.communicate(timeout=20)
    assert sub.returncode == 0, err
    rows = parse_sub_output(out)
    assert [(t, p) for _, _, t, p in rows] == [
        (m.topic.value, m.payload.decode()) for m in live.messages]

    # A subscriber arriving afterwards gets the retained status and run, and nothing else.
    async with collector_factory(broker) as late:
        await late.wait_for(lambda c: len(c.messages) >= 2)
        assert {m.topic.value.rsplit("/", 1)[1]: m.retain for m in late.messages} == {
            "status": True, "run": True}
        assert late.on("status")[0].payload == b"offline"
        assert RunPayload.model_validate_json(
            late.on("run")[0].payload).outcome == "completed"


async def test_telemetry_qos_zero_keeps_events_at_qos_one(
        broker: Mosquitto, collector_factory: Callable[..., Collector], tmp_path: Path) -> None:
    script = SyntheticRun(samples=6).script()
    n_telemetry, n_events = expected_counts(script)
    async with collector_factory(broker) as live:
        async with telemetry_for_run(broker.url, site="lab", pump_id="p2", telemetry_qos=0,
                                     spool_dir=tmp_path / "spool") as sink:
            for _, record in script:
                sink.emit(record)
        await live.wait_for(lambda c: len(c.on("status")) == 2)
    assert [m.qos for m in live.on("telemetry")] == [0] * n_telemetry
    assert [m.qos for m in live.on("event")] == [1] * n_events
    assert all(m.qos == 1 for m in live.on("run"))

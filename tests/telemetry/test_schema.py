"""Record → payload mapping, the published JSON Schema, the docs, Home Assistant configs."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from pumpctl.cli import app
from pumpctl.telemetry.discovery import SENSORS, discovery_messages
from pumpctl.telemetry.mapping import MappingError, RecordMapper
from pumpctl.telemetry.runtime import telemetry_for_run
from pumpctl.telemetry.schema import (
    IEEE_11073_TERMS,
    EventPayload,
    RunPayload,
    TelemetryPayload,
    json_schema_document,
)
from pumpctl.telemetry.spool import MessageKind
from pumpctl.telemetry.topics import Topics
from tests.telemetry.broker import Mosquitto
from tests.telemetry.conftest import REPO, Collector
from tests.telemetry.synthetic import SyntheticRun

DOCS = REPO / "docs"
TOPICS = Topics.for_pump("lab1", "pump0")


def mapper(qos: int = 0) -> RecordMapper:
    return RecordMapper(TOPICS, site="lab1", pump_id="pump0", telemetry_qos=qos)


def test_schema_file_is_current() -> None:
    on_disk = json.loads((DOCS / "telemetry.schema.json").read_text())
    assert on_disk == json_schema_document(), \
        "regenerate: pumpctl telemetry schema > docs/telemetry.schema.json"


def test_schema_command_prints_the_same_document() -> None:
    result = CliRunner().invoke(app, ["telemetry", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == json_schema_document()


def test_docs_document_every_ieee_term_and_every_field() -> None:
    text = (DOCS / "telemetry.md").read_text()
    for field, term in IEEE_11073_TERMS.items():
        assert re.search(rf"\| `{field}` \|[^\n]*\| `{term}` \|", text), (field, term)
    for field in TelemetryPayload.model_fields:
        assert f"`{field}`" in text, field
    # The terms the issue names are all mapped.
    assert {"MDC_FLOW_FLUID_PUMP", "MDC_VOL_FLUID_DELIV_TOTAL", "MDC_VOL_FLUID_TBI_REMAIN",
            "MDC_TIME_PD_REMAIN", "MDC_PUMP_STAT", "MDC_DRUG_NAME_TYPE",
            "MDC_CONC_DRUG"} <= set(IEEE_11073_TERMS.values())


def test_a_whole_run_maps_to_valid_payloads_on_the_right_topics() -> None:
    m = mapper(qos=1)
    by_topic: dict[str, list[Any]] = {}
    for _, record in SyntheticRun(samples=8).script():
        for message in m.map(record):
            suffix = message.topic.rsplit("/", 1)[1]
            parsers: dict[str, Callable[[bytes], Any]] = {
                "telemetry": TelemetryPayload.model_validate_json,
                "event": lambda raw: EventPayload.model_validate_json(raw).root,
                "run": RunPayload.model_validate_json}
            # The models forbid extra fields, so this also catches anything unexpected.
            by_topic.setdefault(suffix, []).append(parsers[suffix](message.payload))
            assert (message.qos, message.retain) == {
                "telemetry": (1, False), "event": (1, False), "run": (1, True)}[suffix]
            assert message.kind is {"telemetry": MessageKind.TELEMETRY,
                                    "event": MessageKind.EVENT, "run": MessageKind.RUN}[suffix]
    assert len(by_topic["telemetry"]) == 8
    assert [e.event for e in by_topic["event"]] == [
        "soft_limit_override", "run_started", "segment_changed", "segment_changed",
        "monitoring_due", "alarm", "run_completed", "run_summary"]
    start, end = by_topic["run"]
    assert (start.run_state, end.run_state, end.outcome) == ("running", "completed", "completed")
    assert start.program["segments"][0]["rate_ml_h"] == 36.0
    assert by_topic["event"][5].value == 36.01 and by_topic["event"][5].alarm_source == "safety"


finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(rate=finite, infused=finite, remaining=finite, secs=finite, dose=finite,
       weight=st.none() | st.floats(min_value=1, max_value=300),
       state=st.sampled_from(["infusing", "paused", "stopped", "alarm"]),
       alarm=st.none() | st.sampled_from(["over_infusion", "no_status"]),
       t=st.floats(min_value=1e9, max_value=4e9))
def test_sample_fields_arrive_unchanged(rate: float, infused: float, remaining: float,
                                        secs: float, dose: float, weight: float | None,
                                        state: str, alarm: str | None, t: float) -> None:
    record = {"type": "sample", "seq": 7, "t": t, "elapsed_s": 3.0, "run_id": "r",
              "channel": "pump0", "state": state, "rate_ml_h": rate, "infused_ml": infused,
              "withdrawn_ml": 0.0, "planned_ml": infused, "vtbi_ml": None,
              "remaining_ml": remaining, "remaining_s": secs, "dose_mg": dose,
              "dose_mg_per_kg": None if weight is None else dose / weight,
              "dose_rate_mg_h": rate * 2, "segment": 3, "alarm": alarm}
    (message,) = mapper().map(record)
    body = json.loads(message.payload)
    # What flows: the set rate while infusing, 0 once stopped, paused or in alarm.
    flow = rate if state == "infusing" else 0.0
    assert (body["flow_rate_ml_h"], body["volume_delivered_ml"], body["vtbi_remaining_ml"],
            body["time_remaining_s"], body["dose_delivered_mg"]) == (
        flow, infused, remaining, secs, dose)
    assert body["dose_delivered_mg_per_kg"] == record["dose_mg_per_kg"]
    assert (body["pump_status"], body["alarm"], body["segment"], body["seq"]) == (
        state, alarm, 3, 7)
    assert body["ts"] == round(t * 1000) and body["vtbi_ml"] is None
    assert math.isclose(json.loads(message.payload)["ts"] / 1000, t, abs_tol=5e-4)


def test_records_breaking_the_contract_are_named_not_sent(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = {"type": "sample", "seq": 12, "t": 1e9, "elapsed_s": 1.0, "run_id": "r",
           "channel": "pump0", "state": "infusing"}
    with pytest.raises(MappingError, match=r"sample record seq=12: KeyError\('rate_ml_h'\)"):
        mapper().map(bad)
    assert mapper().map({"type": "command", "seq": 1, "op": "status"}) == []
    assert mapper().map({"type": "something-new", "seq": 2}) == []


async def test_sink_never_raises_into_the_controller(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with telemetry_for_run("mqtt://127.0.0.1:9", site="lab", pump_id="p1",
                                 spool_dir=tmp_path / "spool", drain_timeout_s=0.1) as sink:
        sink.emit({"type": "sample", "seq": 1})  # broken record
        sink.emit({"type": "state", "seq": 2, "t": 1e9, "elapsed_s": 0, "run_id": "r",
                   "state": "exploded"})  # unknown state name
        sink.emit(SyntheticRun(samples=1).script()[-1][1])  # a good one
    assert (sink.stats.records, sink.stats.unmapped, sink.stats.messages) == (3, 2, 1)
    assert "record not sent" in caplog.text
    assert sink.spool.pending == 1  # kept on disk for the next run


def test_home_assistant_configs_read_real_telemetry_fields() -> None:
    messages = discovery_messages(TOPICS, "lab1", "pump0")
    assert len(messages) == len(SENSORS)
    fields = set(TelemetryPayload.model_fields)
    for message in messages:
        config = json.loads(message.payload)
        assert message.retain and message.qos == 1
        assert message.topic.startswith("homeassistant/sensor/pumpctl_lab1_pump0/")
        assert config["state_topic"] == TOPICS.telemetry
        assert config["availability_topic"] == TOPICS.status
        used = re.findall(r"value_json\.(\w+)", config["value_template"])
        assert used and set(used) <= fields
        assert config["unique_id"].startswith("pumpctl_lab1_pump0_")


async def test_home_assistant_discovery_is_published_when_asked(
        broker: Mosquitto, tmp_path: Path) -> None:
    async with Collector(broker, ("homeassistant/#",)) as ha:
        async with telemetry_for_run(broker.url, site="lab1", pump_id="pump0", ha_discovery=True,
                                     spool_dir=tmp_path / "spool"):
            await ha.wait_for(lambda c: len(c.messages) >= len(SENSORS))
        names = {json.loads(m.payload)["name"] for m in ha.messages}
    assert names == {s.name for s in SENSORS}

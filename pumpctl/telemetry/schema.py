"""Payload models for every topic, and the JSON Schema published in docs/telemetry.schema.json.

Payloads are flat JSON objects (no nesting except in the retained `run` message) so Grafana's
MQTT data source, Node-RED and ThingsBoard can read the fields as they are. Field names follow
the IEEE 11073-10101 infusion-pump terms they correspond to; each such field carries the term in
its schema as `x-ieee11073`, which is also where `IEEE_11073_TERMS` (and the docs table) come
from, so the mapping has a single source.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import models_json_schema


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _mdc(term: str, description: str) -> Any:
    """A field that maps onto an IEEE 11073-10101 (MDC) term."""
    return Field(description=f"{description} (IEEE 11073: {term})",
                 json_schema_extra={"x-ieee11073": term})


class Stamp(_Payload):
    """What every JSON payload starts with: when, which record, which run, which pump."""

    ts: int = Field(description="Record time, Unix epoch milliseconds (kept through spooling)")
    time: str = Field(description="Record time, ISO 8601 UTC with milliseconds")
    seq: int = Field(description="Journal sequence number: strictly increasing within a run")
    run_id: str
    site: str
    pump_id: str
    elapsed_s: float = Field(description="Seconds since the run started")


class TelemetryPayload(Stamp):
    """`<prefix>/telemetry`: one per status poll."""

    pump_status: str = _mdc("MDC_PUMP_STAT",
                            "Pump state: stopped, infusing, paused, alarm, ...")
    flow_rate_ml_h: float = _mdc("MDC_FLOW_FLUID_PUMP", "Current flow rate, mL/h")
    volume_delivered_ml: float = _mdc("MDC_VOL_FLUID_DELIV_TOTAL",
                                      "Volume infused so far in this run, mL")
    vtbi_ml: float | None = _mdc("MDC_VOL_FLUID_TBI",
                                 "Volume to be infused programmed into the pump, mL "
                                 "(null until it is set)")
    vtbi_remaining_ml: float = _mdc("MDC_VOL_FLUID_TBI_REMAIN", "Volume still to infuse, mL")
    time_remaining_s: float = _mdc("MDC_TIME_PD_REMAIN", "Time until the programme ends, s")
    planned_volume_ml: float = Field(description="Volume the plan calls for by now, mL")
    dose_delivered_mg: float = Field(description="Drug delivered so far, mg")
    dose_delivered_mg_per_kg: float | None = Field(
        description="Drug delivered so far per kg body weight (null without a weight)")
    dose_rate_mg_h: float = _mdc("MDC_RATE_DOSE", "Current dose rate, mg/h")
    drug_name: str | None = _mdc("MDC_DRUG_NAME_TYPE", "Drug name from the plan")
    drug_concentration_mg_per_ml: float | None = _mdc("MDC_CONC_DRUG",
                                                      "Drug concentration, mg/mL")
    segment: int = Field(description="Index of the constant-rate segment being delivered")
    alarm: str | None = Field(description="Active alarm kind, or null")


RunStateName = Literal["run_started", "run_paused", "run_resumed", "run_stopping",
                       "run_stopped", "run_completed", "run_aborted", "run_faulted"]


class RunStateEvent(Stamp):
    """The run changed state (journal `state` record)."""

    event: RunStateName
    reason: str | None = None
    sender: str | None = Field(default=None,
                               description="Who asked: operator, signal, mqtt:<user>, ...")


class SegmentEvent(Stamp):
    """A new constant-rate segment began (journal `segment` record)."""

    event: Literal["segment_changed"]
    segment: int
    flow_rate_ml_h: float = _mdc("MDC_FLOW_FLUID_PUMP", "Rate of the new segment, mL/h")
    segment_start_s: float
    segment_duration_s: float
    segment_volume_ml: float


class AlarmEvent(Stamp):
    """An alarm from the safety monitor, the pump, the controller or an operator."""

    event: Literal["alarm"]
    alarm: str = Field(description="Kind: over_infusion, pump_alarm, remote_stop, ...")
    alarm_source: str = Field(description="safety, pump, controller or operator")
    message: str
    value: float | str | None = None
    limit: float | str | None = None


class OverrideEvent(Stamp):
    """A soft limit of the drug library that the plan was allowed to exceed, with its reason."""

    event: Literal["soft_limit_override"]
    field: str
    value: float
    limit: float
    bound: str
    reason: str


class MonitoringEvent(Stamp):
    """A point of the plan's monitoring timeline became due (vital signs, end of observation...)."""

    event: Literal["monitoring_due"]
    monitoring_kind: str = Field(description="vitals, infusion_end, observation_end, assessment")
    label: str
    due_at_s: float = Field(description="When it was due, seconds after the run started")


class SummaryEvent(Stamp):
    """The run ended (journal `summary` record)."""

    event: Literal["run_summary"]
    outcome: str
    planned_volume_ml: float
    delivered_volume_ml: float
    planned_dose_mg: float
    delivered_dose_mg: float
    duration_s: float
    alarms: int


EventUnion = Annotated[
    RunStateEvent | SegmentEvent | AlarmEvent | OverrideEvent | MonitoringEvent | SummaryEvent,
    Field(discriminator="event"),
]


class EventPayload(RootModel[EventUnion]):
    """`<prefix>/event` (QoS 1): one of the event shapes, told apart by `event`."""


class MonitoringPoint(_Payload):
    at_s: float
    kind: str
    label: str
    due_time: str = Field(description="ISO 8601 UTC, from the run's start")


class RunPayload(Stamp):
    """`<prefix>/run` (retained): the current run's plan summary and compiled program."""

    run_state: Literal["running", "completed", "aborted", "faulted"]
    started_time: str = Field(description="ISO 8601 UTC time of the run's first record")
    plan: str
    drug_name: str | None = _mdc("MDC_DRUG_NAME_TYPE", "Drug name from the plan")
    drug_concentration_mg_per_ml: float | None = _mdc("MDC_CONC_DRUG",
                                                      "Drug concentration, mg/mL")
    weight_kg: float | None
    vtbi_ml: float = _mdc("MDC_VOL_FLUID_TBI", "Programmed total volume to be infused, mL")
    total_dose_mg: float
    duration_s: float
    operator: str | None
    pump_model: str | None
    pump_firmware: str | None
    library_name: str | None
    library_version: str | None
    software_version: str | None
    overrides: list[dict[str, Any]] = Field(description="Soft-limit overrides and reasons")
    monitoring: list[MonitoringPoint] = Field(description="The plan's monitoring timeline")
    program: dict[str, Any] = Field(description="The compiled RateProgram (segments, limits)")
    outcome: str | None = None
    delivered_volume_ml: float | None = None
    delivered_dose_mg: float | None = None
    remote_commands: bool = Field(
        default=False,
        description="The run accepts stop and pause on <prefix>/cmd/<user> (--remote-commands); "
                    "dashboards offer those buttons only when this is true")


class RemoteCommandPayload(BaseModel):
    """`<prefix>/cmd/<user>`: what an operator may send when remote commands are enabled."""

    model_config = ConfigDict(extra="ignore")

    command: Literal["stop", "pause"]
    reason: str = Field(default="", max_length=200)


STATUS_VALUES = ("online", "offline")

_TOPICS = (
    ("telemetry", TelemetryPayload, "serialization"),
    ("event", EventPayload, "serialization"),
    ("run", RunPayload, "serialization"),
    ("cmd/<user>", RemoteCommandPayload, "validation"),
)


def ieee_11073_terms() -> dict[str, str]:
    """Telemetry field name → IEEE 11073 term, read from the model's field annotations."""
    terms: dict[str, str] = {}
    for name, info in TelemetryPayload.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and "x-ieee11073" in extra:
            terms[name] = str(extra["x-ieee11073"])
    return terms


IEEE_11073_TERMS = ieee_11073_terms()


def json_schema_document() -> dict[str, Any]:
    """The JSON Schema (2020-12) of every payload, as written to docs/telemetry.schema.json."""
    models = [(model, mode) for _, model, mode in _TOPICS]
    keys, generated = models_json_schema(models, ref_template="#/$defs/{model}")  # type: ignore[arg-type]
    defs: dict[str, Any] = dict(generated.get("$defs", {}))
    defs["StatusPayload"] = {
        "title": "StatusPayload",
        "description": "`<prefix>/status` (retained): the raw text online or offline, not JSON. "
                       "offline is also the connection's Last Will.",
        "type": "string",
        "enum": list(STATUS_VALUES),
    }
    topics: dict[str, Any] = {"status": {"$ref": "#/$defs/StatusPayload"}}
    for topic, model, mode in _TOPICS:
        topics[topic] = keys[(model, mode)]  # type: ignore[index]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pumpctl MQTT telemetry payloads",
        "description": "Payloads published under pumpctl/<site>/<pump_id>/ (see docs/telemetry.md)."
                       " x-topics maps each topic suffix to its payload.",
        "x-topics": topics,
        "oneOf": list(topics.values()),
        "$defs": dict(sorted(defs.items())),
    }

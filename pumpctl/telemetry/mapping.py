"""Journal records → MQTT messages (topic, JSON payload, QoS, retain).

The journal record format is fixed by the controller (see docs/telemetry.md); this is the one
place that knows both it and the payload models. The mapper is stateful for one reason: a
`sample` does not repeat the drug and concentration, so they are taken from the run's `header`.

    header      → run (retained) + one soft_limit_override event per override
    sample      → telemetry
    state       → event run_<state>
    segment     → event segment_changed
    alarm       → event alarm
    monitoring  → event monitoring_due
    summary     → event run_summary + run (retained) updated with the outcome
    command, anything else → nothing (the journal has it)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from pumpctl.telemetry.schema import (
    AlarmEvent,
    MonitoringEvent,
    MonitoringPoint,
    OverrideEvent,
    RunPayload,
    RunStateEvent,
    SegmentEvent,
    SummaryEvent,
    TelemetryPayload,
)
from pumpctl.telemetry.spool import MessageKind, OutMessage
from pumpctl.telemetry.topics import Topics

log = logging.getLogger("pumpctl.telemetry.mapping")

EVENT_QOS = 1  # events and the retained run/status are never sent at QoS 0
_RUN_STATES = {"completed", "aborted", "faulted"}


class MappingError(ValueError):
    """A record that does not follow the journal contract (missing or mistyped field)."""


def iso_utc(epoch_s: float) -> str:
    """ISO 8601 UTC with milliseconds and a Z, the form dashboards parse without a format."""
    stamp = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class RecordMapper:
    """Turns one pump's journal records into the messages to spool, in the same order."""

    def __init__(self, topics: Topics, *, site: str, pump_id: str, telemetry_qos: int,
                 remote_commands: bool = False) -> None:
        self.topics = topics
        self.site = site
        self.pump_id = pump_id
        self.telemetry_qos = telemetry_qos
        self.remote_commands = remote_commands  # told to dashboards in the retained run
        self._header: Mapping[str, Any] | None = None
        self._run: RunPayload | None = None

    def map(self, record: Mapping[str, Any]) -> list[OutMessage]:
        """The messages for one record ([] for records dashboards do not need)."""
        kind = record.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return []
        try:
            return handler(self, record)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            detail = exc.errors()[0] if isinstance(exc, ValidationError) else repr(exc)
            raise MappingError(f"{kind} record seq={record.get('seq')!r}: {detail}") from None

    # -- helpers ----------------------------------------------------------------------------

    def _stamp(self, record: Mapping[str, Any]) -> dict[str, Any]:
        t = float(record["t"])
        return {"ts": round(t * 1000), "time": iso_utc(t), "seq": int(record["seq"]),
                "run_id": str(record["run_id"]), "site": self.site, "pump_id": self.pump_id,
                "elapsed_s": float(record["elapsed_s"])}

    def _event(self, payload: BaseModel) -> OutMessage:
        return OutMessage(self.topics.event, payload.model_dump_json().encode(), EVENT_QOS,
                          False, MessageKind.EVENT)

    def _run_message(self, payload: RunPayload) -> OutMessage:
        self._run = payload
        return OutMessage(self.topics.run, payload.model_dump_json().encode(), EVENT_QOS, True,
                          MessageKind.RUN)

    # -- one method per record type ---------------------------------------------------------

    def _header_record(self, record: Mapping[str, Any]) -> list[OutMessage]:
        self._header = record
        stamp = self._stamp(record)
        program = record.get("program") or {}
        pump = record.get("pump") or {}
        t0 = float(record["t"]) - float(record["elapsed_s"])
        monitoring = [
            MonitoringPoint(at_s=float(m["at_s"]), kind=str(m["kind"]), label=str(m["label"]),
                            due_time=iso_utc(t0 + float(m["at_s"])))
            for m in program.get("monitoring", [])
        ]
        overrides = [dict(o) for o in record.get("overrides") or [] if isinstance(o, Mapping)]
        run = RunPayload(
            **stamp, run_state="running", started_time=iso_utc(t0),
            plan=str(record.get("plan") or program.get("plan") or ""),
            drug_name=_opt_str(record.get("drug")),
            drug_concentration_mg_per_ml=_opt_float(record.get("concentration_mg_per_ml")),
            weight_kg=_opt_float(record.get("weight_kg")),
            vtbi_ml=float(record["total_volume_ml"]),
            total_dose_mg=float(record["total_dose_mg"]),
            duration_s=float(record["duration_s"]),
            operator=_opt_str(record.get("operator")),
            pump_model=_opt_str(pump.get("model")),
            pump_firmware=_opt_str(pump.get("firmware")),
            library_name=_opt_str(record.get("library_name")),
            library_version=_opt_str(record.get("library_version")),
            software_version=_opt_str(record.get("software_version")),
            overrides=overrides, monitoring=monitoring, program=dict(program),
            remote_commands=self.remote_commands,
        )
        messages = [self._run_message(run)]
        for override in overrides:
            messages.append(self._event(OverrideEvent(
                **stamp, event="soft_limit_override", field=str(override["field"]),
                value=float(override["value"]), limit=float(override["limit"]),
                bound=str(override.get("bound", "")), reason=str(override.get("reason", "")))))
        return messages

    def _sample_record(self, record: Mapping[str, Any]) -> list[OutMessage]:
        header = self._header or {}
        payload = TelemetryPayload(
            **self._stamp(record),
            pump_status=str(record["state"]),
            flow_rate_ml_h=float(record["rate_ml_h"]),
            volume_delivered_ml=float(record["infused_ml"]),
            vtbi_ml=_opt_float(record.get("vtbi_ml")),
            vtbi_remaining_ml=float(record["remaining_ml"]),
            time_remaining_s=float(record["remaining_s"]),
            planned_volume_ml=float(record["planned_ml"]),
            dose_delivered_mg=float(record["dose_mg"]),
            dose_delivered_mg_per_kg=_opt_float(record.get("dose_mg_per_kg")),
            dose_rate_mg_h=float(record["dose_rate_mg_h"]),
            drug_name=_opt_str(header.get("drug")),
            drug_concentration_mg_per_ml=_opt_float(header.get("concentration_mg_per_ml")),
            segment=int(record["segment"]),
            alarm=_opt_str(record.get("alarm")),
        )
        return [OutMessage(self.topics.telemetry, payload.model_dump_json().encode(),
                           self.telemetry_qos, False, MessageKind.TELEMETRY)]

    def _state_record(self, record: Mapping[str, Any]) -> list[OutMessage]:
        return [self._event(RunStateEvent(
            **self._stamp(record), event=f"run_{record['state']}",  # type: ignore[arg-type]
            reason=_opt_str(record.get("reason")), sender=_opt_str(record.get("sender"))))]

    def _segment_record(self, record: Mapping[str, Any]) -> list[OutMessage]:
        return [self._event(SegmentEvent(
            **self._stamp(record), event="segment_changed", segment=int(record["index"]),
            flow_rate_ml_h=float(record["rate_ml_h"]),
            segment_start_s=float(record["start_s"]),
            segment_duration_s=float(record["duration_s"]),
            segment_volume_ml=float(record["volume_ml"])))]

    def _alarm_record(self, record: Mapping[str, Any]) -> list[OutMessage]:
        return [self._event(AlarmEvent(
            **self._stamp(record), event="alarm", alarm=str(record["kind"]),
            alarm_source=str(record["source"]), message=str(record.get("message") or ""),
            value=_scalar(record.get("value")), limit=_scalar(record.get("limit"))))]

    def _monitoring_record(self, record: Mapping[str, Any]) -> list[OutMessage]:
        return [self._event(MonitoringEvent(
            **self._stamp(record), event="monitoring_due", monitoring_kind=str(record["kind"]),
            label=str(record["label"]), due_at_s=float(record["at_s"])))]

    def _summary_record(self, record: Mapping[str, Any]) -> list[OutMessage]:
        outcome = str(record["outcome"])
        messages = [self._event(SummaryEvent(
            **self._stamp(record), event="run_summary", outcome=outcome,
            planned_volume_ml=float(record["planned_volume_ml"]),
            delivered_volume_ml=float(record["delivered_volume_ml"]),
            planned_dose_mg=float(record["planned_dose_mg"]),
            delivered_dose_mg=float(record["delivered_dose_mg"]),
            duration_s=float(record["duration_s"]), alarms=int(record["alarms"])))]
        if self._run is not None:
            ended = self._run.model_copy(update={
                **self._stamp(record),
                "run_state": outcome if outcome in _RUN_STATES else "aborted",
                "outcome": outcome,
                "delivered_volume_ml": float(record["delivered_volume_ml"]),
                "delivered_dose_mg": float(record["delivered_dose_mg"]),
            })
            messages.append(self._run_message(ended))
        return messages


_HANDLERS = {
    "header": RecordMapper._header_record,
    "sample": RecordMapper._sample_record,
    "state": RecordMapper._state_record,
    "segment": RecordMapper._segment_record,
    "alarm": RecordMapper._alarm_record,
    "monitoring": RecordMapper._monitoring_record,
    "summary": RecordMapper._summary_record,
}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _scalar(value: Any) -> float | str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return float(value)
    return str(value)

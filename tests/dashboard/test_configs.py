"""The drop-in configs in configs/dashboards/ against docs/telemetry.schema.json.

Every field a Grafana panel, the Telegraf config or the Node-RED flow names must exist in the
payload of the topic it reads, with a type that fits how it is used (a chart needs a number,
a tag a string, a nullable field must be optional for Telegraf). So renaming or retyping a
field in pumpctl/telemetry/schema.py fails here until the configs follow.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "dashboards"
SCHEMA = json.loads((REPO / "docs" / "telemetry.schema.json").read_text())
DEFS: dict[str, Any] = SCHEMA["$defs"]
NUMERIC = {"number", "integer"}
GRAFANA_TIME = "Time"  # the column Grafana adds itself, not a payload field


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    return DEFS[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node


def payload_defs(topic_kind: str) -> list[dict[str, Any]]:
    """The object schema(s) of a topic kind: one for telemetry and run, each event shape."""
    top = _deref(SCHEMA["x-topics"][topic_kind])
    if "oneOf" in top:
        return [_deref(d) for d in top["oneOf"]]
    return [top]


def field_types(defn: dict[str, Any], name: str) -> tuple[set[str], bool] | None:
    """(JSON types without null, may be null or absent) of one field, None if missing."""
    prop = defn["properties"].get(name)
    if prop is None:
        return None
    options = prop.get("anyOf", [prop])
    types = {o["type"] for o in options if "type" in o}
    nullable = "null" in types or name not in defn.get("required", [])
    return types - {"null"}, nullable


def check_field(topic_kind: str, name: str, wanted: set[str] | None, where: str) -> bool:
    """Assert `name` is in the topic's payload with one of the `wanted` types (any type when
    None); returns whether it can be null or missing in some message."""
    found = [(d["title"], field_types(d, name)) for d in payload_defs(topic_kind)]
    present = [(title, ft) for title, ft in found if ft is not None]
    assert present, f"{where}: {name!r} is not a field of any {topic_kind} payload"
    nullable = len(present) < len(found)
    for title, (types, may_be_null) in present:  # type: ignore[misc]
        nullable |= may_be_null
        if wanted is not None:
            assert types <= wanted, \
                f"{where}: {name!r} is {sorted(types)} in {title}, used as {sorted(wanted)}"
    return nullable


def topic_kind(topic: str) -> str:
    kind = topic.rsplit("/", 1)[1]
    assert kind in SCHEMA["x-topics"], f"{topic}: not a pumpctl topic"
    return kind


# -- Telegraf ---------------------------------------------------------------------------------

TELEGRAF_TYPES = {"float": {"number"}, "int": {"integer"}, "uint": {"integer"},
                  "string": {"string"}, "bool": {"boolean"}}


def telegraf_stored() -> dict[str, tuple[str, set[str], set[str]]]:
    """measurement -> (topic kind, tags, fields) as the Telegraf config stores them."""
    config = tomllib.loads((CONFIGS / "telegraf-pumpctl.conf").read_text())
    stored = {}
    for consumer in config["inputs"]["mqtt_consumer"]:
        assert consumer["data_format"] == "json_v2"
        (topic,) = consumer["topics"]
        kind = topic_kind(topic)
        for parser in consumer["json_v2"]:
            where = f"telegraf {parser['measurement_name']}"
            assert parser["timestamp_path"] == "ts" and parser["timestamp_format"] == "unix_ms"
            check_field(kind, "ts", {"integer"}, where)
            tags = {tag["path"] for tag in parser["tag"]}
            assert {"site", "pump_id"} <= tags, f"{where}: site and pump_id must be tags"
            for tag in tags:
                check_field(kind, tag, {"string"}, where)
            fields = set()
            for field in parser["field"]:
                nullable = check_field(kind, field["path"], TELEGRAF_TYPES[field["type"]], where)
                assert not nullable or field.get("optional"), \
                    f"{where}: {field['path']!r} can be null or absent: mark it optional"
                fields.add(field["path"])
            stored[parser["measurement_name"]] = (kind, tags, fields)
    return stored


def test_telegraf_stores_telemetry_and_events_timed_by_ts() -> None:
    stored = telegraf_stored()
    assert set(stored) == {"pumpctl_telemetry", "pumpctl_event"}
    kind, _, fields = stored["pumpctl_telemetry"]
    assert kind == "telemetry"
    # Every telemetry field except the stamp's tags and times is kept.
    telemetry = payload_defs("telemetry")[0]["properties"]
    assert fields == set(telemetry) - {"ts", "time", "site", "pump_id"}
    assert stored["pumpctl_event"][0] == "event"


# -- Grafana ----------------------------------------------------------------------------------

PANEL_TYPES = {"timeseries": NUMERIC, "bargauge": NUMERIC, "gauge": NUMERIC,
               "stat": None, "table": None}


def panel_fields(panel: dict[str, Any]) -> list[str]:
    names = []
    for step in panel.get("transformations", []):
        if step["id"] == "filterFieldsByName":
            names += step["options"]["include"]["names"]
    for target in panel["targets"]:
        for select in target.get("select", []):
            names += [part["params"][0] for part in select if part["type"] == "field"]
    return [n for n in names if n != GRAFANA_TIME]


def override_fields(dashboard: dict[str, Any]) -> set[str]:
    return {o["matcher"]["options"] for p in dashboard["panels"]
            for o in p["fieldConfig"]["overrides"] if o["matcher"]["id"] == "byName"}


def test_grafana_live_dashboard_reads_fields_the_payloads_have() -> None:
    dashboard = json.loads((CONFIGS / "grafana-mqtt-live.json").read_text())
    for panel in dashboard["panels"]:
        (target,) = panel["targets"]
        assert panel["datasource"]["type"] == "grafana-mqtt-datasource"
        kind = topic_kind(target["topic"])
        for name in panel_fields(panel):
            check_field(kind, name, PANEL_TYPES[panel["type"]], f"grafana {panel['title']}")
    for name in override_fields(dashboard):
        check_field("telemetry", name, None, "grafana field override")


def test_grafana_history_dashboard_reads_what_telegraf_stores() -> None:
    dashboard = json.loads((CONFIGS / "grafana-influxdb-history.json").read_text())
    stored = telegraf_stored()
    for panel in dashboard["panels"]:
        (target,) = panel["targets"]
        kind, tags, fields = stored[target["measurement"]]
        assert {t["key"] for t in target["tags"]} == {"site", "pump_id"}
        for name in panel_fields(panel):
            where = f"grafana history {panel['title']}"
            assert name in fields | tags, f"{where}: {name!r} is not stored by Telegraf"
            check_field(kind, name, PANEL_TYPES[panel["type"]] if name in fields else None,
                        where)
    live = json.loads((CONFIGS / "grafana-mqtt-live.json").read_text())
    # The same panels as the live dashboard (and so as the page's card).
    assert [(p["title"], p["type"], panel_fields(p)) for p in dashboard["panels"]] == \
        [(p["title"], p["type"], panel_fields(p)) for p in live["panels"]]


# -- Node-RED ---------------------------------------------------------------------------------

def test_node_red_flow_charts_numbers_and_lists_alarms() -> None:
    flow = json.loads((CONFIGS / "node-red-pumpctl-flow.json").read_text())
    nodes = {n["id"]: n for n in flow}
    feeds: dict[str, tuple[str, str | None]] = {}  # node id -> (topic kind, event filter)

    def follow(node_id: str, kind: str, event: str | None) -> None:
        node = nodes[node_id]
        if node["type"] == "switch":
            assert node["property"] == "payload.event"
            (rule,) = node["rules"]
            event = rule["v"]
            assert f"#/$defs/{_event_def(event)}"  # an event name the schema knows
        feeds[node_id] = (kind, event)
        for wire in node.get("wires", []):
            for target in wire:
                follow(target, kind, event)

    for node in flow:
        if node["type"] == "mqtt in":
            assert node["datatype"] == "json" or node["topic"].endswith("/status")
            for wire in node["wires"]:
                for target in wire:
                    follow(target, topic_kind(node["topic"]), None)

    charts = [n for n in flow if n["type"] == "ui-chart"]
    tables = [n for n in flow if n["type"] == "ui-table"]
    assert charts and tables, "a chart and an alarm list"
    for chart in charts:
        kind, _ = feeds[chart["id"]]
        where = f"node-red {chart['name']}"
        assert chart["xAxisPropertyType"] == "property"
        check_field(kind, chart["xAxisProperty"], {"integer"}, where)  # ts, epoch ms
        if chart["categoryType"] == "json":
            for name in json.loads(chart["category"]):
                check_field(kind, name, NUMERIC, where)
        else:
            assert chart["categoryType"] == "property"
            check_field(kind, chart["category"], {"string"}, where)
            check_field(kind, chart["yAxisProperty"], NUMERIC, where)
    for table in tables:
        kind, event = feeds[table["id"]]
        assert (kind, event) == ("event", "alarm"), "the alarm list reads alarm events"
        alarm = DEFS[_event_def("alarm")]
        for column in table["columns"]:
            assert field_types(alarm, column["key"]) is not None, \
                f"node-red alarm list: {column['key']!r} is not in AlarmEvent"


def _event_def(event: str) -> str:
    mapping = _deref(SCHEMA["x-topics"]["event"])["discriminator"]["mapping"]
    assert event in mapping, f"{event!r} is not an event name"
    return str(mapping[event].rsplit("/", 1)[1])


# -- the check itself must bite -----------------------------------------------------------------

def test_a_renamed_or_retyped_field_is_caught() -> None:
    with pytest.raises(AssertionError, match="not a field"):
        check_field("telemetry", "volume_ml", NUMERIC, "probe")
    with pytest.raises(AssertionError, match="used as"):
        check_field("telemetry", "pump_status", NUMERIC, "probe")
    with pytest.raises(AssertionError, match="used as"):
        check_field("event", "value", NUMERIC, "probe")  # number in one alarm, text in another
    assert check_field("telemetry", "vtbi_ml", NUMERIC, "probe") is True  # nullable
    assert check_field("telemetry", "flow_rate_ml_h", NUMERIC, "probe") is False

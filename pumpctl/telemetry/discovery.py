"""Home Assistant MQTT discovery (`--ha-discovery`): retained config messages for each sensor.

Home Assistant then shows the pump as a device whose sensors read the flat telemetry payload
through value templates, and whose availability follows the retained `status` topic (so a
crashed controller shows as unavailable via the Last Will). Configs are re-sent on every
connect, which is harmless because they are retained and identical.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pumpctl import __version__
from pumpctl.telemetry.spool import MessageKind, OutMessage
from pumpctl.telemetry.topics import Topics

DISCOVERY_PREFIX = "homeassistant"


@dataclass(frozen=True)
class _Sensor:
    field: str
    name: str
    unit: str | None = None
    device_class: str | None = None
    numeric: bool = True


SENSORS = (
    _Sensor("flow_rate_ml_h", "Flow rate", "mL/h"),
    _Sensor("volume_delivered_ml", "Volume delivered", "mL"),
    _Sensor("vtbi_remaining_ml", "VTBI remaining", "mL"),
    _Sensor("time_remaining_s", "Time remaining", "s", "duration"),
    _Sensor("dose_delivered_mg", "Dose delivered", "mg"),
    _Sensor("dose_rate_mg_h", "Dose rate", "mg/h"),
    _Sensor("pump_status", "Pump status", numeric=False),
    _Sensor("alarm", "Alarm", numeric=False),
    _Sensor("drug_name", "Drug", numeric=False),
)


def node_id(site: str, pump_id: str) -> str:
    """Home Assistant ids allow [A-Za-z0-9_-]: map everything else to `_`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"pumpctl_{site}_{pump_id}")


def discovery_messages(topics: Topics, site: str, pump_id: str,
                       prefix: str = DISCOVERY_PREFIX) -> list[OutMessage]:
    node = node_id(site, pump_id)
    device = {"identifiers": [node], "name": f"pumpctl {site}/{pump_id}",
              "manufacturer": "pumpctl", "model": "syringe pump (research use only)",
              "sw_version": __version__}
    messages = []
    for sensor in SENSORS:
        fallback = "" if sensor.numeric else " or 'none'"
        config: dict[str, object] = {
            "name": sensor.name,
            "unique_id": f"{node}_{sensor.field}",
            "state_topic": topics.telemetry,
            "value_template": f"{{{{ value_json.{sensor.field}{fallback} }}}}",
            "availability_topic": topics.status,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        if sensor.unit:
            config["unit_of_measurement"] = sensor.unit
        if sensor.numeric:
            config["state_class"] = "measurement"
        if sensor.device_class:
            config["device_class"] = sensor.device_class
        topic = f"{prefix}/sensor/{node}/{sensor.field}/config"
        messages.append(OutMessage(topic, json.dumps(config).encode(), 1, True, MessageKind.RUN))
    return messages

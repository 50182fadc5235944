"""`pumpctl telemetry tail`: live telemetry on a lab terminal, one line per message."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiomqtt

from pumpctl.telemetry.errors import TelemetryError
from pumpctl.telemetry.topics import DEFAULT_PREFIX, check_id
from pumpctl.telemetry.urls import MqttTarget


def subscription_filters(target: MqttTarget, site: str | None, pump_id: str | None,
                         *, events: bool = True) -> list[str]:
    """Topic filters for one pump, one site, or every pump (`+` for what is not given)."""
    if site is not None:
        check_id("--site", site)
    if pump_id is not None:
        check_id("--pump", pump_id)
    template = target.prefix or DEFAULT_PREFIX
    base = template.format(site=site or "+", pump_id=pump_id or "+").strip("/")
    suffixes = ["status", "telemetry", *(["event"] if events else [])]
    return [f"{base}/{suffix}" for suffix in suffixes]


def _clock(body: dict[str, Any]) -> str:
    ts = body.get("ts")
    if not isinstance(ts, int | float):
        return "--:--:--.---"
    return datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S.%f")[:-3]


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def format_message(topic: str, payload: bytes) -> str:
    """A readable line (Rich markup) for one message; falls back to the raw text."""
    suffix = topic.rsplit("/", 1)[-1]
    who = "/".join(topic.split("/")[-3:-1])
    if suffix == "status":
        text = payload.decode(errors="replace")
        colour = "green" if text == "online" else "red"
        return f"{'':12} {who} [{colour}]{text}[/]"
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return f"{'':12} {who} {suffix}: {payload[:200]!r}"
    if not isinstance(body, dict):
        return f"{'':12} {who} {suffix}: {body!r}"
    head = f"{_clock(body)} {who} #{body.get('seq', '?')}"
    if suffix == "telemetry":
        mg_kg = body.get("dose_delivered_mg_per_kg")
        per_kg = f" ({_num(mg_kg, '.3f')} mg/kg)" if mg_kg is not None else ""
        alarm = f" [bold red]{body['alarm']}[/]" if body.get("alarm") else ""
        return (f"{head} {body.get('pump_status', '?'):<9} "
                f"{_num(body.get('flow_rate_ml_h'), '8.3f')} mL/h  "
                f"vol {_num(body.get('volume_delivered_ml'), '.3f')}/"
                f"{_num(body.get('vtbi_ml'), '.3f')} mL  "
                f"rem {_num(body.get('vtbi_remaining_ml'), '.3f')} mL "
                f"{_duration(body.get('time_remaining_s'))}  "
                f"dose {_num(body.get('dose_delivered_mg'), '.3f')} mg{per_kg}  "
                f"seg {body.get('segment', '-')}{alarm}")
    details = ", ".join(f"{k}={v}" for k, v in body.items()
                        if k not in {"ts", "time", "seq", "run_id", "site", "pump_id",
                                     "elapsed_s", "event", "program", "monitoring"}
                        and v not in (None, ""))
    return f"{head} [bold]{body.get('event', suffix)}[/] {details}"


async def tail(target: MqttTarget, filters: list[str], *, password: str | None,
               emit: Callable[[str, str, bytes], None], count: int | None = None) -> int:
    """Print until interrupted, or until `count` telemetry messages; returns how many came."""
    client = aiomqtt.Client(target.host, target.port, username=target.username,
                            password=password, identifier=f"pumpctl-tail-{os.getpid()}",
                            keepalive=target.keepalive_s, tls_context=target.ssl_context(),
                            timeout=10)
    seen = 0
    try:
        async with client:
            for topic_filter in filters:
                await client.subscribe(topic_filter, qos=1)
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                emit(message.topic.value, format_message(message.topic.value, payload), payload)
                if message.topic.value.endswith("/telemetry"):
                    seen += 1
                    if count is not None and seen >= count:
                        break
    except aiomqtt.MqttError as exc:
        raise TelemetryError(f"MQTT broker {target.display}: {exc}") from None
    return seen

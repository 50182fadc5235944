"""`pumpctl telemetry tail`: live telemetry on a lab terminal, one line per message."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiomqtt
from rich.markup import escape

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


# Fields the line shows and what they must be; anything else in a message is shown as text.
_NUMBERS = ("flow_rate_ml_h", "volume_delivered_ml", "vtbi_ml", "vtbi_remaining_ml",
            "time_remaining_s", "dose_delivered_mg", "dose_delivered_mg_per_kg")
_TEXTS = ("pump_status", "alarm", "event")
_MAX_TS_MS = 253402300799000  # 9999-12-31T23:59:59Z: the last moment a clock line can show


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NotFinite(f"{name} in payload")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def problem_of(body: dict[str, Any]) -> str | None:
    """Why a message cannot be shown as a line (a field of the wrong kind), or None."""
    ts = body.get("ts")
    if ts is not None and not (_is_number(ts) and 0 <= ts <= _MAX_TS_MS):
        return f"ts {_short(ts)} is not a time in epoch milliseconds"
    seq = body.get("seq")
    if seq is not None and not (isinstance(seq, int) and not isinstance(seq, bool)):
        return f"seq {_short(seq)} is not a whole number"
    for name in _NUMBERS:
        value = body.get(name)
        if value is not None and not _is_number(value):
            return f"{name} {_short(value)} is not a number"
    for name in _TEXTS:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            return f"{name} {_short(value)} is not text"
    segment = body.get("segment")
    if segment is not None and not (isinstance(segment, int) and not isinstance(segment, bool)):
        return f"segment {_short(segment)} is not a whole number"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


def _clock(body: dict[str, Any]) -> str:
    ts = body.get("ts")
    if not isinstance(ts, int | float) or not _is_number(ts):
        return "--:--:--.---"
    return datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S.%f")[:-3]


def _duration(seconds: Any) -> str:
    if not _is_number(seconds):
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if _is_number(value) else "-"


def _shown(text: str) -> str:
    """Publisher text as it may appear on a terminal: one line, no control characters (an
    escape sequence could rewrite the screen), never read as rich markup."""
    return escape("".join(c if c.isprintable() else "?" for c in text))


def skipped_note(topic: str, why: str) -> str:
    """The one line shown instead of a message that cannot be shown."""
    return f"[dim]skipped a message on {_shown(topic)}: {_shown(why)}[/]"


def format_message(topic: str, payload: bytes) -> str:
    """A readable line (Rich markup) for one message; anything it cannot show as a line (NaN,
    a time no clock holds, a number where text belongs) becomes a one-line note instead.
    Text from the message is escaped: it is shown, never read as markup."""
    suffix = topic.rsplit("/", 1)[-1]
    who = _shown("/".join(topic.split("/")[-3:-1]))
    if suffix == "status":
        text = payload.decode(errors="replace")
        colour = "green" if text == "online" else "red"
        return f"{'':12} {who} [{colour}]{_shown(text[:200])}[/]"
    try:
        body = json.loads(payload, parse_constant=_refuse_constant)
    except _NotFinite as exc:
        return skipped_note(topic, str(exc))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return f"{'':12} {who} {_shown(suffix)}: {_shown(repr(payload[:200]))}"
    if not isinstance(body, dict):
        return f"{'':12} {who} {_shown(suffix)}: {_shown(repr(body)[:200])}"
    problem = problem_of(body)
    if problem is not None:
        return skipped_note(topic, problem)
    head = f"{_clock(body)} {who} #{body.get('seq', '?')}"
    if suffix == "telemetry":
        mg_kg = body.get("dose_delivered_mg_per_kg")
        per_kg = f" ({_num(mg_kg, '.3f')} mg/kg)" if mg_kg is not None else ""
        alarm = f" [bold red]{_shown(body['alarm'])}[/]" if body.get("alarm") else ""
        return (f"{head} {_shown(body.get('pump_status') or '?'):<9} "
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
    event = body.get("event") or suffix
    return f"{head} [bold]{_shown(event)}[/] {_shown(details[:500])}"


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
                topic = message.topic.value
                try:
                    line = format_message(topic, payload)
                except Exception as exc:  # whatever a publisher sends, tailing goes on
                    line = skipped_note(topic, f"cannot be shown ({type(exc).__name__})")
                emit(topic, line, payload)
                if message.topic.value.endswith("/telemetry"):
                    seen += 1
                    if count is not None and seen >= count:
                        break
    except aiomqtt.MqttError as exc:
        raise TelemetryError(f"MQTT broker {target.display}: {exc}") from None
    return seen

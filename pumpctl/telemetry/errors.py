"""Telemetry configuration errors: one line, naming the option, the value and the limit."""

from __future__ import annotations

from pumpctl.errors import PumpctlError


class TelemetryError(PumpctlError):
    """Bad MQTT settings (URL, password source, QoS, topic names) or an unusable spool."""

    exit_code = 2

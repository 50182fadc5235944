"""The topic layout under one pump's prefix (default `pumpctl/<site>/<pump_id>/`).

    <prefix>/status      retained "online" / "offline" (the offline is the Last Will)
    <prefix>/telemetry   one flat JSON object per poll
    <prefix>/event       QoS 1 run events
    <prefix>/run         retained plan summary and program of the current run
    <prefix>/cmd/<user>  remote stop/pause; the broker ACL pins <user> to the login name

Site and pump id become topic levels, so they are restricted to characters that are safe in
topics, file names and Home Assistant ids alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pumpctl.telemetry.errors import TelemetryError

DEFAULT_PREFIX = "pumpctl/{site}/{pump_id}"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SENDER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def check_id(option: str, value: str) -> str:
    """A site or pump id: 1..64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)."""
    if not _ID.match(value):
        raise TelemetryError(
            f"{option} {value!r}: must be 1..64 characters of A-Z a-z 0-9 _ . - "
            "starting with a letter or digit"
        )
    return value


def expand_prefix(template: str | None, site: str, pump_id: str) -> str:
    """Fill `{site}` and `{pump_id}` into a prefix template and check it is a plain topic."""
    text = DEFAULT_PREFIX if template is None else template
    try:
        prefix = text.format(site=site, pump_id=pump_id)
    except (KeyError, IndexError, ValueError) as exc:
        raise TelemetryError(
            f"--mqtt ?prefix={text!r}: bad placeholder {exc} (use {{site}} and {{pump_id}})"
        ) from None
    prefix = prefix.strip("/")
    if not prefix or any(c in prefix for c in "+#\x00") or "//" in prefix:
        raise TelemetryError(
            f"--mqtt ?prefix={text!r}: must be a non-empty topic without +, # or empty levels"
        )
    return prefix


@dataclass(frozen=True)
class Topics:
    """All topics of one pump."""

    base: str

    @classmethod
    def for_pump(cls, site: str, pump_id: str, template: str | None = None) -> Topics:
        check_id("--site", site)
        check_id("--pump-id", pump_id)
        return cls(expand_prefix(template, site, pump_id))

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def run(self) -> str:
        return f"{self.base}/run"

    @property
    def cmd_filter(self) -> str:
        """What the pump subscribes to: every sender level under `cmd`."""
        return f"{self.base}/cmd/+"

    def cmd_sender(self, topic: str) -> str | None:
        """The sender name of a command topic, or None when `topic` is not one of ours."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        sender = topic[len(head) :]
        return sender if _SENDER.match(sender) else None

"""Which topics the dashboard subscribes to, and which pump a received topic belongs to.

The prefix template is the one runs use (`?prefix=` in the URL, default
`pumpctl/{site}/{pump_id}`), so the dashboard finds pumps wherever `pumpctl run` puts them.
Site and pump id are read back from the topic rather than the payload because `status` is
plain text and carries neither.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from pumpctl.telemetry.errors import TelemetryError
from pumpctl.telemetry.topics import DEFAULT_PREFIX, check_id

SUFFIXES = ("status", "run", "event", "telemetry")
_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


@dataclass(frozen=True)
class PumpTopic:
    site: str
    pump_id: str
    suffix: str  # status, run, event or telemetry
    base: str  # the pump's topic prefix, for its cmd topic

    @property
    def key(self) -> str:
        return f"{self.site}/{self.pump_id}"


class TopicLayout:
    """Topic filters for every pump (or one site) and the parser for what arrives."""

    def __init__(self, template: str | None = None, site: str | None = None) -> None:
        text = (template or DEFAULT_PREFIX).strip("/")
        if text.count("{site}") != 1 or text.count("{pump_id}") != 1:
            raise TelemetryError(
                f"--mqtt ?prefix={text!r}: the dashboard needs exactly one {{site}} and one "
                "{pump_id} in the prefix to tell pumps apart")
        if site is not None:
            check_id("--site", site)
        self.template = text
        self.site = site
        try:
            filter_base = text.format(site=site or "+", pump_id="+")
        except (KeyError, IndexError, ValueError) as exc:
            raise TelemetryError(f"--mqtt ?prefix={text!r}: bad placeholder {exc}") from None
        if any(c in filter_base.replace("+", "") for c in "#\x00") or "//" in filter_base:
            raise TelemetryError(f"--mqtt ?prefix={text!r}: not a plain topic prefix")
        self.filters = [f"{filter_base}/{suffix}" for suffix in SUFFIXES]
        pattern = ""
        for literal, field, _, _ in string.Formatter().parse(text):
            pattern += re.escape(literal)
            if field == "site":
                pattern += f"(?P<site>{re.escape(site) if site else _ID_PATTERN})"
            elif field == "pump_id":
                pattern += f"(?P<pump_id>{_ID_PATTERN})"
        self._pattern = re.compile(f"^(?P<base>{pattern})/(?P<suffix>{'|'.join(SUFFIXES)})$")

    def parse(self, topic: str) -> PumpTopic | None:
        """The pump and kind of message of `topic`, or None when it is not a pump topic."""
        match = self._pattern.match(topic)
        if match is None:
            return None
        return PumpTopic(match["site"], match["pump_id"], match["suffix"], match["base"])

    def command_topic(self, base: str, user: str) -> str:
        """Where a remote command from MQTT user `user` goes (the ACL pins the last level)."""
        return f"{base}/cmd/{user}"


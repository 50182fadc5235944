"""Remote stop/pause over MQTT: the only two things a dashboard may ask of a running pump.

Only actions that make an infusion safer are accepted: never start, resume or a rate. The
sender is the last topic level (`<prefix>/cmd/<user>`); the broker's ACL must allow each user
to write only their own level, which makes it the authenticated login name rather than a claim
inside the payload. Every well-formed command, accepted or refused, is handed to the journal
with its sender. Junk (wrong topic, retained, oversized, not JSON) is dropped with a log line:
it cannot be attributed to anyone, and a retained command would fire again at every connect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from pumpctl.telemetry.schema import RemoteCommandPayload
from pumpctl.telemetry.topics import Topics

log = logging.getLogger("pumpctl.telemetry.remote")

MAX_COMMAND_BYTES = 512
ALLOWED_COMMANDS = ("stop", "pause")


class ControllerHooks(Protocol):
    """The part of `InfusionController` remote commands may call."""

    def request_pause(self, reason: str, sender: str) -> None: ...

    def request_stop(self, reason: str, sender: str) -> None: ...


@dataclass(frozen=True)
class CommandDecision:
    accepted: bool
    command: str
    sender: str
    reason: str
    detail: str

    def journal_record(self) -> dict[str, Any]:
        """The note handed to the journal, shaped as a journal `command` record so that
        `journal.write(note.pop("type"), **note)` stores it (the journal adds seq, t, run id).
        """
        outcome = {"result": "accepted"} if self.accepted else {"error": self.detail}
        return {"type": "command", "op": "remote_command",
                "args": {"command": self.command, "reason": self.reason},
                "sender": self.sender, **outcome}


class RemoteCommands:
    """Decides on each message that arrives on the command subscription."""

    def __init__(self, topics: Topics, hooks: ControllerHooks,
                 journal_note: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.topics = topics
        self.hooks = hooks
        self.journal_note = journal_note
        self.decisions: list[CommandDecision] = []
        self.ignored = 0

    def handle(self, topic: str, payload: bytes, *, retained: bool) -> CommandDecision | None:
        """Act on one message; returns the decision, or None when it was ignored as junk."""
        screened = self._screen(topic, payload, retained)
        if isinstance(screened, str):
            self.ignored += 1
            log.warning("ignored %s", screened)
            return None
        sender, body = screened
        command = body["command"][:64]
        raw_reason = body.get("reason")
        reason = raw_reason[:200] if isinstance(raw_reason, str) else ""
        if command not in ALLOWED_COMMANDS:
            return self._decide(False, command, sender, reason,
                                f"refused: only {' and '.join(ALLOWED_COMMANDS)} are accepted")
        try:
            request = RemoteCommandPayload.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            return self._decide(False, command, sender, reason, f"refused: {field}: {first['msg']}")
        decision = self._decide(True, command, sender, request.reason, "accepted")
        why = request.reason or f"remote {command}"
        try:
            if request.command == "stop":
                self.hooks.request_stop(why, sender)
            else:
                self.hooks.request_pause(why, sender)
        except Exception:  # a broken hook must not take the MQTT link down with it
            log.exception("controller hook for remote %s from %s failed", command, sender)
        return decision

    def _screen(self, topic: str, payload: bytes,
                retained: bool) -> tuple[str, dict[str, Any]] | str:
        """(sender, JSON object) of a usable command, or why the message is junk."""
        name = self.topics.cmd_sender(topic)
        if name is None:
            return f"message on unexpected topic {topic!r}"
        sender = f"mqtt:{name}"
        if retained:
            return f"retained command on {topic!r} from {sender} (commands must not be retained)"
        if len(payload) > MAX_COMMAND_BYTES:
            return (f"oversized command from {sender}: {len(payload)} bytes, "
                    f"limit {MAX_COMMAND_BYTES}")
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"malformed command from {sender}: not JSON ({exc})"
        if not isinstance(body, dict) or not isinstance(body.get("command"), str):
            return f'malformed command from {sender}: expected {{"command": "stop"|"pause"}}'
        return sender, body

    def _decide(self, accepted: bool, command: str, sender: str, reason: str,
                detail: str) -> CommandDecision:
        decision = CommandDecision(accepted, command, sender, reason, detail)
        self.decisions.append(decision)
        log.log(logging.INFO if accepted else logging.WARNING, "remote command %r from %s %s",
                command, sender, detail)
        if self.journal_note is not None:
            try:
                self.journal_note(decision.journal_record())
            except Exception:  # the journal failing must not swallow a stop
                log.exception("journal note for remote command failed")
        return decision

"""Remote stop/pause over MQTT: the only two things a dashboard may ask of a running pump.

Only actions that make an infusion safer are accepted: never start, resume or a rate. The
sender is the last topic level (`<prefix>/cmd/<user>`); the broker's ACL must allow each user
to write only their own level, which makes it the authenticated login name rather than a claim
inside the payload.

Stop always wins. The command is decided first, on the command word alone (any case, any
surrounding whitespace, a bare `stop` text payload too); a stop or pause is handed to the
controller at once, and only then is whatever else was odd about the message (a reason that is
null, a number, a list or too long, unknown keys, bytes that are not UTF-8, an oversized
payload) journaled beside it as `notes`. A command that is neither stop nor pause is refused and
journaled. Junk that names no command at all (wrong topic, retained, not a command) is dropped
with a log line: it cannot be attributed to anyone, and a retained command would fire again at
every connect.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pumpctl.telemetry.topics import Topics

log = logging.getLogger("pumpctl.telemetry.remote")

MAX_COMMAND_BYTES = 512  # a well-formed command fits; a longer one is still read, and noted
MAX_READ_BYTES = 64 * 1024  # beyond this a payload is not read at all (bounded work)
MAX_REASON_CHARS = 200
ALLOWED_COMMANDS = ("stop", "pause")
_MAX_COMMAND_CHARS = 64  # how much of a refused command word is kept


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
    notes: tuple[str, ...] = field(default=())

    def journal_record(self) -> dict[str, Any]:
        """The note handed to the journal, shaped as a journal `command` record so that
        `journal.write(note.pop("type"), **note)` stores it (the journal adds seq, t, run id).
        """
        outcome = {"result": "accepted"} if self.accepted else {"error": self.detail}
        record = {"type": "command", "op": "remote_command",
                  "args": {"command": self.command, "reason": self.reason},
                  "sender": self.sender, **outcome}
        if self.notes:
            record["notes"] = list(self.notes)
        return record


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, so repeated keys are all seen."""


@dataclass
class _Message:
    """What one payload says, read as leniently as a stop deserves."""

    commands: list[Any]  # every value given for the command (usually one)
    fields: list[tuple[str, Any]]  # every other top-level key
    notes: list[str]


def _word(value: Any) -> str | None:
    """The command word of a value: "STOP", " stop\\n" → "stop"; None if not text."""
    if not isinstance(value, str):
        return None
    return value.strip().casefold()


def _clean_text(text: str) -> str:
    """One line without control characters (the reason ends up in logs and on consoles):
    each is replaced by a space, nothing else is changed but the ends trimmed."""
    return "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text).strip()


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, _Object):
        return "an object"
    return {bool: "true/false", int: "a number", float: "a number", list: "a list",
            str: "text"}.get(type(value), type(value).__name__)


def _read(payload: bytes, sender: str) -> _Message | str:
    """The command(s) and other fields of a payload, or why it names no command at all."""
    notes: list[str] = []
    if len(payload) > MAX_COMMAND_BYTES:
        notes.append(f"payload of {len(payload)} bytes, limit {MAX_COMMAND_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = payload.decode("utf-8", errors="replace")
        notes.append("payload is not valid UTF-8 (bad bytes replaced)")
    try:
        body = json.loads(text, object_pairs_hook=_Object)
    except (ValueError, RecursionError) as exc:
        if _word(text) in ALLOWED_COMMANDS:  # a bare `stop` from a dashboard button
            return _Message([text], [], [*notes, "payload is plain text, not a JSON object"])
        return f"malformed command from {sender}: not JSON ({exc})"[:300]
    if isinstance(body, str):
        return _Message([body], [], [*notes, "payload is a JSON string, not an object"])
    if not isinstance(body, _Object):
        return f'malformed command from {sender}: expected {{"command": "stop"|"pause"}}'
    commands = [v for k, v in body if _word(k) == "command"]
    if not any(isinstance(c, str) for c in commands):
        return f'malformed command from {sender}: expected {{"command": "stop"|"pause"}}'
    if any(k != "command" for k, _ in body if _word(k) == "command"):
        notes.append("command key written in another case or with spaces")
    if len(commands) > 1:
        notes.append(f"{len(commands)} command keys")
    return _Message(commands, [(k, v) for k, v in body if _word(k) != "command"], notes)


def _reason(message: _Message) -> str:
    """The reason to record, noting in `message.notes` whatever was wrong with it."""
    reasons = [v for k, v in message.fields if _word(k) == "reason"]
    unknown = [k for k, _ in message.fields if _word(k) != "reason"]
    if unknown:
        shown = ", ".join(repr(_clean_text(k)[:40]) for k in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        message.notes.append(f"unknown keys: {shown}{more}")
    if len(reasons) > 1:
        message.notes.append(f"{len(reasons)} reason keys, the last one kept")
    if not reasons:
        return ""
    raw = reasons[-1]
    if not isinstance(raw, str):
        message.notes.append(f"reason: expected text, got {_describe(raw)}")
        return ""
    text = _clean_text(raw)
    if len(text) > MAX_REASON_CHARS:
        message.notes.append(f"reason: {len(text)} characters, limit {MAX_REASON_CHARS}; "
                             f"the first {MAX_REASON_CHARS} kept")
        text = text[:MAX_REASON_CHARS]
    return text


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
        sender, junk = self._screen(topic, payload, retained)
        if sender is None:
            self._ignore(junk)
            return None
        message = _read(payload, sender)
        if isinstance(message, str):
            self._ignore(message)
            return None
        words = [_word(c) for c in message.commands]
        # Decided on the command word alone: a stop anywhere in the message wins.
        command = next((w for w in ALLOWED_COMMANDS if w in words), None)
        if command is not None:
            if len(set(words)) > 1:
                message.notes.append("conflicting command values: "
                                     + ", ".join(repr(str(c)[:20]) for c in message.commands))
            elif message.commands[0] != command:
                message.notes.append(f"command {str(message.commands[0])[:20]!r} read as "
                                     f"{command!r}")
            reason = _reason(message)
            self._act(command, reason or f"remote {command}", sender)
            return self._decide(True, command, sender, reason, "accepted", message.notes)
        word = next(str(c) for c in message.commands if isinstance(c, str))
        return self._decide(False, _clean_text(word)[:_MAX_COMMAND_CHARS], sender,
                            _reason(message),
                            f"refused: only {' and '.join(ALLOWED_COMMANDS)} are accepted",
                            message.notes)

    def _act(self, command: str, why: str, sender: str) -> None:
        """Hand the command to the controller before anything else can go wrong."""
        try:
            if command == "stop":
                self.hooks.request_stop(why, sender)
            else:
                self.hooks.request_pause(why, sender)
        except Exception:  # a broken hook must not take the MQTT link down with it
            log.exception("controller hook for remote %s from %s failed", command, sender)

    def _ignore(self, why: str) -> None:
        self.ignored += 1
        log.warning("ignored %s", why)

    def _screen(self, topic: str, payload: bytes,
                retained: bool) -> tuple[str, str] | tuple[None, str]:
        """(sender, "") of a message that may carry a command, or (None, why it is junk)."""
        name = self.topics.cmd_sender(topic)
        if name is None:
            return None, f"message on unexpected topic {topic!r}"
        sender = f"mqtt:{name}"
        if retained:
            return None, (f"retained command on {topic!r} from {sender} "
                          "(commands must not be retained)")
        if len(payload) > MAX_READ_BYTES:
            return None, (f"oversized command from {sender}: {len(payload)} bytes, "
                          f"limit {MAX_READ_BYTES} (not read)")
        return sender, ""

    def _decide(self, accepted: bool, command: str, sender: str, reason: str,
                detail: str, notes: list[str]) -> CommandDecision:
        decision = CommandDecision(accepted, command, sender, reason, detail, tuple(notes))
        self.decisions.append(decision)
        extra = f" ({'; '.join(notes)})" if notes else ""
        log.log(logging.INFO if accepted and not notes else logging.WARNING,
                "remote command %r from %s %s%s", command, sender, detail, extra)
        if self.journal_note is not None:
            try:
                self.journal_note(decision.journal_record())
            except Exception:  # the journal failing must not swallow a stop
                log.exception("journal note for remote command failed")
        return decision

"""Issue 9, item 2: a remote stop (or pause) is obeyed whatever else is odd about it.

The command word is decided first; oddities in the rest of the message are journaled beside
the accepted command instead of turning it into a refusal. Through a real Mosquitto broker,
as the operator's dashboard would send them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pumpctl.telemetry.remote import MAX_COMMAND_BYTES, RemoteCommands
from pumpctl.telemetry.topics import Topics
from tests.telemetry.broker import Mosquitto, TlsFiles
from tests.telemetry.test_remote import CMD, FakeHooks, as_user, pump_with_commands

# Stop (and pause) whatever else is odd about the message; each with the notes it must leave.
ODD_BUT_OBEYED: list[tuple[bytes, str, str, list[str]]] = [
    (b'{"command": "stop", "reason": null}', "stop", "",
     ["reason: expected text, got null"]),
    (b'{"command": "stop", "reason": 7}', "stop", "", ["reason: expected text, got a number"]),
    (b'{"command": "stop", "reason": ["a", "b"]}', "stop", "",
     ["reason: expected text, got a list"]),
    (json.dumps({"command": "stop", "reason": "r" * 250}).encode(), "stop", "r" * 200,
     ["reason: 250 characters, limit 200; the first 200 kept"]),
    (b'{"command": "STOP"}', "stop", "", ["command 'STOP' read as 'stop'"]),
    (b'{"command": " stop"}', "stop", "", ["command ' stop' read as 'stop'"]),
    (b'{"command": "Stop\\n", "urgent": true, "x": {"y": 1}}', "stop", "",
     ["command 'Stop\\n' read as 'stop'", "unknown keys: 'urgent', 'x'"]),
    (b" STOP\r\n", "stop", "", ["payload is plain text, not a JSON object",
                               "command ' STOP\\r\\n' read as 'stop'"]),
    (b'"stop"', "stop", "", ["payload is a JSON string, not an object"]),
    (b'{"command": "stop", "reason": "line \xff blocked"}', "stop", "line \ufffd blocked",
     ["payload is not valid UTF-8 (bad bytes replaced)"]),
    (b'{"command": "pause", "command": "stop"}', "stop", "",
     ["2 command keys", "conflicting command values: 'pause', 'stop'"]),
    (json.dumps({"command": "stop", "pad": "x" * MAX_COMMAND_BYTES}).encode(), "stop", "",
     [f"payload of {MAX_COMMAND_BYTES + 30} bytes, limit {MAX_COMMAND_BYTES}",
      "unknown keys: 'pad'"]),
    (b'{"command": " PAUSE ", "reason": {"a": 1}}', "pause", "",
     ["command ' PAUSE ' read as 'pause'", "reason: expected text, got an object"]),
    (b'{"Command": "pause", "reason": "check\\u0007 the\\nline"}', "pause", "check  the line",
     ["command key written in another case or with spaces"]),
]

REFUSED = [b'{"command": "START"}', b'{"command": "stop now"}', b'{"command": "resume"}',
           b'{"command": "set_rate", "rate_ml_h": 500, "reason": null}', b'{"command": "st0p"}']


async def test_stop_and_pause_win_whatever_else_is_odd(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path) -> None:
    """Issue 9, item 2: odd optional fields and a differently written command word never
    turn a stop (or a pause) into a refusal; the oddities are journaled beside it."""
    hooks, notes = FakeHooks(), list[dict[str, Any]]()
    async with pump_with_commands(secure_broker, tls_files, tmp_path, hooks, notes), \
            as_user(secure_broker, tls_files, "alice") as alice:
        for payload in REFUSED:
            await alice.publish(f"{CMD}/alice", payload, qos=1)
        for payload, *_ in ODD_BUT_OBEYED:
            await alice.publish(f"{CMD}/alice", payload, qos=1)
        await hooks.wait_calls(len(ODD_BUT_OBEYED))

    assert [(kind, sender) for kind, _, sender in hooks.calls] == \
        [(kind, "mqtt:alice") for _, kind, _, _ in ODD_BUT_OBEYED]
    assert [why for _, why, _ in hooks.calls] == \
        [reason or f"remote {kind}" for _, kind, reason, _ in ODD_BUT_OBEYED]
    refused, obeyed = notes[:len(REFUSED)], notes[len(REFUSED):]
    assert all(n["error"] == "refused: only stop and pause are accepted" for n in refused)
    assert [n["args"]["command"] for n in refused] == \
        ["START", "stop now", "resume", "set_rate", "st0p"]
    assert [(n["result"], n["args"], n["notes"]) for n in obeyed] == \
        [("accepted", {"command": kind, "reason": reason}, expected)
         for _, kind, reason, expected in ODD_BUT_OBEYED]


_PLAIN = st.text(st.characters(codec="utf-8"), max_size=30)
_ODD = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _PLAIN,
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(_PLAIN, inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(word=st.sampled_from(["stop", "pause", "start", "resume", "set_rate", "stopp", ""]),
       case=st.sampled_from([str, str.upper, str.title]),
       pad=st.sampled_from(["", " ", "\t", "\n ", "  "]),
       extra=st.dictionaries(_PLAIN, _ODD, max_size=4))
def test_any_message_whose_command_is_stop_or_pause_is_obeyed(
        word: str, case: Callable[[str], str], pad: str, extra: dict[str, Any]) -> None:
    hooks = FakeHooks()
    notes: list[dict[str, Any]] = []
    remote = RemoteCommands(Topics.for_pump("lab", "p1"), hooks, notes.append)
    body = {k: v for k, v in extra.items() if k.strip().casefold() != "command"}
    body["command"] = pad + case(word) + pad
    decision = remote.handle(f"{CMD}/alice", json.dumps(body).encode(), retained=False)
    assert decision is not None and len(notes) == 1
    if word in ("stop", "pause"):
        assert decision.accepted and [c[0] for c in hooks.calls] == [word]
        assert len(hooks.calls[0][1]) <= 200
    else:
        assert not decision.accepted and hooks.calls == []

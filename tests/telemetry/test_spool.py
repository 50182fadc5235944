"""The on-disk spool: order, acknowledgement, overflow policy, recovery after a crash."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpctl.telemetry.errors import TelemetryError
from pumpctl.telemetry.spool import CURSOR_EVERY, MessageKind, OutMessage, Spool, SpoolEntry


def msg(kind: MessageKind, n: int, size: int = 0) -> OutMessage:
    body: dict[str, object] = {"n": n}
    if size:
        body["pad"] = "x" * size
    return OutMessage(f"t/{kind.value}", json.dumps(body).encode(), 1,
                      kind is MessageKind.RUN, kind)


def pending(spool: Spool) -> list[SpoolEntry]:
    """Every pending entry in order, through the public consumer API."""
    spool.rewind()
    out = []
    while (entry := spool.take()) is not None:
        out.append(entry)
    spool.rewind()
    return out


def numbers(spool: Spool) -> list[int]:
    return [json.loads(e.message.payload)["n"] for e in pending(spool)]


def test_entries_come_back_in_order_and_survive_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    for n in range(10):
        spool.append(msg(MessageKind.TELEMETRY if n % 3 else MessageKind.EVENT, n))
    for entry in pending(spool)[:3]:
        spool.ack(entry.id)
    assert numbers(spool) == list(range(3, 10))
    spool.close()

    again = Spool(tmp_path).open()
    assert again.stats.recovered == 7
    assert numbers(again) == list(range(3, 10))
    assert [e.message.kind for e in pending(again)][:2] == [MessageKind.EVENT,
                                                            MessageKind.TELEMETRY]
    new_id = again.append(msg(MessageKind.EVENT, 10))
    assert new_id > max(e.id for e in pending(again)[:-1])  # ids keep increasing
    again.close()


def test_fully_sent_spool_leaves_no_files(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_messages=4).open()
    for n in range(9):
        spool.append(msg(MessageKind.TELEMETRY, n))
    assert len(list(tmp_path.glob("seg-*.jsonl"))) == 3
    for entry in pending(spool)[:5]:
        spool.ack(entry.id)
    assert len(list(tmp_path.glob("seg-*.jsonl"))) == 2  # the first segment is gone
    for entry in pending(spool):
        spool.ack(entry.id)
    spool.close()
    assert list(tmp_path.glob("seg-*.jsonl")) == []


def test_overflow_drops_oldest_telemetry_before_any_event(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_messages=5).open()
    spool.append(msg(MessageKind.EVENT, 0))
    for n in range(1, 5):
        spool.append(msg(MessageKind.TELEMETRY, n))
    spool.append(msg(MessageKind.EVENT, 5))  # 6 > 5: telemetry 1 goes, not event 0
    spool.append(msg(MessageKind.RUN, 6))  # telemetry 2 goes
    assert numbers(spool) == [0, 3, 4, 5, 6]
    assert (spool.stats.dropped_telemetry, spool.stats.dropped_events) == (2, 0)
    for n in range(7, 10):
        spool.append(msg(MessageKind.EVENT, n))  # 3, 4, then event 0 (no telemetry left)
    assert numbers(spool) == [5, 6, 7, 8, 9]
    assert (spool.stats.dropped_telemetry, spool.stats.dropped_events) == (4, 1)
    spool.close()
    # The drops are on disk too: a reopened spool holds the same five.
    again = Spool(tmp_path, max_messages=5).open()
    assert numbers(again) == [5, 6, 7, 8, 9]
    again.close()


def test_byte_bound_counts_payload_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000).open()
    for n in range(10):
        spool.append(msg(MessageKind.TELEMETRY, n, size=180))
    assert spool.pending_bytes <= 1000
    assert spool.pending == 1000 // len(msg(MessageKind.TELEMETRY, 0, size=180).payload)
    assert numbers(spool)[-1] == 9  # the newest survive
    spool.close()


def test_compaction_bounds_the_files_when_events_pin_old_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_messages=10, segment_messages=5).open()
    for round_ in range(30):  # every segment would keep one live event forever
        spool.append(msg(MessageKind.EVENT, 1000 + round_))
        for n in range(6):
            spool.append(msg(MessageKind.TELEMETRY, round_ * 10 + n))
    files = list(tmp_path.glob("seg-*.jsonl"))
    assert len(files) <= 2 * (10 // 5 + 1) + 2
    expected = numbers(spool)
    assert spool.pending == 10 and all(n >= 1000 for n in expected)  # only events remain
    spool.close()
    again = Spool(tmp_path, max_messages=10, segment_messages=5).open()
    assert numbers(again) == expected
    again.close()


def test_a_torn_last_line_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path).open()
    for n in range(3):
        spool.append(msg(MessageKind.EVENT, n))
    spool.close()
    segment = sorted(tmp_path.glob("seg-*.jsonl"))[-1]
    with segment.open("a") as f:
        f.write('{"id": 99, "kind": "event", "topic"')  # the process died mid-write
    again = Spool(tmp_path).open()
    assert numbers(again) == [0, 1, 2]
    assert "unreadable" in caplog.text
    again.close()


def test_one_process_per_directory(tmp_path: Path) -> None:
    first = Spool(tmp_path).open()
    with pytest.raises(TelemetryError, match="in use by another pumpctl process"):
        Spool(tmp_path).open()
    first.close()
    Spool(tmp_path).open().close()  # free again


def test_bad_bounds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TelemetryError, match="max_messages=0"):
        Spool(tmp_path, max_messages=0)


def test_crash_resends_at_most_the_acks_since_the_last_cursor(tmp_path: Path) -> None:
    # A real process appends 100, the broker confirms 70, and it dies without closing.
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from pumpctl.telemetry.spool import Spool, OutMessage, MessageKind
        spool = Spool(Path({str(tmp_path)!r})).open()
        for n in range(100):
            spool.append(OutMessage("t", ('{{"n":%d}}' % n).encode(), 1, False,
                                    MessageKind.TELEMETRY))
        spool.rewind()
        for _ in range(70):
            spool.ack(spool.take().id)
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    again = Spool(tmp_path).open()
    # The cursor is written every CURSOR_EVERY acks: 64 are known sent, 6 go out again.
    assert numbers(again) == list(range(CURSOR_EVERY, 100))
    again.close()


async def test_waiters_wake_on_append_and_on_empty(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    waiter = asyncio.create_task(spool.wait_available())
    await asyncio.sleep(0)
    assert not waiter.done()
    spool.append(msg(MessageKind.EVENT, 0))
    await asyncio.wait_for(waiter, 1)
    entry = spool.take()
    assert entry is not None and spool.take() is None
    empty = asyncio.create_task(spool.wait_empty())
    await asyncio.sleep(0)
    assert not empty.done()
    spool.ack(entry.id)
    await asyncio.wait_for(empty, 1)
    spool.close()


KINDS = st.sampled_from(["telemetry", "event", "run", "send", "reopen"])


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(KINDS, max_size=60), bound=st.integers(1, 6))
def test_spool_matches_a_simple_model(ops: list[str], bound: int) -> None:
    """Against a list model: same pending messages in the same order, same drop counts."""
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp), max_messages=bound, segment_messages=3).open()
        model: list[tuple[int, str]] = []
        dropped = {"telemetry": 0, "event": 0}
        n = 0
        for op in ops:
            if op == "send":
                entries = pending(spool)
                if entries:
                    spool.ack(entries[0].id)
                    model.pop(0)
            elif op == "reopen":
                spool.close()
                spool = Spool(Path(tmp), max_messages=bound, segment_messages=3).open()
                dropped = {"telemetry": spool.stats.dropped_telemetry,
                           "event": spool.stats.dropped_events}
            else:
                spool.append(msg(MessageKind(op), n))
                model.append((n, op))
                n += 1
                while len(model) > bound:
                    victim = next((m for m in model if m[1] == "telemetry"), model[0])
                    model.remove(victim)
                    dropped["telemetry" if victim[1] == "telemetry" else "event"] += 1
            assert numbers(spool) == [m[0] for m in model]
            assert spool.stats.dropped_telemetry == dropped["telemetry"]
            assert spool.stats.dropped_events == dropped["event"]
        spool.close()

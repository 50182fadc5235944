"""A bounded on-disk store-and-forward spool: every outgoing message is written here first.

Why a spool and not just a queue: the controller must never wait for the network, and a
broker (or Wi-Fi) outage must cost nothing but delay. `append` is synchronous and only writes
one line to a local file; the MQTT link takes messages from here in order and `ack`s them once
the broker has them, so after an outage they go out in their original order with their
original timestamps. The files also survive a crash of the process: the next process that
opens the same directory forwards what was left.

On disk: `seg-<n>.jsonl` files of one JSON line per message (`{"id", "kind", "topic", "qos",
"retain", "payload"}`) plus `{"drop": [ids]}` tombstone lines, and `acked`, the index: the id
of the last message the broker confirmed, with the next id to be issued and a CRC-32 of both
(`{"acked": N, "next": M, "crc": C}`). A segment is deleted as soon as none of its messages is
pending. After a crash, messages acked since `acked` was last written go out again (at least
once: consumers de-duplicate on `seq`).

The data is the truth, the index only a shortcut: an index that fails its checks makes every
message found be sent again rather than one be deleted unsent (`spool_recovery`).

Bound and overflow policy: at most `max_messages` pending messages and `max_bytes` of pending
payload. Appending beyond either bound never blocks and never fails: the oldest pending
*telemetry* message is dropped first; only when no telemetry is pending is the oldest event
(or run message) dropped. Both kinds of drop are counted in `stats` and logged.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from pumpctl.telemetry.errors import TelemetryError
from pumpctl.telemetry.spool_recovery import (
    SEGMENT_NAME,
    SpoolRecovery,
    cursor_text,
    read_cursor,
    read_segment,
    trusted_acked,
)

log = logging.getLogger("pumpctl.telemetry.spool")

DEFAULT_MAX_MESSAGES = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
SEGMENT_MESSAGES = 2_000
CURSOR_EVERY = 64  # write the ack cursor after this many acks (bounds re-sends after a crash)


class MessageKind(StrEnum):
    TELEMETRY = "telemetry"  # droppable first under overflow
    EVENT = "event"
    RUN = "run"


@dataclass(frozen=True)
class OutMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: MessageKind


@dataclass(frozen=True)
class SpoolEntry:
    id: int
    message: OutMessage


@dataclass
class SpoolStats:
    appended: int = 0
    acked: int = 0
    dropped_telemetry: int = 0
    dropped_events: int = 0
    recovered: int = 0  # pending messages found on disk when the spool was opened
    write_errors: int = 0


@dataclass
class _Pending:
    message: OutMessage
    segment: int


class Spool:
    """Pending messages in memory (for speed) mirrored in append-only files (for durability)."""

    def __init__(self, directory: Path, *, max_messages: int = DEFAULT_MAX_MESSAGES,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 segment_messages: int = SEGMENT_MESSAGES) -> None:
        if max_messages < 1 or max_bytes < 1 or segment_messages < 1:
            raise TelemetryError(
                f"spool bounds must be positive: max_messages={max_messages}, "
                f"max_bytes={max_bytes}, segment_messages={segment_messages}"
            )
        self.directory = directory
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.segment_messages = segment_messages
        self.stats = SpoolStats()
        self.recovery = SpoolRecovery()
        self._bad_segments: set[Path] = set()  # on disk under a segment name, but not usable
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._pending_bytes = 0
        self._telemetry_ids: deque[int] = deque()  # oldest first; may hold stale ids
        self._unsent: deque[int] = deque()  # what the link has not handed to the broker yet
        self._segment_live: dict[int, int] = {}
        self._next_id = 1
        self._acked_id = 0
        self._acks_since_cursor = 0
        self._head_no = 0
        self._head_count = 0
        self._head: IO[str] | None = None
        self._lock: IO[str] | None = None
        self._available = asyncio.Event()
        self._empty = asyncio.Event()
        self._closed = True

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> Spool:
        """Take the directory (one process at a time) and load what a previous process left."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # O_NONBLOCK: a FIFO left under this name must not hang the run at open
            fd = os.open(self.directory / "spool.lock",
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC,
                         0o644)
            lock = os.fdopen(fd, "a")
        except OSError as exc:
            raise TelemetryError(f"spool directory {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise TelemetryError(
                f"spool directory {self.directory} is in use by another pumpctl process"
            ) from None
        self._lock = lock
        self._closed = False
        self._recover()
        self._start_segment()
        self.stats.recovered = self.recovery.recovered = len(self._pending)
        self._enforce_bound()
        self._refresh_events()
        if self.stats.recovered:
            log.info("spool %s: %d messages left by a previous run will be sent first",
                     self.directory, self.stats.recovered)
        if found := self.recovery.describe():
            log.warning("spool %s: %s", self.directory, found)
        return self

    def close(self) -> None:
        """Persist the ack cursor and release the directory; pending messages stay on disk."""
        if self._closed:
            return
        self._closed = True
        self._write_cursor()
        if self._head is not None:
            self._head.close()
            self._head = None
        if not self._pending:
            for path in self._segment_paths():
                self._unlink(path)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- producer side (synchronous, never blocks on the network) -------------------------

    def append(self, message: OutMessage) -> int:
        """Store one message; returns its id. Applies the overflow policy instead of failing."""
        if self._closed:
            raise RuntimeError("spool is closed")
        entry_id = self._next_id
        self._next_id += 1
        if self._head_count >= self.segment_messages:
            self._start_segment()
        self._write_line(_message_line(entry_id, message))
        self._head_count += 1
        self._add_pending(entry_id, message, self._head_no)
        self.stats.appended += 1
        dropped = self._enforce_bound()
        if dropped:
            self._write_line({"drop": dropped})
            if len(self._segment_live) > self._max_segments():
                self._compact()
        self._refresh_events()
        return entry_id

    # -- consumer side (the MQTT link) ----------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def rewind(self) -> None:
        """Make every pending message unsent again (a new connection starts from the oldest)."""
        self._unsent = deque(self._pending.keys())
        self._refresh_events()

    def take(self) -> SpoolEntry | None:
        """The oldest pending message not yet handed to the broker on this connection."""
        while self._unsent:
            entry_id = self._unsent.popleft()
            item = self._pending.get(entry_id)
            if item is not None:
                self._refresh_events()
                return SpoolEntry(entry_id, item.message)
        self._available.clear()
        return None

    async def wait_available(self) -> None:
        await self._available.wait()

    async def wait_empty(self) -> None:
        await self._empty.wait()

    def ack(self, entry_id: int) -> None:
        """The broker has this message (or, at QoS 0, it was written to the socket)."""
        item = self._pending.pop(entry_id, None)
        if item is None:
            return  # dropped by the overflow policy while in flight
        self._forget(entry_id, item)
        self.stats.acked += 1
        self._acked_id = max(self._acked_id, entry_id)
        self._acks_since_cursor += 1
        if self._acks_since_cursor >= CURSOR_EVERY:
            self._write_cursor()
        self._refresh_events()

    # -- internals ------------------------------------------------------------------------

    def _add_pending(self, entry_id: int, message: OutMessage, segment: int) -> None:
        self._pending[entry_id] = _Pending(message, segment)
        self._pending_bytes += len(message.payload)
        self._segment_live[segment] = self._segment_live.get(segment, 0) + 1
        if message.kind is MessageKind.TELEMETRY:
            self._telemetry_ids.append(entry_id)
        self._unsent.append(entry_id)

    def _forget(self, entry_id: int, item: _Pending) -> None:
        self._pending_bytes -= len(item.message.payload)
        while self._telemetry_ids and self._telemetry_ids[0] not in self._pending:
            self._telemetry_ids.popleft()
        live = self._segment_live.get(item.segment, 0) - 1
        if live > 0:
            self._segment_live[item.segment] = live
            return
        self._segment_live.pop(item.segment, None)
        if item.segment != self._head_no:
            self._write_cursor()  # before deleting, so a crash cannot resurrect older segments
            self._unlink(self.directory / _segment_name(item.segment))

    def _enforce_bound(self) -> list[int]:
        dropped: list[int] = []
        while self._pending and (len(self._pending) > self.max_messages
                                 or self._pending_bytes > self.max_bytes):
            victim = self._oldest_telemetry()
            if victim is None:
                victim = next(iter(self._pending))
                self.stats.dropped_events += 1
                if self.stats.dropped_events == 1 or self.stats.dropped_events % 1000 == 0:
                    log.warning("spool %s full of events: dropped the oldest event "
                                "(%d events dropped so far)", self.directory,
                                self.stats.dropped_events)
            else:
                self.stats.dropped_telemetry += 1
                if self.stats.dropped_telemetry == 1 or self.stats.dropped_telemetry % 1000 == 0:
                    log.warning("spool %s full: dropping the oldest telemetry "
                                "(%d dropped so far)", self.directory,
                                self.stats.dropped_telemetry)
            item = self._pending.pop(victim)
            self._forget(victim, item)
            dropped.append(victim)
        return dropped

    def _max_segments(self) -> int:
        """Live segments allowed before compaction: twice what the bound needs, plus slack."""
        return 2 * (self.max_messages // self.segment_messages + 1) + 2

    def _compact(self) -> None:
        """Rewrite the pending messages into fresh segments.

        Drops leave holes: an old segment stays on disk while a single event in it is pending.
        Rewriting keeps the disk footprint proportional to what is pending, so the bound holds
        on disk too.
        """
        old = self._segment_paths()
        self._start_segment()
        self._segment_live = {}
        for entry_id, item in self._pending.items():
            if self._head_count >= self.segment_messages:
                self._start_segment()
            self._write_line(_message_line(entry_id, item.message))
            self._head_count += 1
            item.segment = self._head_no
            self._segment_live[self._head_no] = self._segment_live.get(self._head_no, 0) + 1
        self._write_cursor()
        for path in old:
            if _segment_no(path) not in self._segment_live:
                self._unlink(path)

    def _oldest_telemetry(self) -> int | None:
        while self._telemetry_ids:
            candidate = self._telemetry_ids[0]
            if candidate in self._pending:
                return candidate
            self._telemetry_ids.popleft()
        return None

    def _refresh_events(self) -> None:
        if self._unsent:
            self._available.set()
        else:
            self._available.clear()
        if self._pending:
            self._empty.clear()
        else:
            self._empty.set()

    def _segment_paths(self) -> list[Path]:
        """This spool's segment files, oldest first (other names and unusable files left out)."""
        return sorted((p for p in self.directory.glob("seg-*.jsonl")
                       if SEGMENT_NAME.fullmatch(p.name) and p not in self._bad_segments),
                      key=_segment_no)

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # e.g. a directory under a segment's name: not ours to remove
            log.warning("spool %s: cannot remove %s (%s)", self.directory, path.name,
                        exc.strerror)

    def _start_segment(self) -> None:
        if self._head is not None:
            self._head.close()
            if self._head_no not in self._segment_live:
                self._unlink(self.directory / _segment_name(self._head_no))
        existing = [_segment_no(p) for p in (*self._segment_paths(), *self._bad_segments)]
        self._head_no = max([self._head_no, *existing]) + 1
        self._head_count = 0
        self._head = (self.directory / _segment_name(self._head_no)).open("a", encoding="utf-8")

    def _write_line(self, obj: dict[str, Any]) -> None:
        assert self._head is not None
        try:
            self._head.write(json.dumps(obj, separators=(",", ":")) + "\n")
            self._head.flush()
        except OSError as exc:
            # A full disk must not stop an infusion: keep the message in memory, say so once.
            self.stats.write_errors += 1
            if self.stats.write_errors == 1:
                log.error("spool %s: cannot write (%s); keeping messages in memory only",
                          self.directory, exc.strerror)

    def _write_cursor(self) -> None:
        self._acks_since_cursor = 0
        path = self.directory / "acked"
        tmp = self.directory / "acked.tmp"
        text = cursor_text(self._acked_id, self._next_id)
        try:
            tmp.unlink(missing_ok=True)
            # O_EXCL|O_NOFOLLOW: never write through whatever was left under the temporary name
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except OSError as exc:
            log.error("spool %s: cannot write ack cursor (%s)", self.directory, exc.strerror)

    def _recover(self) -> None:
        """Load what a previous process left: the segments are the truth (see spool_recovery)."""
        acked, cursor_next, problem = read_cursor(self.directory)
        dropped: set[int] = set()
        found: list[tuple[int, OutMessage, int]] = []
        kinds = frozenset(k.value for k in MessageKind)
        for path in self._segment_paths():
            number = _segment_no(path)
            self._head_no = max(self._head_no, number)
            content = read_segment(path, self.recovery, kinds)
            if content is None:  # not a usable file: never read, never deleted
                self._bad_segments.add(path)
                self.recovery.skipped_files.append(path.name)
                continue
            dropped |= content.dropped
            found += [(i, OutMessage(topic=o["topic"], payload=o["payload"].encode("utf-8"),
                                     qos=o["qos"], retain=o["retain"], kind=MessageKind(o["kind"])),
                       number) for i, o in content.messages]
        max_id = max((i for i, _, _ in found), default=0)
        acked = self._acked_id = trusted_acked(acked, problem, self.recovery)
        for entry_id, message, number in found:
            if entry_id > acked and entry_id not in self._pending:
                self._add_pending(entry_id, message, number)
        for entry_id in dropped:
            item = self._pending.pop(entry_id, None)
            if item is not None:
                self._forget(entry_id, item)
        for path in self._segment_paths():
            if _segment_no(path) not in self._segment_live:
                self._unlink(path)
        self._next_id = max(max_id, acked, cursor_next - 1) + 1
        if self.recovery.cursor_problem:
            self._write_cursor()  # a sound index again, so the next open trusts it


def _message_line(entry_id: int, message: OutMessage) -> dict[str, Any]:
    return {"id": entry_id, "kind": message.kind.value, "topic": message.topic,
            "qos": message.qos, "retain": message.retain,
            "payload": message.payload.decode("utf-8")}


def _segment_name(number: int) -> str:
    return f"seg-{number:08d}.jsonl"


def _segment_no(path: Path) -> int:
    match = SEGMENT_NAME.fullmatch(path.name)
    return int(match[1]) if match else -1

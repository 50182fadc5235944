"""Run journal: one append-only JSONL file per run, written before anything else sees a record.

Each record is one JSON object on one line (format in docs/journal.md). A record is written
with a single `os.write` on an `O_APPEND` descriptor, so a killed process loses nothing it had
written and never leaves half a line unless it dies inside that one call. Alarms, state
changes, commands, segments and the header/summary are also `fsync`ed at once, so a host crash
loses at most the status samples of the last real second (at most the last sample at the
default 1 Hz poll). Samples are fsynced at most once per real second, on a worker thread, which
keeps a virtual-time run of thousands of samples fast and a fleet's event loop unblocked.

After the journal has a record, it is handed to each `RecordSink` (telemetry, the console).

A record written every poll (the status sample) can take a faster path: `layout` compiles its
fixed keys once into a line template and `write_values` fills it with the values' JSON text,
without building a dict (unless a sink needs one) or running the general encoder. The line is
byte for byte what `write_fields` writes; anything the template cannot encode exactly (a
nested value, an enum, NaN or infinity) goes through `write_fields` instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pumpctl.clock import Clock
from pumpctl.journal_read import (  # reading lives there; re-exported where readers look
    JOURNAL_SUFFIX,
    JournalError,
    JournalRead,
    RunInfo,
    find_run,
    list_runs,
    read_records,
    scan_journal,
    summarize_run,
)

RECORD_TYPES = ("header", "command", "sample", "segment", "alarm", "state", "monitoring",
                "weighing", "summary")
# Records that mark something happening (not a periodic sample): durable at once.
DURABLE_TYPES = frozenset(RECORD_TYPES) - {"sample"}
_KNOWN_TYPES = frozenset(RECORD_TYPES)


@runtime_checkable
class RecordSink(Protocol):
    """Receives every journal record after the journal has written it.

    `emit` must be synchronous and must not block: a slow sink queues, it never stalls the
    controller. `aclose` flushes what it can.
    """

    def emit(self, record: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


def new_run_id(channel: str, wall: float | None = None) -> str:
    """`YYYYmmdd-HHMMSS-<channel>-<6 hex>`: sortable by start, unique without coordination.

    Six hex digits: even 50 runs started in the same second on one channel collide with
    probability below 1e-4; the journal is created exclusively, so a collision fails loudly.
    """
    stamp = datetime.fromtimestamp(time.time() if wall is None else wall).strftime("%Y%m%d-%H%M%S")
    safe_channel = "".join(c if c.isalnum() or c in "-_" else "_" for c in channel) or "pump"
    return f"{stamp}-{safe_channel}-{secrets.token_hex(3)}"


class Journal:
    """Writes one run's records; numbers them and stamps them with the run's clock."""

    def __init__(self, path: Path, *, run_id: str, channel: str, clock: Clock,
                 sinks: Sequence[RecordSink] = (), sample_sync_s: float = 1.0) -> None:
        self.path = path
        self.run_id = run_id
        self.channel = channel
        self._clock = clock
        self._sinks = list(sinks)
        self._seq = 0
        self._t0 = clock.monotonic()
        self._sample_sync_s = sample_sync_s
        self._last_sync = time.monotonic()
        self._unsynced = False
        self._batching = 0
        self.sink_errors = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL,
                                           0o644)
        except FileExistsError:
            raise JournalError(f"journal {path} already exists: run ids must be unique") from None
        except OSError as exc:
            raise JournalError(f"cannot create journal {path}: {exc.strerror}") from None

    @classmethod
    def create(cls, runs_dir: Path | str, *, channel: str, clock: Clock,
               run_id: str | None = None, sinks: Sequence[RecordSink] = ()) -> Journal:
        rid = run_id or new_run_id(channel, clock.wall())
        return cls(Path(runs_dir) / f"{rid}{JOURNAL_SUFFIX}", run_id=rid, channel=channel,
                   clock=clock, sinks=sinks)

    @property
    def seq(self) -> int:
        """Sequence number the next record will get."""
        return self._seq

    def elapsed(self) -> float:
        return self._clock.monotonic() - self._t0

    def write(self, type_: str, /, **fields: Any) -> dict[str, Any]:
        """Append one record (and hand it to the sinks); returns the record as written."""
        return self.write_fields(type_, fields)

    def write_fields(self, type_: str, fields: dict[str, Any]) -> dict[str, Any]:
        """`write` for a caller that already holds the fields in a dict (saves a copy on the
        path every status sample takes)."""
        if type_ not in _KNOWN_TYPES:
            raise ValueError(f"unknown journal record type {type_!r}")
        record: dict[str, Any] = {
            "type": type_, "seq": self._seq, "t": round(self._clock.wall(), 6),
            "elapsed_s": round(self.elapsed(), 6), "run_id": self.run_id, "channel": self.channel,
        }
        record.update(fields)
        line = (_ENCODER.encode(record) + "\n").encode()
        self._append(line, durable=type_ in DURABLE_TYPES)
        self._seq += 1
        self._hand_to_sinks(record)
        return record

    def _hand_to_sinks(self, record: dict[str, Any]) -> None:
        for sink in self._sinks:
            try:
                sink.emit(record)
            except Exception:  # a broken sink must never stop a run; the journal has it
                self.sink_errors += 1

    def layout(self, type_: str, keys: Sequence[str]) -> RecordLayout:
        """Compile a record type with fixed keys for `write_values` (once per run)."""
        if type_ not in _KNOWN_TYPES:
            raise ValueError(f"unknown journal record type {type_!r}")
        return RecordLayout(type_, tuple(keys), self.run_id, self.channel)

    def write_values(self, layout: RecordLayout, values: Sequence[Any]) -> None:
        """`write_fields(layout.type, dict(zip(layout.keys, values)))`, the same line, faster.

        Scalars of the JSON types are turned into text by C-level functions and put into the
        precompiled template in one `%` operation; the dict the sinks get is built only if
        there are sinks. A value the template cannot encode exactly sends the record through
        `write_fields`, which encodes it or refuses it (NaN, infinity) as always.
        """
        seq = self._seq
        t = round(self._clock.wall(), 6)
        elapsed = round(self._clock.monotonic() - self._t0, 6)
        scalar = _SCALAR_JSON
        try:
            line = layout.template % (seq, scalar[type(t)](t), scalar[type(elapsed)](elapsed),
                                      *[scalar[type(v)](v) for v in values])
        except KeyError:  # a nested or unusual value
            line = None
        if line is None or ":nan" in line or ":inf" in line or ":-inf" in line:
            # Not encodable by the template, or maybe a non-finite float (or only a string that
            # looks like one): the general encoder writes it or refuses it.
            self.write_fields(layout.type, dict(zip(layout.keys, values, strict=True)))
            return
        self._append(line.encode(), durable=layout.durable)
        self._seq += 1
        if self._sinks:
            record: dict[str, Any] = {
                "type": layout.type, "seq": seq, "t": t, "elapsed_s": elapsed,
                "run_id": self.run_id, "channel": self.channel}
            record.update(zip(layout.keys, values, strict=True))
            self._hand_to_sinks(record)

    def _append(self, line: bytes, *, durable: bool) -> None:
        if self._fd is None:
            raise JournalError(f"journal {self.path} is closed")
        try:
            n = os.write(self._fd, line)  # one call, unless the kernel takes only part of it
            if n < len(line):
                view = memoryview(line)[n:]
                while view:
                    view = view[os.write(self._fd, view):]
            now = time.monotonic()
            if durable and self._batching:
                self._unsynced = True  # synced once, when the batch ends
            elif durable:
                os.fsync(self._fd)
                self._last_sync = now
                self._unsynced = False
            elif now - self._last_sync >= self._sample_sync_s:
                _background_fsync(self._fd)  # a slow disk must not stall the event loop
                self._last_sync = now
                self._unsynced = False
            else:
                self._unsynced = True
        except OSError as exc:
            raise JournalError(f"cannot write journal {self.path}: {exc.strerror}") from None

    @contextlib.contextmanager
    def batched_sync(self) -> Iterator[None]:
        """Durable records written inside are fsynced together when the block ends (also
        when it ends with an exception), instead of one fsync each.

        For the burst of records before a pump is started (header, identification, setup
        commands): nothing in it can have moved the pump, and on a fleet's shared event loop
        a dozen fsyncs per pump blocked every other pump's polls for seconds. A sync that
        fails here leaves the records unsynced; the next durable record syncs and reports.
        """
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching and self._unsynced and self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                    self._last_sync = time.monotonic()
                    self._unsynced = False

    def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._unsynced:
                os.fsync(fd)
            os.close(fd)
        except OSError as exc:
            raise JournalError(f"cannot close journal {self.path}: {exc.strerror}") from None


class RecordLayout:
    """One record type's fixed keys as a `%` template of the line `write_fields` would write.

    Common fields first (`seq` as `%d`), then one `%s` per value (`t`, `elapsed_s` and each
    key's) for the value's JSON text.
    """

    def __init__(self, type_: str, keys: tuple[str, ...], run_id: str, channel: str) -> None:
        fixed = {"type", "seq", "t", "elapsed_s", "run_id", "channel"}
        if len(set(keys)) != len(keys) or fixed & set(keys):
            raise ValueError(f"record keys {keys}: must be unique and not repeat a common field")
        self.type = type_
        self.keys = keys
        self.durable = type_ in DURABLE_TYPES

        def text(s: str) -> str:
            return encode_basestring_ascii(s).replace("%", "%%")

        head = (f'{{"type":{text(type_)},"seq":%d,"t":%s,"elapsed_s":%s,'
                f'"run_id":{text(run_id)},"channel":{text(channel)}')
        self.template = head + "".join(f",{text(k)}:%s" for k in keys) + "}\n"


def _json_bool(value: bool) -> str:
    return "true" if value else "false"


def _json_null(value: None) -> str:
    return "null"


# The JSON text of each scalar type, exactly as the encoder below writes it (C functions, but
# for the two constants). bool is looked up before int can be: type() is exact, not isinstance.
_SCALAR_JSON: dict[type, Any] = {
    float: float.__repr__, int: int.__repr__, str: encode_basestring_ascii,
    bool: _json_bool, type(None): _json_null,
}


_sync_queue: queue.SimpleQueue[int] | None = None
_sync_lock = threading.Lock()


def _sync_worker(q: queue.SimpleQueue[int]) -> None:
    while True:
        fd = q.get()
        try:
            os.fsync(fd)
        except OSError:
            pass  # the durable records that follow will fsync (and report) synchronously
        finally:
            os.close(fd)


def _background_fsync(fd: int) -> None:
    """fsync a duplicate of `fd` on a worker thread (the duplicate outlives a close of `fd`).

    fsync usually takes well under a millisecond but now and then hundreds of milliseconds
    (a filesystem journal commit); with many pumps on one event loop those stalls would make
    every controller late. Samples are allowed to be lost on a host crash, events are not.
    """
    global _sync_queue
    with _sync_lock:
        if _sync_queue is None:
            _sync_queue = queue.SimpleQueue()
            threading.Thread(target=_sync_worker, args=(_sync_queue,), name="journal-fsync",
                             daemon=True).start()
    _sync_queue.put(os.dup(fd))


def _jsonable(value: Any) -> Any:
    """Encode the few non-JSON types records carry (enums, dataclasses, paths)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value"):
        return value.value
    raise TypeError(f"cannot journal a {type(value).__name__}")


# One encoder for every record (json.dumps would build a new one per call): compact, NaN and
# infinity refused, the few non-JSON types converted by _jsonable.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_jsonable, allow_nan=False)


__all__ = ["DURABLE_TYPES", "JOURNAL_SUFFIX", "RECORD_TYPES", "Journal", "JournalError",
           "JournalRead", "RecordSink", "RunInfo", "find_run", "list_runs", "new_run_id",
           "read_records", "scan_journal", "summarize_run"]

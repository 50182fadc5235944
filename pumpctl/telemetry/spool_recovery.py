"""Reading a spool directory back after a crash: the ack index checked, damage counted.

The segments are the truth and the ack index (`acked`) only a shortcut, so the index is
believed only when it proves itself: a CRC-32 over its two numbers, and an acked id below the
next id it claims. An index that is unreadable, fails its CRC, claims more than was ever
issued, or has no CRC at all (a bare number, as earlier versions wrote it; a bit flip in it
would look just as valid) is not trusted: every message found in the segments is sent
again (at least once; consumers de-duplicate on `seq`) rather than one deleted unsent. Lines
that cannot be read (not UTF-8, not JSON, a bad tombstone) are skipped and counted, files that
are not regular segment files are left alone, and all of it is in `SpoolRecovery`, which the
operator sees (`pumpctl telemetry flush` prints it). Nothing here deletes anything.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pumpctl import files

log = logging.getLogger("pumpctl.telemetry.spool")

SEGMENT_NAME = re.compile(r"seg-(\d{8,})\.jsonl")


@dataclass
class SpoolRecovery:
    """What opening a spool found on disk, for the operator (`telemetry flush` prints it)."""

    recovered: int = 0  # pending messages found (to be sent)
    cursor_problem: str | None = None  # why the ack index was not trusted
    damaged_lines: int = 0  # lines that could not be read (not UTF-8, not JSON, bad fields)
    torn_lines: int = 0  # a last line cut short by a crash
    skipped_files: list[str] = field(default_factory=list)  # not usable as segments: left alone

    def describe(self) -> str:
        """One line about anything unusual found; empty for a spool in good order."""
        if not (self.cursor_problem or self.damaged_lines or self.torn_lines
                or self.skipped_files):
            return ""
        parts = []
        if self.cursor_problem:
            parts.append(f"ack index not trusted ({self.cursor_problem}): every message found "
                         "is sent again (at least once)")
        if self.recovered:
            parts.append(f"{self.recovered} unsent messages recovered")
        if self.damaged_lines:
            parts.append(f"{self.damaged_lines} unreadable lines skipped")
        if self.torn_lines:
            parts.append(f"{self.torn_lines} torn last lines skipped")
        if self.skipped_files:
            shown = ", ".join(self.skipped_files[:3])
            more = f" and {len(self.skipped_files) - 3} more" if len(self.skipped_files) > 3 else ""
            parts.append(f"left alone: {shown}{more}")
        return "; ".join(parts)


def cursor_text(acked: int, next_id: int) -> str:
    """The ack index as written to `acked`."""
    return json.dumps({"acked": acked, "next": next_id, "crc": _cursor_crc(acked, next_id)})


def _cursor_crc(acked: int, next_id: int) -> int:
    return zlib.crc32(f"{acked}:{next_id}".encode())


def read_cursor(directory: Path) -> tuple[int, int, str | None]:
    """(acked id, next id, why the index is not trusted); (0, 0, None) when there is none."""
    path = directory / "acked"
    if not path.exists() and not path.is_symlink():
        return 0, 0, None
    try:
        text = files.read_text(path, files.SPOOL_CURSOR).strip()
    except files.InputFileError as exc:
        return 0, 0, exc.problem
    if text.isdigit():  # as earlier versions wrote it: no check, so not to be relied on
        return 0, 0, "an index without a CRC (older pumpctl, or damaged)"
    try:
        body = json.loads(text)
        acked, next_id, crc = int(body["acked"]), int(body["next"]), int(body["crc"])
    except (ValueError, KeyError, TypeError, OverflowError):
        return 0, 0, "unreadable"
    if crc != _cursor_crc(acked, next_id):
        return 0, 0, "CRC mismatch"
    if not 0 <= acked < max(next_id, 1):
        return 0, 0, f"acked id {acked} not below the next id {next_id}"
    return acked, next_id, None


@dataclass
class SegmentContent:
    """The usable lines of one segment file."""

    messages: list[tuple[int, dict[str, Any]]]  # (id, the line's fields), in file order
    dropped: set[int]  # ids named by tombstones


def _message_problem(obj: dict[str, Any], kinds: frozenset[str]) -> str | None:
    entry_id = obj.get("id")
    if not isinstance(entry_id, int) or isinstance(entry_id, bool) or entry_id < 1:
        return "id"
    if not isinstance(obj.get("payload"), str) or not isinstance(obj.get("topic"), str):
        return "payload or topic"
    if obj.get("qos") not in (0, 1, 2) or not isinstance(obj.get("retain"), bool):
        return "qos or retain"
    if obj.get("kind") not in kinds:
        return "kind"
    try:
        obj["payload"].encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        return "payload"
    return None


def read_segment(path: Path, recovery: SpoolRecovery, kinds: frozenset[str]
                 ) -> SegmentContent | None:
    """The messages and tombstones a segment holds; None if the file is unusable.

    Lines that are not UTF-8, not JSON or not a well-formed message or tombstone are skipped
    and counted (a tombstone that is not a list of ids is not applied: sending a dropped
    message again is harmless, dropping an unsent one is not).
    """
    try:
        data = files.read_bytes(path, files.SPOOL_SEGMENT)
    except files.InputFileError as exc:
        log.warning("spool %s: %s left alone: %s", path.parent, path.name, exc.problem)
        return None
    lines = data.split(b"\n")
    content = SegmentContent([], set())
    for line_no, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # includes UnicodeDecodeError
            obj = None
            if line_no == len(lines):  # no newline after it: cut short by a crash
                recovery.torn_lines += 1
                log.warning("spool %s line %d: unreadable (torn write), skipped", path, line_no)
                continue
        problem = "not UTF-8 JSON" if obj is None else None
        if obj is not None and not isinstance(obj, dict):
            problem = "not a JSON object"
        if isinstance(obj, dict) and "drop" in obj:
            ids = obj["drop"]
            if isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                             for i in ids):
                content.dropped.update(ids)
                continue
            problem = "tombstone without a list of ids"
        elif isinstance(obj, dict):
            problem = _message_problem(obj, kinds)
            if problem is None:
                content.messages.append((obj["id"], obj))
                continue
        recovery.damaged_lines += 1
        log.warning("spool %s line %d: damaged (%s), skipped", path, line_no, problem)
    return content


def trusted_acked(acked: int, problem: str | None, recovery: SpoolRecovery) -> int:
    """The acked id recovery may rely on: 0 (send everything found) unless the index is sound."""
    if problem is None:
        return acked
    recovery.cursor_problem = problem
    return 0

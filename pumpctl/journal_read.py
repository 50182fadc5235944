"""Reading run journals back: every record checked, damage named by its line.

A journal is written only by `pumpctl.journal.Journal`, so anything on disk that the writer
would not have written (a line that is not JSON, NaN, a sample without its volume, a number
where text belongs) is damage: the file was edited, truncated or written by something else.
`read_records` refuses a damaged journal with one line naming the file and the line (what
`--resume` and `runs show` need: they act on the numbers); `scan_journal` reads past damage
and reports it (what `runs list` needs: it must show every run, damaged ones as damaged).
Files are read through `pumpctl.files`, so a FIFO, a device or a 2 GB file named `*.jsonl`
is refused at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pumpctl import files
from pumpctl.errors import PumpctlError, shortened

JOURNAL_SUFFIX = ".jsonl"


class JournalError(PumpctlError):
    """A journal that cannot be found, read or written."""

    exit_code = 2

# -- reading -----------------------------------------------------------------------------

# What a reader relies on in each record, checked when a journal is read: a damaged journal
# (edited, truncated, written by something else) is an error naming its line, never a
# traceback or a wrong number further on. Field -> (allowed types, required). Every value
# must also be finite: the writer never writes NaN or infinity, so one on disk is damage.
_NUM = (int, float)
_COMMON: dict[str, tuple[tuple[type, ...], bool]] = {
    "seq": ((int,), True), "t": (_NUM, True), "elapsed_s": (_NUM, True),
    "run_id": ((str,), False), "channel": ((str,), False),
}
_NONE = type(None)
_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "header": {"plan": ((str, _NONE), False), "program": ((dict,), False),
               "pump": ((dict, _NONE), False), "pump_url": ((str, _NONE), False),
               "total_volume_ml": ((*_NUM, _NONE), False), "baseline_ml": ((*_NUM, _NONE), False),
               "plan_offset_s": ((*_NUM, _NONE), False), "poll_s": ((*_NUM, _NONE), False),
               "watchdog_s": ((int, _NONE), False), "resume_of": ((str, _NONE), False),
               "overrides": ((list, _NONE), False)},
    "sample": {"infused_ml": (_NUM, True), "rate_ml_h": (_NUM, False), "state": ((str,), False),
               "vtbi_ml": ((*_NUM, _NONE), False), "measured_ml": ((*_NUM, _NONE), False),
               "segment": ((int,), False), "paused": ((bool,), False)},
    "summary": {"outcome": ((str,), True), "delivered_volume_ml": (_NUM, True),
                "planned_volume_ml": (_NUM, False), "delivered_dose_mg": (_NUM, False),
                "planned_dose_mg": (_NUM, False), "duration_s": (_NUM, False),
                "alarms": ((int,), False), "stop_confirmed": ((bool,), False)},
    "alarm": {"kind": ((str,), True), "message": ((str, _NONE), False)},
    "state": {"state": ((str,), True), "reason": ((str, _NONE), False),
              "sender": ((str, _NONE), False)},
    "segment": {"index": ((int,), True), "rate_ml_h": (_NUM, True), "duration_s": (_NUM, True)},
    "command": {"op": ((str,), True)},
    "monitoring": {"at_s": (_NUM, True), "kind": ((str,), False)},
}
_TYPE_NAMES = {int: "a whole number", float: "a number", str: "text", dict: "an object",
               list: "a list", bool: "true/false", _NONE: "null"}


class _NotFinite(ValueError):
    """NaN or Infinity in a line: JSON's extension that the journal never writes."""


def _refuse_constant(name: str) -> float:
    raise _NotFinite(f"{name} where a number should be")


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _record_problem(rec: Any) -> str | None:
    """What is wrong with one parsed line, or None for a usable record."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    kind = rec.get("type")
    if not isinstance(kind, str):
        return "record without a 'type'"
    for name, (types, required) in (_COMMON | _FIELDS.get(kind, {})).items():
        if name not in rec:
            if required:
                return f"{kind} record without {name!r}"
            continue
        value = rec[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = [_TYPE_NAMES.get(t, t.__name__) for t in types if t is not int or
                     float not in types]  # "a number" covers whole numbers
            wanted = " or ".join(names)
            return f"{kind} record: {name} is {_short(value)}, expected {wanted}"
    if not _finite(rec):
        return f"{kind} record holds an infinite number"
    return None


def _short(value: Any) -> str:
    text = json.dumps(value) if _finite(value) else repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


@dataclass(frozen=True)
class JournalRead:
    """A journal as read: its usable records, and the first damaged line if any."""

    records: list[dict[str, Any]]
    damage: str | None = None  # "line N: what is wrong"
    damaged_lines: int = 0


def scan_journal(path: Path) -> JournalRead:
    """Every usable record of a journal, skipping (and reporting) damaged lines.

    A torn last line (a crash inside the one write of a record) is not damage: it is dropped.
    A journal that cannot be read at all (missing, not a regular file, too large) raises
    `JournalError`.
    """
    try:
        raw = files.read_bytes(path, files.JOURNAL)
    except files.InputFileError as exc:
        raise JournalError(str(exc)) from None
    lines = raw.split(b"\n")
    out: list[dict[str, Any]] = []
    first: str | None = None
    damaged = 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        problem: str | None
        try:
            rec = json.loads(line, parse_constant=_refuse_constant)
        except UnicodeDecodeError:
            problem = "not UTF-8 text"
        except _NotFinite as exc:
            problem = str(exc)
        except (ValueError, RecursionError):
            if i == len(lines) - 1:  # no trailing newline: the write was cut short
                break
            problem = "not a JSON record"
        else:
            problem = _record_problem(rec)
        if problem is None:
            out.append(rec)
            continue
        damaged += 1
        if first is None:
            first = f"line {i + 1}: {problem}"
    return JournalRead(out, first, damaged)


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records of a journal. A torn last line (crash mid-write) is dropped; any other
    unusable line is an error naming the file and the line."""
    read = scan_journal(path)
    if read.damage is not None:
        line, _, what = read.damage.partition(": ")
        raise JournalError(f"{path}:{line.removeprefix('line ')}: {what}")
    return read.records


def _journal_files(runs_dir: Path) -> Iterator[Path]:
    if not files.is_dir(runs_dir):
        return iter(())
    return iter(sorted(runs_dir.glob(f"*{JOURNAL_SUFFIX}")))


def find_run(runs_dir: Path | str, ref: str) -> Path:
    """A run by id, unique id prefix, or journal path."""
    direct = Path(ref)
    if direct.suffix == JOURNAL_SUFFIX and files.is_file(direct):
        return direct
    runs_dir = Path(runs_dir)
    exact = runs_dir / f"{ref}{JOURNAL_SUFFIX}"
    if files.is_file(exact):
        return exact
    matches = [p for p in _journal_files(runs_dir) if p.stem.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    shown = repr(shortened(ref, 80))
    if not matches:
        raise JournalError(f"run {shown}: no such run in {runs_dir}")
    raise JournalError(f"run {shown}: ambiguous in {runs_dir} ({len(matches)} runs match)")


@dataclass(frozen=True)
class RunInfo:
    """One line of `pumpctl runs list`."""

    run_id: str
    channel: str
    plan: str
    started: float | None
    # completed | aborted | faulted | interrupted (no summary: the process died) | damaged
    outcome: str
    planned_volume_ml: float | None
    delivered_volume_ml: float | None
    alarms: int
    path: str
    problem: str | None = None  # why the journal is damaged: "line N: ...", or unreadable

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _summarize(path: Path, read: JournalRead) -> RunInfo:
    records = read.records
    header = next((r for r in records if r.get("type") == "header"), {})
    summary = next((r for r in reversed(records) if r.get("type") == "summary"), None)
    last_sample = next((r for r in reversed(records) if r.get("type") == "sample"), None)
    alarms = sum(1 for r in records if r.get("type") == "alarm")
    delivered = summary.get("delivered_volume_ml") if summary else \
        (last_sample.get("infused_ml") if last_sample else None)
    outcome = str(summary.get("outcome")) if summary else "interrupted"
    # A damaged journal is listed by its file name: the id `runs show` will find it by.
    run_id = path.stem if read.damage else str(header.get("run_id", path.stem))
    return RunInfo(
        run_id=run_id, channel=str(header.get("channel", "")),
        plan=str(header.get("plan", "")), started=header.get("t"),
        outcome="damaged" if read.damage else outcome,
        planned_volume_ml=header.get("total_volume_ml"), delivered_volume_ml=delivered,
        alarms=alarms, path=str(path), problem=read.damage)


def summarize_run(path: Path) -> RunInfo:
    """What `runs list` shows of one journal; a damaged one says so (outcome `damaged`)."""
    return _summarize(path, scan_journal(path))


def list_runs(runs_dir: Path | str) -> list[RunInfo]:
    """Every run in `runs_dir`, oldest first. A damaged journal is listed as `damaged` with
    the line at fault (what could be read of it is shown), an unreadable one with the reason:
    nothing in the directory is hidden."""
    out: list[RunInfo] = []
    for p in _journal_files(Path(runs_dir)):
        try:
            out.append(summarize_run(p))
        except JournalError as exc:
            out.append(RunInfo(run_id=p.stem, channel="", plan="", started=None,
                               outcome="damaged", planned_volume_ml=None,
                               delivered_volume_ml=None, alarms=0, path=str(p),
                               problem=str(exc).removeprefix(f"journal {p}: ")))
    return out

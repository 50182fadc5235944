"""Journal: append-only JSONL, numbering, sinks after the file, reading back a crashed run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pumpctl.clock import LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.journal import (
    Journal,
    JournalError,
    RecordSink,
    find_run,
    list_runs,
    new_run_id,
    read_records,
)


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen_on_disk: list[bool] = []

    def emit(self, record: dict[str, Any]) -> None:
        # The journal must already hold the record when a sink sees it.
        lines = self.path.read_text().splitlines()
        self.seen_on_disk.append(json.loads(lines[-1])["seq"] == record["seq"])

    async def aclose(self) -> None: ...


class Broken:
    def emit(self, record: dict[str, Any]) -> None:
        raise RuntimeError("broker gone")

    async def aclose(self) -> None: ...


def _write_run(runs: Path, channel: str = "pump0", *, summary: bool = True) -> Path:
    async def main() -> Path:
        j = Journal.create(runs, channel=channel, clock=LoopClock())
        rec = Recorder(j.path)
        j._sinks = [rec, Broken()]
        j.write("header", plan="p.yaml", total_volume_ml=35.0)
        await __import__("asyncio").sleep(2.5)
        j.write("sample", state="infusing", infused_ml=0.04)
        j.write("alarm", kind="over_infusion", source="safety", message="m", value=1.0, limit=0.5)
        if summary:
            j.write("summary", outcome="faulted", delivered_volume_ml=0.04)
        j.close()
        assert all(rec.seen_on_disk) and len(rec.seen_on_disk) == 3 + summary
        assert j.sink_errors == 3 + summary
        return j.path

    return run_clock(main(), virtual=True)


def test_records_are_numbered_stamped_and_sinks_see_them_after_the_file(tmp_path: Path) -> None:
    path = _write_run(tmp_path)
    recs = read_records(path)
    assert [r["seq"] for r in recs] == [0, 1, 2, 3]
    assert [r["type"] for r in recs] == ["header", "sample", "alarm", "summary"]
    assert recs[1]["elapsed_s"] == pytest.approx(2.5)
    assert recs[1]["t"] - recs[0]["t"] == pytest.approx(2.5)
    assert {r["run_id"] for r in recs} == {path.stem} and recs[0]["channel"] == "pump0"


def test_recordsink_protocol_is_runtime_checkable() -> None:
    assert isinstance(Broken(), RecordSink)


def test_unknown_record_types_and_non_json_values_are_refused(tmp_path: Path) -> None:
    async def main() -> None:
        j = Journal.create(tmp_path, channel="pump0", clock=LoopClock())
        with pytest.raises(ValueError, match="unknown journal record type"):
            j.write("gossip")
        with pytest.raises(ValueError):
            j.write("sample", infused_ml=float("nan"))
        j.close()
        with pytest.raises(JournalError, match="closed"):
            j.write("sample")

    run_clock(main(), virtual=True)


def test_a_torn_last_line_is_dropped_but_a_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    path = _write_run(tmp_path, summary=False)
    with path.open("ab") as f:
        f.write(b'{"type":"sample","seq":3,"inf')
    assert [r["type"] for r in read_records(path)] == ["header", "sample", "alarm"]
    lines = path.read_bytes().split(b"\n")
    lines[1] = b"garbage"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match=r":2: not a JSON record"):
        read_records(path)


def test_list_and_find_runs(tmp_path: Path) -> None:
    done = _write_run(tmp_path, "pump0")
    crashed = _write_run(tmp_path, "pump1", summary=False)
    infos = {i.run_id: i for i in list_runs(tmp_path)}
    assert infos[done.stem].outcome == "faulted" and infos[done.stem].alarms == 1
    assert infos[crashed.stem].outcome == "interrupted"
    assert infos[crashed.stem].delivered_volume_ml == 0.04
    assert find_run(tmp_path, done.stem) == done
    assert find_run(tmp_path, str(crashed)) == crashed
    with pytest.raises(JournalError, match="no such run"):
        find_run(tmp_path, "nope")
    with pytest.raises(JournalError, match="ambiguous"):
        find_run(tmp_path, done.stem[:4])
    assert list_runs(tmp_path / "missing") == []


def test_run_ids_are_unique_and_refuse_to_overwrite(tmp_path: Path) -> None:
    ids = {new_run_id("pump 0/x") for _ in range(50)}
    assert len(ids) == 50 and all("pump_0_x" in i for i in ids)

    async def main() -> None:
        Journal.create(tmp_path, channel="p", clock=LoopClock(), run_id="same").close()
        with pytest.raises(JournalError, match="already exists"):
            Journal.create(tmp_path, channel="p", clock=LoopClock(), run_id="same")

    run_clock(main(), virtual=True)


def test_durable_records_in_a_batch_are_synced_once_when_it_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's setup records (before the pump moves) share one fsync; outside a batch every
    durable record still has its own, and a batch that ends in an exception syncs too."""
    import os

    from pumpctl.clock import ManualClock

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    j = Journal(tmp_path / "r.jsonl", run_id="r", channel="pump0", clock=ManualClock())
    with j.batched_sync():
        j.write("header", plan="p")
        j.write("command", op="identify", args={}, result=None)
        j.write("command", op="set_rate", args={"value": 1.0}, result=1.0)
        assert synced == []  # written (each with one os.write), not yet synced
        assert len(read_records(j.path)) == 3
    assert len(synced) == 1
    j.write("state", state="started")
    assert len(synced) == 2  # outside a batch: at once
    with pytest.raises(RuntimeError), j.batched_sync():
        j.write("alarm", kind="x")
        raise RuntimeError("setup failed")
    assert len(synced) == 3
    j.close()

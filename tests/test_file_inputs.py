"""Issue 9, item 7: a path that is not a regular file, given to any loader, is a one-line error
at once and in bounded memory: /dev/zero, a FIFO nobody writes to, a directory, a 2 GB sparse
file, a symlink loop, as a plan, drug library, syringe table, pump profile, course, journal
entry, spool segment or index, password file, TLS file or `accuracy analyse` CSV.

Every loader runs in one child process with its address space capped (what /dev/zero read to
the end would exceed at once) and a deadline (what a FIFO read without a writer would block
past): a loader that reads without bounds dies or hangs there, not in the test process.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MEMORY_CAP_BYTES = 1536 * 1024 * 1024

# Run in the child: every (loader, path kind) pair, each result one JSON line.
CHILD = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from pumpctl.errors import PumpctlError
    from pumpctl.plan.model import load_plan
    from pumpctl.plan.library import load_library, load_syringes, load_pump_profile
    from pumpctl.plan.course import load_course
    from pumpctl.journal import read_records, list_runs
    from pumpctl.telemetry.spool import Spool
    from pumpctl.telemetry.urls import parse_mqtt_url, read_password

    def spool_segment(path):
        d = Path(sys.argv[2]) / ("spool-" + path.name)
        d.mkdir()
        (d / "seg-00000001.jsonl").symlink_to(path)
        spool = Spool(d).open()
        try:
            return {"skipped": spool.recovery.skipped_files, "pending": spool.pending}
        finally:
            spool.close()

    def spool_index(path):
        d = Path(sys.argv[2]) / ("index-" + path.name)
        d.mkdir()
        (d / "acked").symlink_to(path)
        spool = Spool(d).open()
        try:
            return {"index": spool.recovery.cursor_problem}
        finally:
            spool.close()

    def runs_list(path):
        d = Path(sys.argv[2]) / ("runs-" + path.name)
        d.mkdir()
        (d / "20990101-000000-x-000000.jsonl").symlink_to(path)
        return [(i.outcome, i.problem) for i in list_runs(d)]

    LOADERS = {
        "plan": load_plan, "library": load_library, "syringes": load_syringes,
        "pump profile": load_pump_profile, "course": load_course, "journal": read_records,
        "runs list": runs_list, "spool segment": spool_segment, "spool index": spool_index,
        "password": lambda p: read_password(p),
        "login password": lambda p: __import__("pumpctl.dashboard.auth").dashboard.auth
            .read_login_password(p),
        "tls ca": lambda p: parse_mqtt_url(f"mqtts://u@h?ca={p}").ssl_context(),
        "csv": lambda p: __import__("pumpctl.analysis.samples").analysis.samples
            .read_mass_series(p),  # what `accuracy analyse` reads
    }
    for kind, path in json.loads(sys.argv[1]).items():
        for name, load in LOADERS.items():
            try:
                value = load(Path(path))
            except PumpctlError as exc:
                out = {"error": type(exc).__name__, "message": str(exc)}
            except Exception as exc:  # a traceback for the user: the test fails on it
                out = {"crash": f"{type(exc).__name__}: {exc}"[:200]}
            else:
                out = {"value": value if isinstance(value, (dict, list)) else repr(value)[:80]}
            print(json.dumps({"kind": kind, "loader": name, **out}), flush=True)
''')


@pytest.fixture
def odd_paths(tmp_path: Path) -> dict[str, str]:
    """One path of every kind that is not a usable file."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    sparse = tmp_path / "sparse.yaml"
    with sparse.open("wb") as f:
        f.truncate(2 * 1024**3)  # 2 GB of holes: no disk used
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(tmp_path / "loop2.yaml")
    (tmp_path / "loop2.yaml").symlink_to(loop)
    return {"/dev/zero": "/dev/zero", "fifo": str(fifo), "directory": str(directory),
            "2 GB sparse file": str(sparse), "symlink loop": str(loop)}


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))


@pytest.mark.timeout(300)
def test_every_loader_refuses_every_odd_path_at_once(
        odd_paths: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    # The deadline only catches a hang (a FIFO read blocks forever); it is no speed target.
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(odd_paths), str(work)],
                           capture_output=True, text=True, timeout=120, preexec_fn=_cap_memory)
    assert child.returncode == 0, child.stderr[-2000:]
    results = [json.loads(line) for line in child.stdout.splitlines()]
    assert len(results) == len(odd_paths) * 13
    why = {"/dev/zero": "a character device, not a regular file",
           "fifo": "a FIFO (named pipe), not a regular file",
           "directory": "a directory, not a regular file",
           "2 GB sparse file": "2147483648 bytes, limit",
           "symlink loop": "symlink loop"}
    for r in results:
        expected = why[r["kind"]]
        where = f"{r['loader']} on {r['kind']}"
        if r["loader"] == "spool segment":  # left alone and reported, never read or deleted
            assert r["value"] == {"skipped": ["seg-00000001.jsonl"], "pending": 0}, where
        elif r["loader"] == "spool index":  # not trusted: everything found is sent again
            assert expected in r["value"]["index"], where
        elif r["loader"] == "runs list":  # shown as damaged, with the reason
            assert r["value"] == [["damaged", r["value"][0][1]]], where
            assert expected in r["value"][0][1], where
        else:
            assert "error" in r, where
            message = r["message"]
            assert expected in message and "\n" not in message, where
            assert odd_paths[r["kind"]] in message, where  # names the path


def test_a_regular_file_within_its_limit_still_reads(tmp_path: Path) -> None:
    from pumpctl import files

    path = tmp_path / "ok.csv"
    path.write_bytes(b"t,ml\n0,0\n")
    assert files.read_bytes(path, files.CSV) == b"t,ml\n0,0\n"
    too_big = files.FileKind("test file", 4)
    with pytest.raises(files.InputFileError, match="9 bytes, limit 4 bytes for a test file"):
        files.read_bytes(path, too_big)
    # A file whose size is not told in advance (like those of /proc) is read up to the limit.
    assert len(files.read_bytes("/proc/self/status", files.CONFIG)) > 0
    with pytest.raises(files.InputFileError, match="more than 4 bytes"):
        files.read_bytes("/proc/self/status", too_big)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(files.InputFileError, match=r"line 2: not UTF-8 text \(byte 0xff"):
        files.read_text(bad, files.PLAN)

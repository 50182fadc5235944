"""Issue 9, item 9: a damaged journal is one line naming the file and the line, for `--resume`
and `runs show`, and is listed as damaged (with the line) by `runs list`; never a traceback,
never hidden, never a NaN or a string taken for a volume."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pumpctl.errors import PumpctlError
from pumpctl.journal import JournalError, list_runs, read_records, summarize_run
from pumpctl.run.resume import load_journal_state

from .test_cli import STANDARD, cli


@pytest.fixture(scope="module")
def good_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The journal of a real run of the standard plan on the simulator (virtual time)."""
    runs = tmp_path_factory.mktemp("runs")
    capsys_free = _run_cli(["run", str(STANDARD), "--weight", "70", "--sim", "--speed", "max",
                            "--journal", str(runs), "--json"])
    assert capsys_free == 0
    return next(runs.glob("*.jsonl"))


def _run_cli(args: list[str]) -> int:
    from pumpctl.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _sample_line(lines: list[bytes], nth: int = 10) -> int:
    return [i for i, line in enumerate(lines) if b'"type":"sample"' in line][nth]


def _header_line(lines: list[bytes]) -> int:
    return next(i for i, line in enumerate(lines) if b'"type":"header"' in line)


def _sub(field: str, new: bytes) -> Callable[[bytes], bytes]:
    """Replace the value of `field` (a number) in one line by `new`."""
    def change(line: bytes) -> bytes:
        record = json.loads(line)
        old = json.dumps(record[field], separators=(",", ":")).encode()
        key = f'"{field}":'.encode()
        assert key + old in line
        return line.replace(key + old, key + new, 1)
    return change


# (name, which line, how it is damaged, what the error must say)
DAMAGE: list[tuple[str, Callable[[list[bytes]], int], Callable[[bytes], bytes], str]] = [
    ("NaN volume", _sample_line, _sub("infused_ml", b"NaN"), "NaN where a number should be"),
    ("infinite rate", _sample_line, _sub("rate_ml_h", b"Infinity"),
     "Infinity where a number should be"),
    ("overflowing number", _sample_line, _sub("infused_ml", b"1e999"), "infinite number"),
    ("volume as text", _sample_line, _sub("infused_ml", b'"12.5"'),
     'infused_ml is "12.5", expected a number'),
    ("volume as null", _sample_line, _sub("infused_ml", b"null"),
     "infused_ml is null, expected a number"),
    ("truncated record", _sample_line,
     lambda line: json.dumps({k: v for k, v in json.loads(line).items()
                              if k in ("type", "seq", "t", "elapsed_s")}).encode(),
     "sample record without 'infused_ml'"),
    ("line cut short", _sample_line, lambda line: line[: len(line) // 2], "not a JSON record"),
    ("bytes not UTF-8", _sample_line, lambda line: line.replace(b'"state"', b'"st\xffte"'),
     "not UTF-8 text"),
    ("watchdog as text", _header_line, _sub("watchdog_s", b'"abc"'),
     'watchdog_s is "abc", expected a whole number or null'),
    ("pump as a list", _header_line, lambda line: line.replace(b'"pump":{', b'"pump":[{', 1)
     .replace(b'},"pump_url"', b'}],"pump_url"', 1), "pump is [{"),
    ("baseline as text", _header_line,
     lambda line: line.replace(b'"poll_s":', b'"baseline_ml":"x","poll_s":', 1),
     'baseline_ml is "x"'),
]


@pytest.mark.parametrize(("name", "which", "damage", "said"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_journal_is_named_by_file_and_line_everywhere(
        name: str, which: Callable[[list[bytes]], int], damage: Callable[[bytes], bytes],
        said: str, good_journal: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / good_journal.name
    lines = good_journal.read_bytes().split(b"\n")
    at = which(lines)
    lines[at] = damage(lines[at])
    path.write_bytes(b"\n".join(lines))
    where = f"{path}:{at + 1}: "

    with pytest.raises(JournalError) as info:
        read_records(path)
    assert str(info.value).startswith(where) and said in str(info.value)
    with pytest.raises(JournalError, match=f"^{where}"):  # what --resume reads
        load_journal_state(tmp_path, path.stem)
    info_line = summarize_run(path)
    assert info_line.outcome == "damaged" and info_line.problem is not None
    assert info_line.problem.startswith(f"line {at + 1}: ")
    assert [i.outcome for i in list_runs(tmp_path)] == ["damaged"]  # listed, not hidden

    for args in (["run", "--resume", path.stem, "--journal", str(tmp_path),
                  "--pump", "newera:///nonexistent/tty"],
                 ["runs", "show", path.stem, "--journal", str(tmp_path)]):
        code, _, err = cli(args, capsys)
        assert code == 2, err
        assert err.startswith(f"error: {where}") and len(err.strip().splitlines()) == 1
    code, out, _ = cli(["runs", "list", "--journal", str(tmp_path)], capsys)
    assert code == 0 and f"damaged (line {at + 1})" in out
    assert f"damaged journal {path}: line {at + 1}: " in out


def test_a_torn_last_line_is_still_only_a_crash(good_journal: Path, tmp_path: Path) -> None:
    """The one damage a crash leaves (the last record cut mid-write) is not an error."""
    path = tmp_path / good_journal.name
    text = good_journal.read_bytes()
    path.write_bytes(text[: text.rindex(b"\n", 0, len(text) - 1) + 20])
    records = read_records(path)
    assert records[-1] == json.loads(text.split(b"\n")[len(records) - 1])
    assert summarize_run(path).problem is None


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_journals_never_end_in_a_traceback(data: st.DataObject, good_journal: Path,
                                                  tmp_path: Path) -> None:
    """Any bytes changed anywhere: the readers answer or refuse with a PumpctlError (on the
    header, the first samples and the end of a real journal, to keep each example cheap)."""
    lines = good_journal.read_bytes().split(b"\n")
    raw = bytearray(b"\n".join(lines[:120] + lines[-12:]))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    runs = Path(tempfile.mkdtemp(dir=tmp_path))
    path = runs / good_journal.name
    path.write_bytes(bytes(raw))
    try:
        for record in read_records(path):
            assert isinstance(record["type"], str)
    except JournalError as exc:
        assert str(exc).startswith(f"{path}:") and "\n" not in str(exc)
    try:
        load_journal_state(runs, path.stem)
    except PumpctlError as exc:
        assert "\n" not in str(exc), str(exc)
    assert len(list_runs(runs)) == 1
    shutil.rmtree(runs)


def test_a_header_whose_program_is_damaged_is_one_line(good_journal: Path,
                                                      tmp_path: Path) -> None:
    """What the fuzz test found: a byte flipped in a program key gave a multi-line refusal."""
    path = tmp_path / good_journal.name
    path.write_bytes(good_journal.read_bytes().replace(b'"library_name"', b'"ibrary_name"', 1))
    with pytest.raises(PumpctlError) as info:
        load_journal_state(tmp_path, path.stem)
    assert "journal header has no valid program" in str(info.value)
    assert "\n" not in str(info.value)

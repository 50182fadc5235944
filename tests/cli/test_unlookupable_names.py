"""A name the system cannot even look up (longer than a file name may be, or than a path may
be) given where a run id, journal directory, map or plan goes: one line naming it, exit 2,
never a traceback (`OSError: File name too long` escaped from five commands)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pumpctl.cli import main

REPO = Path(__file__).resolve().parents[2]

LONG_NAME = "a" * 300  # beyond NAME_MAX (255)
LONG_PATH = "/".join(["b" * 200] * 30)  # beyond PATH_MAX (4096)
PLAN = str(REPO / "configs" / "plans" / "ketamine-0.5mgkg-40min.yaml")


@pytest.mark.parametrize("args", [
    ["runs", "show", LONG_NAME],
    ["runs", "show", "x", "--journal", LONG_NAME],
    ["runs", "list", "--journal", LONG_NAME],
    ["runs", "list", "--journal", LONG_PATH],
    ["runs", "export", LONG_NAME, "--csv"],
    ["report", LONG_NAME],
    ["run", PLAN, "--weight", "70", "--sim", "--speed", "max", "--resume", LONG_NAME],
    ["sim", "modbus", "--map", LONG_NAME, "--tcp", "127.0.0.1:0"],
    ["course", "show", f"x/{LONG_NAME}"],
    ["plan", "check", LONG_PATH],
], ids=lambda args: " ".join(a[:12] for a in args[:3]))
def test_a_name_too_long_is_one_line(args: list[str], capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(args)
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert len(err) < 400, err  # the name is shortened, not printed whole

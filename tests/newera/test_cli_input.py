"""Issue 9, item 11: `pumpctl pump` takes input the way the rest of pumpctl does, against a
simulated pump on a pty: zero refused like a negative (exit 2, before the pump is touched),
a diameter with any length unit, `SUB --help` without a port."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.newera.test_cli import PUMPCTL, pump, sim_link

__all__ = ["sim_link"]  # the module-scoped simulator fixture, used here by name


@pytest.mark.parametrize("args", [["rate", "0", "mL/h"], ["rate", "0", "uL/min"],
                                  ["diameter", "0"], ["diameter", "0", "mm"],
                                  ["rate", "-1", "mL/h"], ["diameter", "-3"]])
def test_zero_and_negative_rate_or_diameter_exit_2_before_the_pump_is_touched(
        sim_link: tuple[Path, str], args: list[str]) -> None:
    cwd, _ = sim_link
    pump(cwd, "info")  # takes over a power-up alarm, if this is the first command
    before = pump(cwd, "--json", "info")
    result = pump(cwd, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert "greater than zero" in result.stderr or "must not be negative" in result.stderr
    assert pump(cwd, "--json", "info").stdout == before.stdout  # nothing was changed


@pytest.mark.parametrize(("args", "mm"), [(["26.59", "mm"], 26.59), (["26.59 mm"], 26.59),
                                          (["2.659", "cm"], 26.59), (["14.43"], 14.43),
                                          (["0.5", "in"], 12.7)])
def test_a_diameter_is_taken_with_its_unit(sim_link: tuple[Path, str], args: list[str],
                                           mm: float) -> None:
    cwd, _ = sim_link
    result = pump(cwd, "diameter", *args)
    assert result.returncode == 0, result.stderr
    assert f"diameter_mm: {mm}" in result.stdout
    pump(cwd, "diameter", "26.59")  # leave the module's pump as the other tests expect it


@pytest.mark.parametrize("command", ["info", "status", "rate", "diameter", "run", "stop",
                                     "watch", "scan", "safe-mode"])
def test_pump_subcommand_help_needs_no_port(command: str) -> None:
    result = subprocess.run([*PUMPCTL, "pump", command, "--help"], capture_output=True,
                            text=True, timeout=60, env={"COLUMNS": "100", "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout and f" pump {command} [OPTIONS]" in result.stdout


def test_a_pump_command_without_a_port_is_one_line() -> None:
    result = subprocess.run([*PUMPCTL, "pump", "status"], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: --port URL is required")
    assert len(result.stderr.splitlines()) == 1

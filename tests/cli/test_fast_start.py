"""A fast start: the cheap commands must not load what only the expensive ones need.

`pumpctl --help` and friends used to import pint, pydantic, numpy, rich, pyserial and
asyncio through every command module, which made each invocation (and each CLI test) cost
most of a second. Command modules now import those inside the commands that use them. This
test runs each command in a fresh interpreter and lists the modules it loaded, so a new
top-level import in any command module fails here instead of silently slowing every start.
The times themselves are measured by `make bench` (row "start-up"), never asserted in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "configs" / "plans" / "ketamine-0.5mgkg-40min.yaml"

# Loaded by no cheap command: unit parsing, data models, numerics, ports, MQTT, plots, the
# event loop, the plan compiler and the simulators.
HEAVY = ("pint", "numpy", "yaml", "serial", "serial_asyncio_fast", "aiomqtt", "aiohttp",
         "matplotlib", "asyncio", "ssl", "pumpctl.plan.compile", "pumpctl.run.controller",
         "simulators")

_PROBE = """
import json, sys
from pumpctl.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(*argv: str) -> set[str]:
    """Top-level names of every module a fresh `pumpctl ARGV` process imported."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    modules: list[str] = json.loads(proc.stderr.strip().splitlines()[-1])
    return set(modules)


def _hits(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


@pytest.mark.parametrize("argv", [
    ("--help",),
    ("plan", "--help"),
    ("plan", "check", "--help"),
    ("pump", "--help"),
    ("run", "--help"),
    ("runs", "--help"),
    ("sim", "newera", "--help"),
    ("telemetry", "tail", "--help"),
    ("course", "--help"),
    ("accuracy", "--help"),
    ("report", "--help"),
    ("runs", "export", "--help"),
    ("dashboard", "--help"),
    ("sim", "balance", "--help"),
])
def test_help_loads_nothing_heavy(argv: tuple[str, ...]) -> None:
    modules = loaded_by(*argv)
    assert _hits(modules, (*HEAVY, "rich", "markdown_it")) == []  # plain help
    if argv == ("--help",):
        # The root help needs no option parsing, so not even typer's pydantic adapters.
        assert _hits(modules, ("pydantic",)) == []


def test_version_loads_neither_rich_nor_anything_heavy() -> None:
    assert _hits(loaded_by("version"), (*HEAVY, "rich")) == []


def test_plan_check_loads_the_compiler_but_no_port_broker_plot_or_loop() -> None:
    modules = loaded_by("plan", "check", str(PLAN), "--weight", "70")
    assert "pumpctl.plan.compile" in modules and "pint" in modules  # it did check the plan
    assert _hits(modules, ("numpy", "serial", "serial_asyncio_fast", "aiomqtt", "matplotlib",
                           "asyncio", "rich", "simulators", "pumpctl.run")) == []

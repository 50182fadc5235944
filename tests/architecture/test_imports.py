"""Checks of the import graph a reviewer would otherwise do by hand (see `imports.py`)."""

from __future__ import annotations

from pathlib import Path

from .imports import cycles, graph


def test_no_import_circle_in_pumpctl() -> None:
    found = cycles(graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_a_circle_hidden_behind_a_late_import_is_found(tmp_path: Path) -> None:
    """The old bus <-> driver circle was broken only by importing inside a function; the
    check must see such imports (and relative ones), or it proves nothing."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "bus.py").write_text("def pump():\n    from pkg.sub.driver import Driver\n")
    (pkg / "sub" / "driver.py").write_text("from . import bus\n")
    (pkg / "alone.py").write_text("from pkg.sub import bus\n")
    assert cycles(graph(pkg)) == [["pkg.sub.bus", "pkg.sub.driver"]]
    (pkg / "sub" / "bus.py").write_text("def pump():\n    return None\n")
    assert cycles(graph(pkg)) == []


# The run, the safety monitor and the journal know pumps only through the driver contract
# (pumpctl.drivers.base, .open's registry, .fake, .sensors): a pump protocol package (newera,
# later modbus: every package that registers URL schemes) or a pump simulator is never
# imported there. A balance is not a pump: the accuracy run reads one through its MT-SICS
# driver, and its simulated balance weighs the simulated pump the registry built.
PROTOCOL_FREE = ("pumpctl.run", "pumpctl.safety", "pumpctl.journal", "pumpctl.breach",
                 "pumpctl.planned_delivery", "pumpctl.tolerances", "pumpctl.safety_limits")
NOT_A_PUMP_SIMULATOR = ("simulators.balance",)


def _protocol_packages() -> set[str]:
    from pumpctl.drivers.open import PROTOCOL_PACKAGES

    return {name.rsplit(".", 1)[0] for name in PROTOCOL_PACKAGES}


def _pump_simulator(target: str) -> bool:
    return target.split(".")[0] == "simulators" and not any(
        target == s or target.startswith(s + ".") for s in NOT_A_PUMP_SIMULATOR)


def test_run_safety_and_journal_import_no_protocol_package() -> None:
    from .imports import ROOT, imported_names, modules

    protocols = _protocol_packages()
    assert "pumpctl.drivers.newera" in protocols
    offending = []
    for name, path in modules().items():
        if not any(name == p or name.startswith(p + ".") for p in PROTOCOL_FREE):
            continue
        for target, line in imported_names(path, name):
            if _pump_simulator(target) or any(
                    target == p or target.startswith(p + ".") for p in protocols):
                offending.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not offending, "\n".join(offending)


def test_run_safety_and_journal_hold_no_protocol_rule() -> None:
    """The New Era number rule (4 digits, 3 decimals) and its unit codes are pump-profile
    data: no literal of them above the driver line."""
    import re

    from .imports import ROOT, modules

    rule = re.compile(r"4.digit|four.digit|max_digits\s*=\s*4|newera|new era", re.IGNORECASE)
    codes = re.compile(r"\b(MH|UM|UH|MM|SAF|RAT|VOL|DIS|VER|STP)\b")  # New Era's own words
    offending = []
    for name, path in modules().items():
        if any(name == p or name.startswith(p + ".") for p in PROTOCOL_FREE):
            for number, text in enumerate(path.read_text().splitlines(), 1):
                if rule.search(text) or codes.search(text):
                    offending.append(f"{path.relative_to(ROOT.parent)}:{number}: {text.strip()}")
    assert not offending, "\n".join(offending)

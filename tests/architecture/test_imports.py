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

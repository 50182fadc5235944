"""Shared helpers for plan tests: the shipped configs and a way to write variant plans."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PLANS = CONFIGS / "plans"
STANDARD = PLANS / "ketamine-0.5mgkg-40min.yaml"


def standard_plan() -> dict[str, Any]:
    """The standard protocol as plain data, to mutate one field at a time."""
    return copy.deepcopy(yaml.safe_load(STANDARD.read_text(encoding="utf-8")))


WritePlan = Callable[..., Path]


@pytest.fixture
def write_plan(tmp_path: Path) -> WritePlan:
    counter = iter(range(10_000))

    def write(data: dict[str, Any] | str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"plan{next(counter)}.yaml")
        text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write

"""`pumpctl runs` commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app (filled in by the area's issue)."""
    del app

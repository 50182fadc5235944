"""Errors of plans, libraries and courses: every problem is one line a researcher can act on.

Validation collects all problems instead of stopping at the first, so `pumpctl plan check`
can list them together; `str(PlanError)` joins them so the CLI still prints a single line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pumpctl.errors import PumpctlError

Severity = Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a plan: where, what value, which limit, and how bad."""

    field: str
    message: str
    value: str = ""
    limit: str = ""
    severity: Severity = "hard"

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        if self.severity == "soft":
            text += " (soft limit: needs an override)"
        elif self.limit:
            text += " (hard limit)"
        return " ".join(text.split())  # one line, whatever the message carried


class PlanError(PumpctlError):
    """A plan (or library, syringe table, pump profile, course) that cannot be used."""

    exit_code = 2
    hint = ""  # appended to the one-line message

    def __init__(self, problems: Iterable[Problem], source: str = "") -> None:
        self.problems: list[Problem] = list(problems)
        self.source = source
        message = "; ".join(str(p) for p in self.problems) or "invalid"
        if source:
            message = f"{source}: {message}"
        if self.hint:
            message = f"{message}; {self.hint}"
        super().__init__(message)


class SoftLimitOverrideRequired(PlanError):
    """Only soft limits are breached: the plan compiles with --override-soft-limits REASON."""

    exit_code = 3
    hint = 'compile only with --override-soft-limits "REASON"'


class ConfigError(PlanError):
    """A configuration file (library, syringes, pump profile) that cannot be loaded."""

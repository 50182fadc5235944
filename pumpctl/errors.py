"""The project's error root.

Every error a user can cause (bad plan, bad URL, bad reply from a pump) derives from
`PumpctlError`, so the CLI can print it as one line and exit with its code instead of
showing a traceback. Anything else reaching the top level is a bug.
"""

from __future__ import annotations


class PumpctlError(Exception):
    """A failure the user can act on; `str()` is the one-line message."""

    exit_code: int = 1


class UsageError(PumpctlError):
    """Bad command-line arguments or configuration values."""

    exit_code = 2


def shortened(text: str, limit: int = 120) -> str:
    """`text` (a name the user gave) fit for a one-line message: whole up to `limit`
    characters, else its start and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit - 40]}...({len(text)} characters)"

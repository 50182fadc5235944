"""The query part of a pump URL (`?unit=1&timeout=0.5`), checked the same way for every
protocol: unknown or repeated parameters, integers in a range, a timeout in seconds. Each
problem is one line naming the parameter, its value and the limit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from urllib.parse import parse_qsl

from pumpctl.errors import UsageError


class PumpUrlError(UsageError):
    """A pump URL that cannot be understood."""


def query_params(url: str, query: str, known: Sequence[str]) -> dict[str, str]:
    """The parameters of `query`, each known and given once."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in known:
            raise PumpUrlError(f"pump URL {url!r}: unknown parameter {key!r} "
                               f"(known: {', '.join(known)})")
        if key in params:
            raise PumpUrlError(f"pump URL {url!r}: parameter {key!r} given twice")
        params[key] = value
    return params


def int_param(name: str, text: str, low: int, high: int, url: str) -> int:
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise PumpUrlError(f"{name}={text!r} in {url!r} must be an integer {low}-{high}")
    return int(text)


def timeout_param(params: dict[str, str], url: str, default_s: float) -> float:
    """`timeout=` in seconds, 0.01-60."""
    try:
        timeout = float(params.get("timeout", default_s))
    except ValueError:
        timeout = math.nan
    if not 0.01 <= timeout <= 60:
        raise PumpUrlError(f"timeout={params.get('timeout')!r} in {url!r} must be 0.01-60 s")
    return timeout

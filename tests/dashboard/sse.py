"""A headless Server-Sent Events reader, for tests and the benchmark's simulated browsers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event name, parsed JSON data) for each frame; comments (keep-alives) are skipped.

    Reads raw chunks rather than lines: a snapshot with every pump's history is one line of
    several megabytes, beyond aiohttp's line-length limit."""
    buffer = b""
    async for chunk in response.content.iter_any():
        *blocks, buffer = (buffer + chunk).split(b"\n\n")  # one pass per chunk, not per frame
        for block in blocks:
            event, data = "message", []
            for line in block.decode().split("\n"):
                name, _, value = line.partition(":")
                if name == "event":
                    event = value.strip()
                elif name == "data":
                    data.append(value.removeprefix(" "))
            if data:
                yield event, json.loads("\n".join(data))

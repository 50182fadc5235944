"""Fan-out from the one broker subscription to every connected browser.

Each change is encoded once, as a Server-Sent Events frame, and offered to every viewer.
A viewer holds at most one pending frame per (pump, view): a newer frame replaces the one
not yet sent. So a browser that reads slowly, or not at all, costs a bounded amount of
memory and never delays anyone else; when it catches up it gets the newest state of every
pump, not a backlog. Offering is a dict assignment: nothing here awaits a viewer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


def sse_frame(event: str, data: Any) -> bytes:
    """One Server-Sent Events frame (JSON has no raw newlines, so one `data:` line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Viewer:
    """One browser's queue: newest frame per key, in the order keys last changed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending: dict[str, bytes] = {}
        self.replaced = 0  # frames overwritten before this viewer took them (it lagged)
        self.sent_frames = 0
        self.closed = False
        self._wake = asyncio.Event()

    def offer(self, key: str, frame: bytes) -> None:
        if self.pending.pop(key, None) is not None:
            self.replaced += 1
        self.pending[key] = frame  # re-inserted last: keeps "run" before a later "live"
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def take(self, timeout_s: float) -> list[bytes] | None:
        """Every pending frame, oldest change first; [] after `timeout_s` with nothing new
        (time for a keep-alive); None once the viewer is closed."""
        if not self.pending and not self.closed:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
        self._wake.clear()
        if self.closed:
            return None
        frames = list(self.pending.values())
        self.pending.clear()
        self.sent_frames += len(frames)
        return frames


class Hub:
    """All viewers. `publish` never blocks; `join`/`leave` as browsers come and go."""

    def __init__(self) -> None:
        self.viewers: set[Viewer] = set()
        self.published = 0
        self._count = 0

    def join(self) -> Viewer:
        self._count += 1
        viewer = Viewer(f"viewer-{self._count}")
        self.viewers.add(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        viewer.close()
        self.viewers.discard(viewer)

    def publish(self, key: str, frame: bytes) -> None:
        self.published += 1
        for viewer in self.viewers:
            viewer.offer(key, frame)

    def close(self) -> None:
        for viewer in list(self.viewers):
            self.leave(viewer)

    def stats(self) -> dict[str, Any]:
        return {"viewers": len(self.viewers), "published": self.published,
                "pending_max": max((len(v.pending) for v in self.viewers), default=0),
                "replaced": sum(v.replaced for v in self.viewers)}

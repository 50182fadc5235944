"""The fan-out: one pending frame per key and viewer, newest wins, nobody waits for anybody."""

from __future__ import annotations

import asyncio

from pumpctl.dashboard.hub import Hub, sse_frame


def test_frames_are_single_line_sse_events() -> None:
    frame = sse_frame("live", {"key": "lab/p1", "text": "two\nlines"})
    assert frame == b'event: live\ndata: {"key":"lab/p1","text":"two\\nlines"}\n\n'


async def test_newest_frame_per_key_wins_in_the_order_keys_last_changed() -> None:
    hub = Hub()
    slow, fast = hub.join(), hub.join()
    assert await fast.take(0.01) == []  # nothing yet: time for a keep-alive
    hub.publish("run:a", b"run-a-1")
    hub.publish("live:a", b"live-a-1")
    assert await fast.take(1) == [b"run-a-1", b"live-a-1"]
    for n in range(1000):
        hub.publish("live:a", f"live-a-{n}".encode())
        hub.publish("live:b", f"live-b-{n}".encode())
    hub.publish("run:a", b"run-a-2")  # changed last: goes last
    assert await fast.take(1) == [b"live-a-999", b"live-b-999", b"run-a-2"]
    # The viewer that never took anything holds one frame per key, not 2003 of them.
    assert len(slow.pending) == 3 and slow.replaced == 2000
    assert await slow.take(1) == [b"live-a-999", b"live-b-999", b"run-a-2"]
    assert hub.stats()["viewers"] == 2


async def test_closing_wakes_a_waiting_viewer() -> None:
    hub = Hub()
    viewer = hub.join()
    waiting = asyncio.create_task(viewer.take(60))
    await asyncio.sleep(0)
    hub.close()
    assert await asyncio.wait_for(waiting, 5) is None
    assert hub.stats()["viewers"] == 0
    hub.publish("live:a", b"x")  # after everyone left: nothing to do, nothing raised

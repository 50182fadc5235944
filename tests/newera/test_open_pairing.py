"""Issue 9 item 12: a reply taken as the answer to the wrong request when a pump is opened.

Under load, runs against a pty simulator failed at start with "VER reply '0' is not
NE<model>V<version>". The cause: the simulator (a process starved of CPU, or a pty whose bytes
the kernel delivers late) answered nothing for longer than a request timeout plus the
straggler wait. `open()` had sent `SAF`, timed out, waited one more timeout for the owed
reply, and sent `SAF` again; then both answers came, in order: the first (the power-up alarm)
was taken as the second `SAF`'s answer, the second `SAF`'s answer ("0") as the third's, and the
third's ("0") as the answer to `VER`. New Era replies carry no sequence number and do not
repeat their command, so the bus now also checks that a reply has the shape its request's
answer must have (a `VER` answer starts with "NE", a `DIS` answer is I..W..): one that does not
is a late answer to something else, dropped like any stale reply, and the request goes on
waiting for its own.

Reproduced here deterministically, in memory and virtual time: a line paced at 19200 baud
whose host-to-pump direction stalls for the first 2.5 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pumpctl.clock import LoopClock
from pumpctl.drivers.base import AlarmKind, PumpProtocolError
from pumpctl.drivers.newera.bus import LineProtocol, NewEraBus
from pumpctl.drivers.newera.line import NewEraLine
from simulators.newera import NewEraSimulator
from simulators.serve import memory_transport

from .conftest import vrun


class StallingLink(asyncio.Transport):
    """A host's end of a line whose bytes towards the pump are held until `release_at`
    (loop time), then delivered in the order written; from then on they pass at once."""

    def __init__(self, inner: asyncio.Transport, release_at: float) -> None:
        super().__init__()
        self._inner = inner
        self._release_at = release_at
        self._held: list[bytes] = []
        self.held_total = 0

    def write(self, data: Any) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() >= self._release_at and not self._held:
            self._inner.write(data)
            return
        if not self._held:
            loop.call_at(self._release_at, self._release)
        self._held.append(bytes(data))
        self.held_total += 1

    def _release(self) -> None:
        held, self._held = self._held, []
        for data in held:
            self._inner.write(data)

    def close(self) -> None:
        self._inner.close()

    def is_closing(self) -> bool:
        return self._inner.is_closing()


async def _open_through_a_stall(stall_s: float) -> tuple[NewEraLine, StallingLink, NewEraBus]:
    clock = LoopClock()
    sim = NewEraSimulator(clock, 1, baud=19200)
    await sim.start()
    protocol = LineProtocol()
    link = StallingLink(memory_transport(sim, protocol), release_at=clock.monotonic() + stall_s)
    bus = NewEraBus.from_transport(link, protocol, clock=clock, timeout_s=1.0)
    return NewEraLine(bus), link, bus


def test_late_answers_at_open_are_not_taken_for_the_next_requests() -> None:
    async def main() -> None:
        line, link, bus = await _open_through_a_stall(2.5)
        d = line.pump(0)
        await d.open()
        assert link.held_total == 2  # SAF, timed out; SAF again after the straggler wait
        assert d.identity is not None and d.identity.model == "NE-1000"
        assert d.alarm_at_open is not None and d.alarm_at_open.kind is AlarmKind.POWER_RESET
        assert d.safe_s == 0
        assert bus.stale_replies >= 1  # the extra "0" was dropped, not taken as VER's answer
        # And the line is in step afterwards: every answer is its own request's.
        assert await d.diameter() == 26.59
        assert (await d.dispensed()) == (0.0, 0.0)
        assert await d.set_rate(52.5) == 52.5
        await line.close()
    vrun(main())


@pytest.mark.parametrize("stall_s", [0.5, 1.5, 2.0, 2.9, 3.5, 5.0])
def test_open_through_any_stall_either_works_or_says_no_reply(stall_s: float) -> None:
    """Whatever the length of the stall, `open()` never takes an answer for the wrong
    request: it identifies the pump, or it reports that nothing answered in time."""
    async def main() -> None:
        line, _, _ = await _open_through_a_stall(stall_s)
        d = line.pump(0)
        try:
            await d.open()
        except PumpProtocolError as exc:
            raise AssertionError(f"a reply was taken for the wrong request: {exc}") from None
        except Exception as exc:
            assert "no pump answers" in str(exc) or "no reply" in str(exc), exc
        else:
            assert d.identity is not None and d.identity.model == "NE-1000"
            assert await d.diameter() == 26.59
        await line.close()
    vrun(main())

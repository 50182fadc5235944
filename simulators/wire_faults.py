"""Faults that damage bytes rather than the pump: dropped, late and corrupted replies, and
requests damaged on their way in.

The pump only counts them down (it knows which reply is the next one); the engine, which
holds the bytes, carries them out, each in its own framing (which byte a corruption hits,
whether a damaged request earns an error reply or silence).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.faults import Fault, FaultKind


@dataclass(frozen=True)
class ReplyFault:
    """What a fault does to the next reply: not sent, one byte XORed, or sent late."""

    drop: bool = False
    corrupt: tuple[int, int] | None = None  # (byte index as the fault gives it, XOR mask)
    delay_s: float = 0.0


class Countdown:
    """How many more replies or requests a fault still affects: a fault's `count`, where 0
    means none (any more) and -1 every one from now on."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = 0

    def start(self, count: float) -> None:
        self.left = int(count)

    def take(self) -> bool:
        """Use one up: True if the fault applies to this one."""
        if not self.left:
            return False
        if self.left > 0:
            self.left -= 1
        return True


class WireFaults:
    """How many replies (and requests) the wire faults still affect."""

    def __init__(self) -> None:
        self._drop = Countdown()
        self._delay = Countdown()
        self._delay_s = 0.0
        self._corrupt = Countdown()
        self._corrupt_in = Countdown()  # requests damaged "on the wire" on their way to the pump
        self._corrupt_index = 1
        self._corrupt_mask = 0x40

    def apply(self, fault: Fault) -> bool:
        """Take `fault` on if it is a wire fault; False if it is not one."""
        kind = fault.kind
        if kind is FaultKind.DROP_REPLIES:
            self._drop.start(fault.param("count"))
        elif kind is FaultKind.DELAY_REPLIES:
            self._delay.start(fault.param("count"))
            self._delay_s = fault.param("delay")
        elif kind is FaultKind.CORRUPT_BYTES:
            if fault.param("inbound"):
                self._corrupt_in.start(fault.param("count"))
            else:
                self._corrupt.start(fault.param("count"))
            self._corrupt_index = int(fault.param("index"))
            self._corrupt_mask = int(fault.param("mask")) or 0x40
        else:
            return False
        return True

    def take_inbound_corruption(self) -> bool:
        """True when this request arrives damaged; ask only for a request that arrived intact."""
        return self._corrupt_in.take()

    def take_reply_fault(self) -> ReplyFault | None:
        """What happens to the reply about to be sent (None: it goes out as it is). A dropped
        reply uses up no corruption or delay."""
        if not (self._drop.left or self._corrupt.left or self._delay.left):
            return None
        if self._drop.take():
            return ReplyFault(drop=True)
        corrupt = (self._corrupt_index, self._corrupt_mask) if self._corrupt.take() else None
        delay = self._delay_s if self._delay.take() else 0.0
        return ReplyFault(corrupt=corrupt, delay_s=delay)

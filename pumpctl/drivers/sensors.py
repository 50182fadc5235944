"""Delivered-volume sensors: an independent reading of what actually left the line.

A pump's own counter is its step count. It cannot see a motor that counts steps without
moving the plunger (stuck motor), nor fluid the motor did not push (free flow from an
unsecured syringe). A balance under the collecting vessel, or a flow sensor, can; when one is
fitted the controller reads it with every status sample and the safety monitor checks it
against the plan like the counter.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class VolumeSensor(Protocol):
    async def zero(self) -> None:
        """Take the present reading as zero (called when the pump's counters are cleared)."""
        ...

    async def read_ml(self) -> float:
        """Volume delivered since `zero`, mL."""
        ...


class _Readable(Protocol):
    def sample_delivered_ml(self) -> float: ...


class ModelBalance:
    """A balance reading a simulated pump's physics model (`sample_delivered_ml`, with noise).

    Used by `pumpctl run --sim` and the HIL scenarios; a real balance driver implements the
    same two methods.
    """

    def __init__(self, model: _Readable) -> None:
        self._model = model
        self._zero = 0.0

    async def zero(self) -> None:
        self._zero = self._model.sample_delivered_ml()

    async def read_ml(self) -> float:
        return self._model.sample_delivered_ml() - self._zero
